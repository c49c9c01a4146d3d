/**
 * Gradients of y = x · Wᵀ + b (src/ops/linear.ts) on WebGPU (kernels/linear_backward.wgsl),
 * with a float64 reference: dx = dy · W, dW += dyᵀ · x, db += Σ_rows dy. Everything is f32
 * (training weights are f32). dx is an activation gradient (overwritten, or added to on
 * request); dW and db are parameter gradients, always added to. Every reduction runs in a fixed
 * order that depends only on the shape, so a run is bit-identical when repeated.
 */
import { POISON_BITS } from '../dtype.js';
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { prepareAdd, type PreparedAdd } from './add.js';
import { splitReduction, windowsOf, type RowWindow } from './split.js';
import { DispatchList, bindingOf } from './bindings.js';
import { grid } from './token-stats/plan.js';

export interface LinearBackwardShape {
  /** Rows of x, y and dy (tokens). */
  m: number;
  /** Input features: columns of x and of W. */
  k: number;
  /** Output features: rows of W, columns of dy, length of the bias. */
  n: number;
  /** Whether the layer has a bias (then dBias is computed). */
  hasBias: boolean;
}

export interface PreparedLinearBackward {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

const TILE = 64;
/** Rows the weight-gradient kernel stages per step; split row ranges are multiples of it. */
const DEPTH = 16;
const SUM_WORKGROUP = 256;
/** Split the rows of dW's reduction until about this many workgroups run (a few per SM on a large GPU)… */
const TARGET_WORKGROUPS = 512;
/** …but give each range at least this many rows (see ./split.ts). */
const MIN_SPLIT_ROWS = 256;

function checkShape(shape: LinearBackwardShape): LinearBackwardShape {
  if (shape === null || typeof shape !== 'object') throw new InvalidArgumentError('shape', 'an object { m, k, n, hasBias }', describe(shape));
  for (const key of ['m', 'k', 'n'] as const) {
    const v = shape[key];
    if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(key, 'a positive integer', describe(v));
  }
  if (typeof shape.hasBias !== 'boolean') throw new InvalidArgumentError('hasBias', 'a boolean', describe(shape.hasBias));
  return { m: shape.m, k: shape.k, n: shape.n, hasBias: shape.hasBias };
}

function checkAccumulateDx(options: { accumulateDx?: boolean }): boolean {
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options', 'an object', describe(options));
  const { accumulateDx } = options;
  if (accumulateDx !== undefined && typeof accumulateDx !== 'boolean') throw new InvalidArgumentError('accumulateDx', 'a boolean', describe(accumulateDx));
  return accumulateDx ?? false;
}

/**
 * How the weight gradient's reduction over the m rows is cut: `splits` consecutive ranges of
 * `splitRows` rows (the last may be shorter), each summed into its own partial, the partials then
 * added in range order. One range when the output tiles alone fill the GPU. A function of the
 * shape (and of maxBindingBytes when that is under 64 MiB) only, so results repeat bit for bit.
 */
export function linearBackwardSplits({ m, k, n }: Pick<LinearBackwardShape, 'm' | 'k' | 'n'>, maxBindingBytes: number): { splits: number; splitRows: number } {
  const tiles = Math.ceil(n / TILE) * Math.ceil(k / TILE);
  const { splits, range } = splitReduction({ tiles, length: m, targetWorkgroups: TARGET_WORKGROUPS, minRange: MIN_SPLIT_ROWS, partialBytes: n * k * 4, maxBindingBytes, multiple: DEPTH });
  return { splits, splitRows: range };
}

/**
 * The float64 reference: dx (m, k) = dy · W, dW (n, k) = dyᵀ · x and db (n) = Σ_rows dy (null
 * without a bias), for x (m, k), W (n, k) and dy (m, n) row-major. Pure gradients: nothing is
 * accumulated.
 */
export function referenceLinearBackward(x: ArrayLike<number>, weight: ArrayLike<number>, dy: ArrayLike<number>, shape: LinearBackwardShape):
  { dx: Float64Array; dWeight: Float64Array; dBias: Float64Array | null } {
  const { m, k, n, hasBias } = shape;
  const dx = new Float64Array(m * k);
  const dWeight = new Float64Array(n * k);
  const dBias = hasBias ? new Float64Array(n) : null;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const g = dy[i * n + j]!;
      if (dBias) dBias[j] = dBias[j]! + g;
      for (let p = 0; p < k; p++) {
        dx[i * k + p] = dx[i * k + p]! + g * weight[j * k + p]!;
        dWeight[j * k + p] = dWeight[j * k + p]! + g * x[i * k + p]!;
      }
    }
  }
  return { dx, dWeight, dBias };
}

/** Each output buffer must share memory with no other argument (inputs may alias each other). */
function checkDistinct(inputs: [string, GPUBuffer][], outputs: [string, GPUBuffer | null][]): void {
  const seen: [string, GPUBuffer][] = [...inputs];
  for (const [name, buffer] of outputs) {
    if (buffer === null) continue;
    const same = seen.find(([, earlier]) => earlier === buffer);
    if (same) throw new InvalidArgumentError(name, `a GPUBuffer distinct from ${same[0]}`, `the same buffer as ${same[0]}`);
    seen.push([name, buffer]);
  }
}

/**
 * Records the backward of y = x · Wᵀ + b over GPU buffers (f32, row-major) into a caller's pass:
 * dx (m·k) = dy · W, overwritten or, with accumulateDx, added to (null: not computed);
 * dWeight (n·k) += dyᵀ · x; dBias (n) += Σ_rows dy when shape.hasBias (else null). x (m·k),
 * weight (n·k) and dy (m·n) are read; the outputs must be distinct from them and from each other.
 * A weight larger than one binding comes as row windows (src/ops/split.ts), and dWeight then as
 * windows of the same rows: each window's dispatches read its columns of dy, the row split of dW
 * follows the whole shape's plan and dx is one fma chain across the windows, so every output is
 * bit for bit what one buffer gives (with accumulateDx the chain goes to a scratch buffer that is
 * then added to dx, as the one-buffer kernel adds). A window (of weight and dWeight alike) may
 * start at a byteOffset into its buffer: a slab of a larger weight. Buffers may be larger than needed; the
 * leading bytes are used. destroy() frees the scratch the op uses (see linearBackwardSplits).
 */
export async function prepareLinearBackward(ctx: GpuContext, shape: LinearBackwardShape,
  buffers: { x: GPUBuffer; weight: GPUBuffer | readonly RowWindow[]; dy: GPUBuffer; dx: GPUBuffer | null; dWeight: GPUBuffer | readonly RowWindow[]; dBias: GPUBuffer | null },
  options: { accumulateDx?: boolean } = {}): Promise<PreparedLinearBackward> {
  const { m, k, n, hasBias } = checkShape(shape);
  const accumulateDx = checkAccumulateDx(options);
  if (buffers === null || typeof buffers !== 'object') throw new InvalidArgumentError('buffers', 'an object { x, weight, dy, dx, dWeight, dBias }', describe(buffers));
  const { x, weight, dy, dx, dWeight, dBias } = buffers;
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;
  for (const [name, size] of [['m', m], ['k', k], ['n', n]] as const) {
    if (Math.ceil(size / TILE) > maxGroups) throw new InvalidArgumentError(name, `at most ${TILE * maxGroups}`, String(size));
  }
  // Windows may be slabs of a larger buffer (the fused lm_head backward, src/ops/lm-head-stats.ts).
  const offsets = ctx.limits.minStorageBufferOffsetAlignment;
  const windows = windowsOf('weight', weight, n, { offsets });
  const gradWindows = windowsOf('dWeight', dWeight, n, { offsets });
  const ranges = (list: readonly RowWindow[]) => list.map((w) => `${w.firstRow}:${w.firstRow + w.rows}`).join(',');
  if (ranges(gradWindows) !== ranges(windows)) throw new InvalidArgumentError('dWeight', `row windows of the weight's rows (${ranges(windows)})`, ranges(gradWindows));
  const named = (name: string, w: RowWindow) => (windows.length === 1 ? name : `${name}[${w.firstRow}:${w.firstRow + w.rows}]`);
  const xBinding = bindingOf(ctx, 'x', x, m * k * 4);
  const wBindings = windows.map((w) => bindingOf(ctx, named('weight', w), w.buffer, w.rows * k * 4, w.byteOffset));
  const dyBinding = bindingOf(ctx, 'dy', dy, m * n * 4);
  const dxBinding = dx === null ? null : bindingOf(ctx, 'dx', dx, m * k * 4);
  const dWeightBindings = gradWindows.map((w) => bindingOf(ctx, named('dWeight', w), w.buffer, w.rows * k * 4, w.byteOffset));
  if (hasBias && dBias === null) throw new InvalidArgumentError('dBias', 'a GPUBuffer (shape.hasBias is true)', 'null');
  if (!hasBias && dBias !== null && dBias !== undefined) throw new InvalidArgumentError('dBias', 'null (shape.hasBias is false)', describe(dBias));
  const dBiasBinding = hasBias ? bindingOf(ctx, 'dBias', dBias!, n * 4) : null;
  checkDistinct([['x', x], ...windows.map((w): [string, GPUBuffer] => [named('weight', w), w.buffer]), ['dy', dy]],
    [['dx', dx], ...gradWindows.map((w): [string, GPUBuffer] => [named('dWeight', w), w.buffer]), ['dBias', hasBias ? dBias : null]]);

  // The split of dW's rows is the whole shape's, so windows sum every element as one buffer does.
  const { splits, splitRows } = linearBackwardSplits({ m, k, n }, ctx.maxBindingBytes);
  const nAligned = n % 4 === 0 && windows.every((w) => w.firstRow % 4 === 0) ? 1 : 0;
  const kAligned = k % 4 === 0 ? 1 : 0;
  const bias = hasBias ? 1 : 0;
  const partials = splits > 1 ? 1 : 0;
  // Several windows with accumulateDx: the chain goes to a scratch dx, added to dx at the end.
  const dxScratch = dx !== null && windows.length > 1 && accumulateDx;
  const dxPipeline = (first: boolean) => ctx.pipeline('linear_backward', 'dx_main',
    { N_ALIGNED: nAligned, K_ALIGNED: kAligned, ACCUMULATE_DX: first && accumulateDx && !dxScratch ? 1 : 0, CONTINUE_DX: first ? 0 : 1 });
  const [dxFirst, dxContinue, dwPipeline, sumPipeline] = await Promise.all([
    dx === null ? null : dxPipeline(true),
    dx === null || windows.length === 1 ? null : dxPipeline(false),
    ctx.pipeline('linear_backward', 'dw_main', { N_ALIGNED: nAligned, K_ALIGNED: kAligned, HAS_BIAS: bias, WRITE_PARTIALS: partials }),
    splits > 1 ? ctx.pipeline('linear_backward', 'sum_main', { HAS_BIAS: bias }) : null,
  ]);
  const scratch = dxScratch ? ctx.createBuffer('linear_backward:dx_chain', m * k * 4, GPUBufferUsage.STORAGE) : null;
  let addScratch: PreparedAdd | null = null;
  try {
    if (scratch !== null) addScratch = await prepareAdd(ctx, { n: m * k }, dx!, scratch, dx!);
  } catch (error) {
    scratch?.destroy();
    throw error;
  }

  return ctx.scoped('linear_backward:prepare', () => {
    const label = `linear_backward ${m}x${k}x${n}${hasBias ? ' +bias' : ''}${windows.length > 1 ? ` in ${windows.length} windows` : ''}`;
    const owned: GPUBuffer[] = scratch === null ? [] : [scratch];
    const own = (buffer: GPUBuffer): GPUBuffer => (owned.push(buffer), buffer);
    let readPlaceholder: GPUBuffer | null = null;
    let writePlaceholder: GPUBuffer | null = null;
    // Bindings an entry declares but this variant never reads or writes.
    const unread = (): GPUBufferBinding => ({ buffer: (readPlaceholder ??= own(ctx.createBuffer('linear_backward:unread', 16, GPUBufferUsage.STORAGE))) });
    const unwritten = (): GPUBufferBinding => ({ buffer: (writePlaceholder ??= own(ctx.createBuffer('linear_backward:unwritten', 16, GPUBufferUsage.STORAGE))) });

    const uniforms = windows.map((w) => {
      const sumGroups = grid(Math.ceil((w.rows * k + (hasBias ? w.rows : 0)) / SUM_WORKGROUP), maxGroups);
      return { sumGroups, buffer: own(ctx.uniform('linear_backward:params', new Uint32Array([m, w.rows, k, splitRows, splits, sumGroups[0], n, w.firstRow]).buffer)) };
    });
    const dyQuads = nAligned ? dyBinding : unread();
    const dispatches = new DispatchList(ctx, label, uniforms[0]!.buffer, owned);
    // Windows run one after another in the pass, so they share the scratch partials.
    const widest = Math.max(...windows.map((w) => w.rows));
    const partialW = splits > 1 ? own(ctx.createBuffer('linear_backward:partial_dweight', splits * widest * k * 4, GPUBufferUsage.STORAGE)) : null;
    const partialB = splits > 1 && hasBias ? own(ctx.createBuffer('linear_backward:partial_dbias', splits * widest * 4, GPUBufferUsage.STORAGE)) : null;
    const dxTarget = scratch === null ? dxBinding : { buffer: scratch, size: m * k * 4 };
    windows.forEach((w, i) => {
      const rows = windows.length === 1 ? '' : ` rows ${w.firstRow}:${w.firstRow + w.rows}`;
      const { buffer: uniform, sumGroups } = uniforms[i]!;
      const step = (pipeline: GPUComputePipeline, name: string, entries: [number, GPUBufferBinding][], groups: readonly [number, number, number]) =>
        dispatches.add(pipeline, name + rows, entries, groups, uniform);
      const wBinding = wBindings[i]!;
      const dWeightBinding = dWeightBindings[i]!;
      const dxMain = i === 0 ? dxFirst : dxContinue;
      if (dxMain !== null) {
        step(dxMain, 'dx', [[1, dyBinding], [2, dyQuads], [3, wBinding], [4, kAligned ? wBinding : unread()], [7, dxTarget!]],
          [Math.ceil(k / TILE), Math.ceil(m / TILE), 1]);
      }
      step(dwPipeline, 'dweight', [[1, dyBinding], [2, dyQuads], [5, xBinding], [6, kAligned ? xBinding : unread()],
        [8, partialW ? { buffer: partialW } : dWeightBinding],
        [9, partialB ? { buffer: partialB } : dBiasBinding ?? unwritten()]],
      [Math.ceil(k / TILE), Math.ceil(w.rows / TILE), splits]);
      if (sumPipeline !== null) {
        step(sumPipeline, 'sum', [[10, { buffer: partialW! }], [11, partialB ? { buffer: partialB } : unread()], [12, dWeightBinding], [13, dBiasBinding ?? unwritten()]],
          [sumGroups[0], sumGroups[1], 1]);
      }
    });

    const prepared = dispatches.prepared();
    if (addScratch === null) return prepared;
    const add = addScratch;
    return {
      encode(pass: GPUComputePassEncoder) {
        prepared.encode(pass);
        add.encode(pass);
      },
      destroy() {
        prepared.destroy();
        add.destroy();
      },
    };
  });
}

function checkF32(name: string, value: unknown, length: number, what: string): Float32Array {
  if (!(value instanceof Float32Array) || value.length !== length) throw new InvalidArgumentError(name, `Float32Array of ${length} elements (${what})`, describe(value));
  return value;
}

/**
 * The backward for host arrays (float32, row-major): returns dx = (init.dx +) dy · W,
 * dWeight = init.dWeight + dyᵀ · x and dBias = init.dBias + Σ_rows dy (null without a bias);
 * a missing init is zeros. `poison` starts dx at POISON_BITS when no init.dx is given (tests: an
 * element the kernel never wrote shows).
 */
export async function linearBackward(ctx: GpuContext, x: Float32Array, weight: Float32Array, dy: Float32Array, shape: LinearBackwardShape,
  init: { dx?: Float32Array; dWeight?: Float32Array; dBias?: Float32Array } = {},
  options: { accumulateDx?: boolean; poison?: boolean } = {}): Promise<{ dx: Float32Array; dWeight: Float32Array; dBias: Float32Array | null }> {
  const { m, k, n, hasBias } = checkShape(shape);
  const accumulateDx = checkAccumulateDx(options);
  checkF32('x', x, m * k, 'm·k');
  checkF32('weight', weight, n * k, 'n·k');
  checkF32('dy', dy, m * n, 'm·n');
  if (init === null || typeof init !== 'object') throw new InvalidArgumentError('init', 'an object { dx?, dWeight?, dBias? }', describe(init));
  if (init.dx !== undefined) checkF32('init.dx', init.dx, m * k, 'm·k');
  if (init.dWeight !== undefined) checkF32('init.dWeight', init.dWeight, n * k, 'n·k');
  if (init.dBias !== undefined) {
    if (!hasBias) throw new InvalidArgumentError('init.dBias', 'undefined (shape.hasBias is false)', describe(init.dBias));
    checkF32('init.dBias', init.dBias, n, 'n');
  }

  const owned: GPUBuffer[] = [];
  const output = (name: string, elements: number, start: Float32Array | Uint32Array | undefined): GPUBuffer => {
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
    const buffer = start === undefined ? ctx.createBuffer(`linear_backward:${name}`, elements * 4, usage) : ctx.upload(`linear_backward:${name}`, start, usage);
    owned.push(buffer);
    return buffer;
  };
  try {
    const inputs = { x: ctx.upload('linear_backward:x', x), weight: ctx.upload('linear_backward:weight', weight), dy: ctx.upload('linear_backward:dy', dy) };
    owned.push(inputs.x, inputs.weight, inputs.dy);
    const dxBuffer = output('dx', m * k, init.dx ?? (options.poison ? new Uint32Array(m * k).fill(POISON_BITS) : undefined));
    const dWeightBuffer = output('dweight', n * k, init.dWeight);
    const dBiasBuffer = hasBias ? output('dbias', n, init.dBias) : null;
    const prepared = await prepareLinearBackward(ctx, { m, k, n, hasBias }, { ...inputs, dx: dxBuffer, dWeight: dWeightBuffer, dBias: dBiasBuffer }, { accumulateDx });
    try {
      await ctx.runPass('linear_backward', (pass) => prepared.encode(pass));
    } finally {
      prepared.destroy();
    }
    const dxOut = new Float32Array(await ctx.read('linear_backward', dxBuffer, m * k * 4));
    const dWeightOut = new Float32Array(await ctx.read('linear_backward', dWeightBuffer, n * k * 4));
    const dBiasOut = dBiasBuffer === null ? null : new Float32Array(await ctx.read('linear_backward', dBiasBuffer, n * 4));
    return { dx: dxOut, dWeight: dWeightOut, dBias: dBiasOut };
  } finally {
    for (const buffer of owned) buffer.destroy();
  }
}
