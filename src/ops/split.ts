/**
 * Split reductions: when a kernel's output tiles alone are too few to fill the GPU, the reduction
 * they run (over k in the linear forward, over rows in the weight gradient) is cut into
 * consecutive ranges, each summed into its own partial tile, and the partials are then added in
 * range order. The cut depends on the shape (and on the binding limit) only, so results repeat
 * bit for bit.
 */
import type { HostArray } from '../dtype.js';
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';

export interface SplitRule {
  /** Output tiles (workgroups per range). */
  tiles: number;
  /** Terms of the reduction. */
  length: number;
  /** Aim for about this many workgroups in all. */
  targetWorkgroups: number;
  /** No range shorter than this (storing and re-reading a partial must stay cheap next to computing it). */
  minRange: number;
  /** Bytes of one range's partial output; all partials stay within min(64 MiB, maxBindingBytes). */
  partialBytes: number;
  maxBindingBytes: number;
  /** Range lengths are multiples of this (the kernel's staging depth). */
  multiple: number;
}

export const MAX_PARTIAL_BYTES = 64 * 2 ** 20;

/** `splits` ranges of `range` terms (the last may be shorter); one range when the tiles fill the GPU. */
export function splitReduction(rule: SplitRule): { splits: number; range: number } {
  const byBytes = Math.floor(Math.min(MAX_PARTIAL_BYTES, rule.maxBindingBytes) / rule.partialBytes);
  const wanted = Math.max(1, Math.min(Math.ceil(rule.targetWorkgroups / rule.tiles), Math.floor(rule.length / rule.minRange), byBytes));
  const range = Math.ceil(Math.ceil(rule.length / wanted) / rule.multiple) * rule.multiple;
  return { splits: Math.ceil(rule.length / range), range };
}

/**
 * Lanes that share one reduction of `length` terms inside a workgroup: the power of two that
 * leaves each lane at most `perLane` terms, within [least, most] (powers of two), so a lane's
 * sequential sum stays short however long the reduction, and short ones leave room for more
 * outputs per workgroup.
 */
export function lanesFor(length: number, perLane: number, least: number, most: number): number {
  return Math.min(most, Math.max(least, 2 ** Math.ceil(Math.log2(Math.ceil(length / perLane)))));
}

/**
 * Row windows: a row-major tensor larger than one storage binding (an embedding table, an
 * lm_head, 7B-sized MLP weights on a 128 MiB binding) lives in consecutive windows of whole rows,
 * each in a buffer of its own within one binding, and every op that reads it runs once per window.
 */
export interface RowWindow {
  /** Holds rows [firstRow, firstRow + rows) of the tensor, from byte 0 (or from byteOffset). */
  buffer: GPUBuffer;
  firstRow: number;
  rows: number;
  /**
   * Where row firstRow starts in `buffer` (default 0): a slab of a larger window, bound with an
   * offset (a multiple of the device's minStorageBufferOffsetAlignment). Only ops that say so
   * accept it (windowsOf's `offsets`); the others refuse a window that has one.
   */
  byteOffset?: number;
}

/**
 * Rows per window for rows of `rowBytes` within `maxBytes`: the most that fit, rounded down to a
 * multiple of `multiple` (16-bit rows of odd length: an even count, so each window starts on a
 * 32-bit word). 0 when not even `multiple` rows fit.
 */
export function rowsPerWindow(rowBytes: number, maxBytes: number, multiple = 1): number {
  return Math.floor(Math.floor(maxBytes / rowBytes) / multiple) * multiple;
}

/**
 * `table` as row windows of a (rows, …) tensor: a buffer is one window of every row; windows
 * must cover [0, rows) in order, each non-empty. Named `name` in errors. A window with a
 * byteOffset is refused unless `offsets` is given: the alignment its binding needs.
 */
export function windowsOf(name: string, table: GPUBuffer | readonly RowWindow[], rows: number, { offsets }: { offsets?: number } = {}): readonly RowWindow[] {
  if (!Array.isArray(table)) return [{ buffer: table as GPUBuffer, firstRow: 0, rows }];
  let next = 0;
  for (const w of table as readonly RowWindow[]) {
    if (w === null || typeof w !== 'object' || w.firstRow !== next || !Number.isSafeInteger(w.rows) || w.rows < 1) {
      throw new InvalidArgumentError(name, `row windows covering rows [0, ${rows}) in order`, w === null || typeof w !== 'object' ? describe(w) : `a window of ${describe(w.rows)} rows from row ${describe(w.firstRow)} where row ${next} should start`);
    }
    const offset = w.byteOffset ?? 0;
    if (offset !== 0 && (offsets === undefined || !Number.isSafeInteger(offset) || offset < 0 || offset % offsets !== 0)) {
      throw new InvalidArgumentError(`${name} byteOffset`, offsets === undefined ? '0 (this op binds windows from byte 0)' : `a multiple of ${offsets}`, describe(offset));
    }
    next += w.rows;
  }
  if (next !== rows) throw new InvalidArgumentError(name, `row windows covering rows [0, ${rows})`, `windows covering [0, ${next})`);
  return table as readonly RowWindow[];
}

/**
 * Host rows of a (rows, rowElements) tensor uploaded as row windows of `windowRows` rows each (one
 * window when absent): the host functions' way to exercise an op's windowed path. Each buffer is
 * pushed onto `owned` for the caller to destroy.
 */
export function uploadRowWindows(ctx: GpuContext, name: string, data: HostArray | Float32Array, rowElements: number, rows: number, windowRows: number | undefined, owned: GPUBuffer[],
  usage = GPUBufferUsage.STORAGE): RowWindow[] {
  const per = windowRows ?? rows;
  const windows: RowWindow[] = [];
  for (let first = 0; first < rows; first += per) {
    const count = Math.min(per, rows - first);
    const part = data.subarray(first * rowElements, (first + count) * rowElements);
    // 16-bit rows are uploaded padded to whole words.
    const padded = part instanceof Uint16Array && part.length % 2 === 1 ? Uint16Array.from({ length: part.length + 1 }, (_, i) => part[i] ?? 0) : part;
    const buffer = ctx.upload(`${name}[${first}:${first + count}]`, padded, usage);
    owned.push(buffer);
    windows.push({ buffer, firstRow: first, rows: count });
  }
  return windows;
}
