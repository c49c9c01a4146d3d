/**
 * The lm_head fused with the token statistics (kernels/lm_head_stats.wgsl): from the final hidden
 * states (rows, hidden) and the lm_head weight (vocab, hidden) straight to the per-row
 * logsumexp, self-certainty KL(U‖p), entropy, chosen-id log-prob and validCount of
 * src/ops/token-stats.ts, and back to d(hidden) and dW, without the (rows, vocab) logits: a
 * pass's memory is then sized by its activations, not by its logits (Liger's fused linear
 * cross-entropy, for these statistics).
 *
 * Supports what the models' lm_head is: no bias (Qwen2 and Llama have none), W in f32, f16 or bf16
 * (16-bit packed, as the `linear` op reads it; the backward needs f32 W, as training does), W in
 * row windows (src/ops/split.ts). `vocabLimit` masks the vocabulary entries at or past it, exactly
 * as a −inf logit is masked (a vocabulary padded past the tokenizer's). Semantics of the
 * statistics and of their gradients: src/ops/token-stats/reference.ts.
 *
 * Forward: partials_main (a grid of vocabulary ranges × row tiles, each range's online statistics
 * of every row), one dispatch per window for the ranges inside it and one per range that crosses
 * a window boundary, then token_stats_forward.wgsl's finalize_main over the ranges.
 * Backward: grad_rows_main, then per vocabulary slab (whose dL/dz fits a scratch of
 * slabBytes) grad_main recomputes the slab's logits and writes dL/dz into the scratch, and the
 * linear backward (src/ops/linear-backward.ts) adds dz · W_slab into d(hidden) and dzᵀ · hidden
 * into the slab of dW. Ranges and slabs start at fixed columns whatever the windows, so every
 * vocabulary reduction runs in one order and windowed W gives the bits of whole W (training's
 * windows test holds it to that).
 */
import { BYTES_PER_ELEMENT, POISON_BITS, checkHostArray, elementReader, parseDType, type DType, type HostArray } from '../dtype.js';
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { DispatchList, bindingOf } from './bindings.js';
import { prepareLinearBackward, type PreparedLinearBackward } from './linear-backward.js';
import { prepareEmbedding, type PreparedEmbedding } from './embedding.js';
import { DTYPE_CODE, TARGET_WORKGROUPS, TILE_N, referenceLinear, tileRows } from './linear.js';
import { MAX_PARTIAL_BYTES, uploadRowWindows, windowsOf, type RowWindow } from './split.js';
import { referenceBackward, referenceForward, type ReferenceForward } from './token-stats/reference.js';
import { grid } from './token-stats/plan.js';
import { allocateOutputs, type GpuStatsOutputs } from './token-stats/webgpu.js';

export interface LmHeadStatsShape {
  /** Rows of the hidden states (tokens). */
  rows: number;
  /** Hidden size: columns of the hidden states and of W. */
  hidden: number;
  /** Vocabulary: rows of W. */
  vocab: number;
  /** Storage of W. Default 'f32'. */
  weightDType?: DType;
  /** Vocabulary entries at or past this are masked (left out of p and U), in [1, vocab]. Default vocab. */
  vocabLimit?: number;
}

export interface PreparedLmHeadStats {
  encode(pass: GPUComputePassEncoder): void;
  /** Frees what the preparation made (uniforms, partials, scratch), not inputs or outputs. */
  destroy(): void;
}

const KERNEL = 'lm_head_stats';
const PARTIAL_BYTES = 24;
const ROW_TERMS_BYTES = 32;
const FINALIZE_WORKGROUP = 256;
const GRAD_ROWS_WORKGROUP = 256;
const FLAG_IDS = 1;
const FLAG_G_LOGPROB = 2;
const FLAG_G_SELF_CERTAINTY = 4;

interface CheckedShape {
  rows: number;
  hidden: number;
  vocab: number;
  weightDType: DType;
  vocabLimit: number;
}

function checkShape(shape: LmHeadStatsShape): CheckedShape {
  if (shape === null || typeof shape !== 'object') throw new InvalidArgumentError('shape', 'an object { rows, hidden, vocab }', describe(shape));
  for (const key of ['rows', 'hidden', 'vocab'] as const) {
    const v = shape[key];
    if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(key, 'a positive integer', describe(v));
  }
  const weightDType = parseDType(shape.weightDType ?? 'f32', 'weightDType');
  const vocabLimit = shape.vocabLimit ?? shape.vocab;
  if (!Number.isSafeInteger(vocabLimit) || vocabLimit < 1 || vocabLimit > shape.vocab) {
    throw new InvalidArgumentError('vocabLimit', `an integer in [1, ${shape.vocab}] (vocab)`, describe(vocabLimit));
  }
  return { rows: shape.rows, hidden: shape.hidden, vocab: shape.vocab, weightDType, vocabLimit };
}

function checkInvTemperature(invTemperature: unknown): number {
  if (typeof invTemperature !== 'number' || !Number.isFinite(invTemperature) || invTemperature <= 0) {
    throw new InvalidArgumentError('invTemperature', 'a finite number > 0 (1 / T)', describe(invTemperature));
  }
  return invTemperature;
}

export interface LmHeadStatsPlan {
  /** Rows per tile: 8, 16 or 32 for as few rows or fewer (no padding rows computed), else 64. */
  tileM: 8 | 16 | 32 | 64;
  /** Vocabulary columns per range, a multiple of 64. */
  rangeCols: number;
  /** Ranges per row: ceil(vocab / rangeCols), the partials' row stride and the finalize's chunks. */
  ranges: number;
}

/** Rows per tile of the fused kernels: the linear op's choice (tileRows), and 8 or 16 below 17 rows. */
export function lmHeadStatsTileRows(rows: number): 8 | 16 | 32 | 64 {
  return rows <= 8 ? 8 : rows <= 16 ? 16 : tileRows(rows);
}

/**
 * How partials_main cuts the work: row tiles of tileM, and the vocabulary in ranges of rangeCols
 * (a multiple of 64) from column 0, as many as bring the grid to about the linear op's
 * TARGET_WORKGROUPS. A function of (rows, vocab) only, never of W's windows, so windowed and
 * whole W reduce in the same order. E.g. 4096 rows × V 151,936: 64 row tiles, 32 ranges of
 * 4,800 columns per row; 8 rows: one 8-row tile, 1,187 ranges of 128 columns.
 */
export function lmHeadStatsPlan(rows: number, vocab: number): LmHeadStatsPlan {
  const tileM = lmHeadStatsTileRows(rows);
  const wanted = Math.max(1, Math.ceil(TARGET_WORKGROUPS / Math.ceil(rows / tileM)));
  const rangeCols = Math.max(TILE_N, Math.ceil(Math.ceil(vocab / wanted) / TILE_N) * TILE_N);
  return { tileM, rangeCols, ranges: Math.ceil(vocab / rangeCols) };
}

/**
 * Vocabulary columns per backward slab: the most (a multiple of 64) whose f32 dL/dz of `rows`
 * rows fits `slabBytes` (default min(64 MiB, maxBindingBytes)), at least 64. Slabs start at
 * multiples of it from column 0, whatever W's windows.
 */
export function lmHeadStatsSlabCols(rows: number, vocab: number, maxBindingBytes: number, slabBytes = Math.min(MAX_PARTIAL_BYTES, maxBindingBytes)): number {
  const fit = Math.floor(slabBytes / (rows * 4 * TILE_N)) * TILE_N;
  return Math.min(Math.max(TILE_N, fit), Math.ceil(vocab / TILE_N) * TILE_N);
}

/** Where the forward reads each range: a window (from its row `start`) or, crossing windows, a gathered copy. */
interface RangeRun {
  /** Index into the windows, or -1: the ranges' rows gathered into the seam buffer from row `start`. */
  window: number;
  start: number;
  firstRange: number;
  count: number;
}

/** The forward's ranges grouped into dispatches: runs of whole ranges inside one window, and each range that crosses a window boundary on its own. */
function rangeRuns(windows: readonly RowWindow[], vocab: number, rangeCols: number): { runs: RangeRun[]; seamIds: number[] } {
  const runs: RangeRun[] = [];
  const seamIds: number[] = [];
  let w = 0;
  for (let r = 0; r * rangeCols < vocab; r++) {
    const begin = r * rangeCols;
    const end = Math.min(vocab, begin + rangeCols);
    while (windows[w]!.firstRow + windows[w]!.rows <= begin) w++;
    const win = windows[w]!;
    const last = runs[runs.length - 1];
    if (end <= win.firstRow + win.rows) {
      if (last && last.window === w && last.firstRange + last.count === r) last.count++;
      else runs.push({ window: w, start: begin - win.firstRow, firstRange: r, count: 1 });
    } else {
      runs.push({ window: -1, start: seamIds.length, firstRange: r, count: 1 });
      for (let j = begin; j < end; j++) seamIds.push(j);
    }
  }
  return { runs, seamIds };
}

function params(s: CheckedShape, w: { firstRow: number; rows: number }, fields: { rangeCols?: number; rangeBase?: number; ranges?: number; start?: number; cols?: number; stride?: number; offset?: number; flags: number; invTemperature: number }): ArrayBuffer {
  const data = new ArrayBuffer(64);
  new Uint32Array(data).set([s.rows, w.rows, s.hidden, w.firstRow, fields.rangeCols ?? 0, fields.rangeBase ?? 0, fields.ranges ?? 0, s.vocabLimit,
    fields.start ?? 0, fields.cols ?? 0, fields.stride ?? 0, fields.offset ?? 0, fields.flags]);
  new Float32Array(data)[13] = fields.invTemperature;
  return data;
}

/** Bindings 1–5 of a tile kernel: x and its quads, one window of W and its aligned views. */
function tileBindings(s: CheckedShape, dtype: DType, hidden: GPUBufferBinding, w: GPUBufferBinding, unread: () => GPUBufferBinding): [number, GPUBufferBinding][] {
  const kAligned = s.hidden % 4 === 0;
  return [[1, hidden], [2, kAligned ? hidden : unread()], [3, w],
    [4, kAligned && dtype === 'f32' ? w : unread()], [5, kAligned && dtype !== 'f32' ? w : unread()]];
}

/**
 * Records the forward into a caller's pass: hidden (rows·hidden f32), weight (vocab·hidden of
 * weightDType, or its row windows; 16-bit windows of odd hidden start on a word), ids (rows u32,
 * each < vocab; or null: no logprob) → `outputs` (see allocateOutputs in
 * ./token-stats/webgpu.ts; logprob needed when ids are given), the statistics of z / T for
 * invTemperature = 1 / T. The vocabulary ranges are lmHeadStatsPlan's whatever the windows, so
 * windowed W gives the bits of whole W: a range that crosses a window boundary is first gathered
 * (the embedding op, f32) into a seam buffer of rangeCols rows per such range.
 */
export async function prepareLmHeadStats(ctx: GpuContext, shape: LmHeadStatsShape,
  buffers: { hidden: GPUBuffer; weight: GPUBuffer | readonly RowWindow[]; ids: GPUBuffer | null }, outputs: GpuStatsOutputs,
  { invTemperature = 1 }: { invTemperature?: number } = {}): Promise<PreparedLmHeadStats> {
  const s = checkShape(shape);
  checkInvTemperature(invTemperature);
  if (buffers === null || typeof buffers !== 'object') throw new InvalidArgumentError('buffers', 'an object { hidden, weight, ids }', describe(buffers));
  if (outputs === null || typeof outputs !== 'object') throw new InvalidArgumentError('outputs', 'per-row output buffers (allocateOutputs)', describe(outputs));
  const { rows, hidden: k, vocab, weightDType } = s;
  const windows = windowsOf('weight', buffers.weight, vocab);
  const plan = lmHeadStatsPlan(rows, vocab);
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;
  if (Math.ceil(rows / plan.tileM) > maxGroups) throw new InvalidArgumentError('rows', `at most ${plan.tileM * maxGroups}`, String(rows));
  if (rows * plan.ranges * PARTIAL_BYTES > ctx.maxBindingBytes) {
    throw new InvalidArgumentError('rows', `at most ${Math.floor(ctx.maxBindingBytes / (plan.ranges * PARTIAL_BYTES))} (their ${plan.ranges} partial statistics each must fit one binding)`, String(rows));
  }
  const { runs, seamIds } = rangeRuns(windows, vocab, plan.rangeCols);
  const hiddenBinding = bindingOf(ctx, 'hidden', buffers.hidden, rows * k * 4);
  const named = (w: RowWindow) => (windows.length === 1 ? 'weight' : `weight[${w.firstRow}:${w.firstRow + w.rows}]`);
  const wBindings = windows.map((w) => bindingOf(ctx, named(w), w.buffer, w.rows * k * BYTES_PER_ELEMENT[weightDType]));
  const idsBinding = buffers.ids === null ? null : bindingOf(ctx, 'ids', buffers.ids, rows * 4);
  const outBindings = (['logsumexp', 'selfCertainty', 'entropy', 'validCount'] as const).map((name) => bindingOf(ctx, name, outputs[name], rows * 4));
  if (idsBinding !== null && !outputs.logprob) throw new InvalidArgumentError('outputs.logprob', 'a GPUBuffer when ids are given', describe(outputs.logprob));
  const logprobBinding = idsBinding === null ? null : bindingOf(ctx, 'logprob', outputs.logprob!, rows * 4);
  const tileConstants = (dtype: DType) => ({ W_DTYPE: DTYPE_CODE[dtype], K_ALIGNED: k % 4 === 0 ? 1 : 0, TILE_M: plan.tileM });
  const [partialsPipeline, seamPipeline, finalizePipeline] = await Promise.all([
    ctx.pipeline(KERNEL, 'partials_main', tileConstants(weightDType)),
    seamIds.length > 0 ? ctx.pipeline(KERNEL, 'partials_main', tileConstants('f32')) : null,
    ctx.pipeline('token_stats_forward', 'finalize_main', { DTYPE: 0, WG: FINALIZE_WORKGROUP }),
  ]);
  const owned: GPUBuffer[] = [];
  const own = (buffer: GPUBuffer): GPUBuffer => (owned.push(buffer), buffer);
  let gather: PreparedEmbedding | null = null;
  try {
    let seam: GPUBuffer | null = null;
    if (seamIds.length > 0) {
      seam = own(ctx.createBuffer('lm_head_stats:seam_rows', seamIds.length * k * 4, GPUBufferUsage.STORAGE));
      const seamIdsBuffer = own(ctx.upload('lm_head_stats:seam_ids', Uint32Array.from(seamIds)));
      gather = await prepareEmbedding(ctx, { tokens: seamIds.length, vocab, hidden: k, dtype: weightDType }, seamIdsBuffer, windows, seam);
    }
    const prepared = ctx.scoped('lm_head_stats:prepare', () => {
      const label = `lm_head_stats ${rows}x${k}x${vocab} ${weightDType}${windows.length > 1 ? ` in ${windows.length} windows` : ''}`;
      let placeholder: GPUBuffer | null = null;
      const unread = (): GPUBufferBinding => ({ buffer: (placeholder ??= own(ctx.createBuffer('lm_head_stats:unread', 16, GPUBufferUsage.STORAGE))) });
      const partials = own(ctx.createBuffer('lm_head_stats:partials', rows * plan.ranges * PARTIAL_BYTES, GPUBufferUsage.STORAGE));
      const chosen = own(ctx.createBuffer('lm_head_stats:chosen', rows * 4, GPUBufferUsage.STORAGE));
      const flags = idsBinding === null ? 0 : FLAG_IDS;
      const finUniform = own(ctx.uniform('lm_head_stats:finalize_params', new Uint32Array([rows, plan.ranges, vocab, flags]).buffer));
      const dispatches = new DispatchList(ctx, label, finUniform, owned);
      for (const run of runs) {
        const rangeFields = { rangeCols: plan.rangeCols, rangeBase: run.firstRange, ranges: plan.ranges, flags, invTemperature };
        const first = run.firstRange * plan.rangeCols;
        const extra: [number, GPUBufferBinding][] = [[6, idsBinding ?? unread()], [7, { buffer: partials }], [8, { buffer: chosen }]];
        if (run.window >= 0) {
          const w = windows[run.window]!;
          const uniform = own(ctx.uniform('lm_head_stats:params', params(s, w, { ...rangeFields, start: run.start })));
          const end = Math.min(vocab, (run.firstRange + run.count) * plan.rangeCols);
          dispatches.add(partialsPipeline, `partials ${first}:${end}${windows.length === 1 ? '' : ` of rows ${w.firstRow}:${w.firstRow + w.rows}`}`,
            [...tileBindings(s, weightDType, hiddenBinding, wBindings[run.window]!, unread), ...extra], [run.count, Math.ceil(rows / plan.tileM), 1], uniform);
        } else {
          // One range across windows: its gathered rows (f32), from seam row run.start.
          const cols = Math.min(vocab, first + plan.rangeCols) - first;
          const uniform = own(ctx.uniform('lm_head_stats:params', params(s, { firstRow: first, rows: cols }, rangeFields)));
          const binding = bindingOf(ctx, 'seam_rows', seam!, cols * k * 4, run.start * k * 4);
          dispatches.add(seamPipeline!, `partials ${first}:${first + cols} gathered`, [...tileBindings(s, 'f32', hiddenBinding, binding, unread), ...extra],
            [1, Math.ceil(rows / plan.tileM), 1], uniform);
        }
      }
      // The token-stats finalize: bindings 10 (its uniform) to 18.
      let unwritten: GPUBuffer | null = null;
      const finalizeEntries: [number, GPUBufferBinding][] = [
        [11, { buffer: partials }], [12, idsBinding ?? unread()], [13, { buffer: chosen }],
        [14, outBindings[0]!], [15, outBindings[1]!], [16, outBindings[2]!],
        [17, logprobBinding ?? { buffer: (unwritten ??= own(ctx.createBuffer('lm_head_stats:unwritten', 16, GPUBufferUsage.STORAGE))) }], [18, outBindings[3]!],
      ];
      const [gx, gy] = grid(rows, maxGroups);
      const bindGroup = ctx.device.createBindGroup({
        label: `${label} finalize`,
        layout: finalizePipeline.getBindGroupLayout(0),
        entries: [{ binding: 10, resource: { buffer: finUniform } }, ...finalizeEntries.map(([binding, resource]) => ({ binding, resource }))],
      });
      const list = dispatches.prepared();
      const seamGather = gather;
      return {
        encode(pass: GPUComputePassEncoder) {
          seamGather?.encode(pass);
          list.encode(pass);
          pass.setPipeline(finalizePipeline);
          pass.setBindGroup(0, bindGroup);
          pass.dispatchWorkgroups(gx, gy);
        },
        destroy() {
          seamGather?.destroy();
          list.destroy();
        },
      };
    });
    return prepared;
  } catch (err) {
    gather?.destroy();
    for (const b of owned) b.destroy();
    throw err;
  }
}

export interface LmHeadStatsBackwardBuffers {
  /** (rows, hidden) f32: the forward's hidden states. */
  hidden: GPUBuffer;
  /** (vocab, hidden) f32 W, or its row windows. */
  weight: GPUBuffer | readonly RowWindow[];
  /** (rows) u32 chosen ids, or null (then gLogprob must be null). */
  ids: GPUBuffer | null;
  /** The forward's logsumexp (f32) and validCount (u32), per row. */
  logsumexp: GPUBuffer;
  validCount: GPUBuffer;
  /** Upstream gradients (rows f32) of logprob and selfCertainty; null: zero. */
  gLogprob: GPUBuffer | null;
  gSelfCertainty: GPUBuffer | null;
  /** (rows, hidden) f32: overwritten with d(hidden), or added to with accumulateDHidden. */
  dHidden: GPUBuffer;
  /** (vocab, hidden) f32, windows as the weight's: dW is added to it. */
  dWeight: GPUBuffer | readonly RowWindow[];
}

/** A window's columns [start, start + cols) of a slab, at the slab's column `offset`. */
interface SlabPiece {
  window: number;
  start: number;
  cols: number;
  offset: number;
}

/**
 * Records the backward into a caller's pass: d(hidden) = dz · W (overwritten, or added with
 * accumulateDHidden) and dW += dzᵀ · hidden, for dz = dL/dz of the statistics' upstream gradients
 * (the token-stats backward's formula), slab by slab, never the whole (rows, vocab) dz. W is f32.
 * `slabBytes` caps the scratch of one slab's dz (default min(64 MiB, maxBindingBytes)). Slabs are
 * cut from column 0 whatever the windows; a slab across windows runs as pieces, one per window,
 * and its linear backward takes the pieces as windows (one fma chain into d(hidden), dW's row
 * split of the slab's shape), so windowed W gives the bits of whole W. A piece binds W and dW at
 * (start · hidden · 4) bytes into its window: a multiple of the device's
 * minStorageBufferOffsetAlignment whenever hidden is a multiple of 64 (every model's).
 */
export async function prepareLmHeadStatsBackward(ctx: GpuContext, shape: LmHeadStatsShape, buffers: LmHeadStatsBackwardBuffers,
  { invTemperature = 1, accumulateDHidden = false, slabBytes }: { invTemperature?: number; accumulateDHidden?: boolean; slabBytes?: number } = {}): Promise<PreparedLmHeadStats> {
  const s = checkShape(shape);
  checkInvTemperature(invTemperature);
  if (s.weightDType !== 'f32') throw new InvalidArgumentError('weightDType', "'f32' (the backward reads f32 weights, as training does)", `'${s.weightDType}'`);
  if (buffers === null || typeof buffers !== 'object') throw new InvalidArgumentError('buffers', 'an object { hidden, weight, ids, logsumexp, validCount, gLogprob, gSelfCertainty, dHidden, dWeight }', describe(buffers));
  if (slabBytes !== undefined && (!Number.isSafeInteger(slabBytes) || slabBytes < 1)) throw new InvalidArgumentError('slabBytes', 'a positive integer', describe(slabBytes));
  const { rows, hidden: k, vocab } = s;
  if (buffers.gLogprob && !buffers.ids) throw new InvalidArgumentError('ids', 'chosen ids when gLogprob is given', 'null');
  const windows = windowsOf('weight', buffers.weight, vocab);
  const gradWindows = windowsOf('dWeight', buffers.dWeight, vocab);
  const ranges = (list: readonly RowWindow[]) => list.map((w) => `${w.firstRow}:${w.firstRow + w.rows}`).join(',');
  if (ranges(gradWindows) !== ranges(windows)) throw new InvalidArgumentError('dWeight', `row windows of the weight's rows (${ranges(windows)})`, ranges(gradWindows));
  const tileM = lmHeadStatsTileRows(rows);
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;
  if (Math.ceil(rows / tileM) > maxGroups) throw new InvalidArgumentError('rows', `at most ${tileM * maxGroups}`, String(rows));
  const slabCols = lmHeadStatsSlabCols(rows, vocab, ctx.maxBindingBytes, slabBytes);
  const hiddenBinding = bindingOf(ctx, 'hidden', buffers.hidden, rows * k * 4);
  const named = (name: string, w: RowWindow) => (windows.length === 1 ? name : `${name}[${w.firstRow}:${w.firstRow + w.rows}]`);
  const wBindings = windows.map((w) => bindingOf(ctx, named('weight', w), w.buffer, w.rows * k * 4));
  const rowBindings = ([['ids', buffers.ids], ['logsumexp', buffers.logsumexp], ['validCount', buffers.validCount], ['gLogprob', buffers.gLogprob],
    ['gSelfCertainty', buffers.gSelfCertainty]] as const).map(([name, b]) => (b === null ? null : bindingOf(ctx, name, b, rows * 4)));
  const flags = (buffers.ids ? FLAG_IDS : 0) | (buffers.gLogprob ? FLAG_G_LOGPROB : 0) | (buffers.gSelfCertainty ? FLAG_G_SELF_CERTAINTY : 0);
  const constants = { W_DTYPE: 0, K_ALIGNED: k % 4 === 0 ? 1 : 0, TILE_M: tileM };
  const [rowsPipeline, gradPipeline] = await Promise.all([
    ctx.pipeline(KERNEL, 'grad_rows_main', constants),
    ctx.pipeline(KERNEL, 'grad_main', constants),
  ]);
  // Slab j: columns [j · slabCols, …), as pieces of the windows it overlaps.
  const slabs: { start: number; width: number; pieces: SlabPiece[] }[] = [];
  for (let start = 0; start < vocab; start += slabCols) {
    const width = Math.min(slabCols, vocab - start);
    const pieces: SlabPiece[] = [];
    windows.forEach((w, i) => {
      const from = Math.max(start, w.firstRow);
      const to = Math.min(start + width, w.firstRow + w.rows);
      if (from < to) pieces.push({ window: i, start: from - w.firstRow, cols: to - from, offset: from - start });
    });
    slabs.push({ start, width, pieces });
  }
  const alignment = ctx.limits.minStorageBufferOffsetAlignment;
  for (const p of slabs.flatMap((slab) => slab.pieces)) {
    if ((p.start * k * 4) % alignment !== 0) {
      const w = windows[p.window]!;
      throw new InvalidArgumentError('weight', `row windows whose slab pieces bind at multiples of ${alignment} bytes (hidden a multiple of 64, or windows starting at multiples of 64 rows)`,
        `a window from row ${w.firstRow} whose piece starts ${p.start} rows in (${p.start * k * 4} bytes)`);
    }
  }
  const owned: GPUBuffer[] = [];
  const slabSteps: PreparedLinearBackward[] = [];
  try {
    const scratch = ctx.createBuffer('lm_head_stats:d_logits_slab', rows * slabCols * 4, GPUBufferUsage.STORAGE);
    owned.push(scratch);
    for (const [j, slab] of slabs.entries()) {
      const at = (list: readonly RowWindow[]) => slab.pieces.map((p) => {
        const base = list[p.window]!;
        return { buffer: base.buffer, firstRow: p.offset, rows: p.cols, byteOffset: (base.byteOffset ?? 0) + p.start * k * 4 };
      });
      slabSteps.push(await prepareLinearBackward(ctx, { m: rows, k, n: slab.width, hasBias: false },
        { x: buffers.hidden, weight: at(windows), dy: scratch, dx: buffers.dHidden, dWeight: at(gradWindows), dBias: null },
        { accumulateDx: j > 0 || accumulateDHidden }));
    }
    const prepared = await ctx.scoped('lm_head_stats_backward:prepare', () => {
      const label = `lm_head_stats_backward ${rows}x${k}x${vocab}${windows.length > 1 ? ` in ${windows.length} windows` : ''}, ${slabs.length} slabs of ≤ ${slabCols}`;
      let placeholder: GPUBuffer | null = null;
      const unread = (): GPUBufferBinding => ({ buffer: (placeholder ??= ctx.createBuffer('lm_head_stats:unread', 16, GPUBufferUsage.STORAGE)) });
      const rowTerms = ctx.createBuffer('lm_head_stats:row_terms', rows * ROW_TERMS_BYTES, GPUBufferUsage.STORAGE);
      owned.push(rowTerms);
      const rowsUniform = ctx.uniform('lm_head_stats:params', params(s, windows[0]!, { flags, invTemperature }));
      owned.push(rowsUniform);
      const dispatches = new DispatchList(ctx, label, rowsUniform, owned);
      dispatches.add(rowsPipeline, 'rows', [[6, rowBindings[0] ?? unread()], [9, { buffer: rowTerms }], [11, rowBindings[1]!], [12, rowBindings[2]!],
        [13, rowBindings[3] ?? unread()], [14, rowBindings[4] ?? unread()]], [Math.ceil(rows / GRAD_ROWS_WORKGROUP), 1, 1]);
      const gradSteps = slabs.map((slab) => {
        const list = new DispatchList(ctx, `${label} slab ${slab.start}:${slab.start + slab.width}`, rowsUniform, []);
        for (const p of slab.pieces) {
          const w = windows[p.window]!;
          const uniform = ctx.uniform('lm_head_stats:params', params(s, w, { start: p.start, cols: p.cols, stride: slab.width, offset: p.offset, flags, invTemperature }));
          owned.push(uniform);
          list.add(gradPipeline, slab.pieces.length === 1 ? 'dz' : `dz of rows ${w.firstRow}:${w.firstRow + w.rows}`,
            [...tileBindings(s, 'f32', hiddenBinding, wBindings[p.window]!, unread), [9, { buffer: rowTerms }], [10, { buffer: scratch, size: rows * slab.width * 4 }]],
            [Math.ceil(p.cols / TILE_N), Math.ceil(rows / tileM), 1], uniform);
        }
        return list.prepared();
      });
      if (placeholder) owned.push(placeholder);
      const first = dispatches.prepared();
      return {
        encode(pass: GPUComputePassEncoder) {
          first.encode(pass);
          gradSteps.forEach((step, j) => {
            step.encode(pass);
            slabSteps[j]!.encode(pass);
          });
        },
        destroy() {
          first.destroy();
          for (const step of slabSteps) step.destroy();
        },
      };
    });
    return prepared;
  } catch (err) {
    for (const step of slabSteps) step.destroy();
    for (const b of owned) b.destroy();
    throw err;
  }
}

/** Per-row statistics on the host, as tokenStats returns them (logprob null without ids). */
export interface LmHeadStatsResult {
  logsumexp: Float32Array;
  selfCertainty: Float32Array;
  entropy: Float32Array;
  logprob: Float32Array | null;
  validCount: Uint32Array;
}

function checkF32(name: string, value: unknown, length: number, what: string): Float32Array {
  if (!(value instanceof Float32Array) || value.length !== length) throw new InvalidArgumentError(name, `Float32Array of ${length} elements (${what})`, describe(value));
  return value;
}

function checkIds(ids: unknown, rows: number, vocab: number): Uint32Array | null {
  if (ids === null || ids === undefined) return null;
  if (!(ids instanceof Int32Array || ids instanceof Uint32Array) || ids.length !== rows) throw new InvalidArgumentError('ids', `Int32Array or Uint32Array of ${rows} ids (one per row)`, describe(ids));
  for (let i = 0; i < rows; i++) {
    if (!(ids[i]! >= 0 && ids[i]! < vocab)) throw new InvalidArgumentError(`ids[${i}]`, `an integer in [0, ${vocab})`, String(ids[i]));
  }
  return Uint32Array.from(ids);
}

/**
 * The forward for host arrays: hidden (rows·hidden f32), weight (vocab·hidden, Float32Array for
 * f32 or Uint16Array of f16/bf16 bits). `windowRows` uploads W in row windows of that many rows
 * (tests); `poison` fills the outputs with POISON_BITS first (an element never written shows).
 */
export async function lmHeadStats(ctx: GpuContext, hidden: Float32Array, weight: HostArray, shape: LmHeadStatsShape,
  { ids = null, temperature = 1, poison = false, windowRows }: { ids?: Int32Array | Uint32Array | null; temperature?: number; poison?: boolean; windowRows?: number } = {}): Promise<LmHeadStatsResult> {
  const s = checkShape(shape);
  checkF32('hidden', hidden, s.rows * s.hidden, 'rows·hidden');
  checkHostArray('weight', s.weightDType, weight);
  if (weight.length !== s.vocab * s.hidden) throw new InvalidArgumentError('weight', `${s.vocab * s.hidden} elements (vocab·hidden)`, describe(weight));
  const idArray = checkIds(ids, s.rows, s.vocab);
  const owned: GPUBuffer[] = [];
  try {
    const hiddenBuffer = ctx.upload('lm_head_stats:hidden', hidden);
    owned.push(hiddenBuffer);
    const windows = uploadRowWindows(ctx, 'lm_head_stats:weight', weight, s.hidden, s.vocab, windowRows, owned);
    const idsBuffer = idArray === null ? null : ctx.upload('lm_head_stats:ids', idArray);
    if (idsBuffer) owned.push(idsBuffer);
    const outputs = allocateOutputs(ctx, s.rows, idArray !== null);
    const outs = [outputs.logsumexp, outputs.selfCertainty, outputs.entropy, outputs.logprob, outputs.validCount].filter((b): b is GPUBuffer => b !== null);
    owned.push(...outs);
    if (poison) for (const b of outs) ctx.writeBuffer(b, 0, new Uint32Array(s.rows).fill(POISON_BITS));
    const prepared = await prepareLmHeadStats(ctx, shape, { hidden: hiddenBuffer, weight: windows, ids: idsBuffer }, outputs, { invTemperature: 1 / temperature });
    try {
      await ctx.runPass('lm_head_stats', (pass) => prepared.encode(pass));
    } finally {
      prepared.destroy();
    }
    const read = async (b: GPUBuffer) => new Float32Array(await ctx.read('lm_head_stats', b, s.rows * 4));
    return {
      logsumexp: await read(outputs.logsumexp), selfCertainty: await read(outputs.selfCertainty), entropy: await read(outputs.entropy),
      logprob: outputs.logprob ? await read(outputs.logprob) : null,
      validCount: new Uint32Array(await ctx.read('lm_head_stats', outputs.validCount, s.rows * 4)),
    };
  } finally {
    for (const b of owned) b.destroy();
  }
}

/**
 * The backward for host arrays (f32): d(hidden) and dW (vocab·hidden, added to `dWeightInit`
 * when given) for per-row upstream gradients, at the forward's logsumexp and validCount.
 */
export async function lmHeadStatsBackward(ctx: GpuContext, hidden: Float32Array, weight: Float32Array, shape: LmHeadStatsShape,
  args: { ids?: Int32Array | Uint32Array | null; temperature?: number; logsumexp: Float32Array; validCount: Uint32Array; gLogprob?: Float32Array | null; gSelfCertainty?: Float32Array | null;
    dWeightInit?: Float32Array; poison?: boolean; windowRows?: number; slabBytes?: number }): Promise<{ dHidden: Float32Array; dWeight: Float32Array }> {
  const s = checkShape(shape);
  checkF32('hidden', hidden, s.rows * s.hidden, 'rows·hidden');
  checkF32('weight', weight, s.vocab * s.hidden, 'vocab·hidden');
  const idArray = checkIds(args.ids, s.rows, s.vocab);
  checkF32('logsumexp', args.logsumexp, s.rows, 'one per row');
  if (!(args.validCount instanceof Uint32Array) || args.validCount.length !== s.rows) throw new InvalidArgumentError('validCount', `Uint32Array of ${s.rows} counts`, describe(args.validCount));
  for (const name of ['gLogprob', 'gSelfCertainty'] as const) if (args[name] != null) checkF32(name, args[name], s.rows, 'one per row');
  if (args.dWeightInit !== undefined) checkF32('dWeightInit', args.dWeightInit, s.vocab * s.hidden, 'vocab·hidden');
  const owned: GPUBuffer[] = [];
  const out = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
  try {
    const up = (name: string, data: Float32Array | Uint32Array | null | undefined) => {
      if (data == null) return null;
      const b = ctx.upload(`lm_head_stats:${name}`, data);
      owned.push(b);
      return b;
    };
    const dHidden = ctx.upload('lm_head_stats:d_hidden', new Uint32Array(s.rows * s.hidden).fill(args.poison ? POISON_BITS : 0), out);
    owned.push(dHidden);
    const dWeightStart = args.dWeightInit ?? new Float32Array(s.vocab * s.hidden);
    const dWeight = uploadRowWindows(ctx, 'lm_head_stats:d_weight', dWeightStart, s.hidden, s.vocab, args.windowRows, owned, out);
    const prepared = await prepareLmHeadStatsBackward(ctx, shape, {
      hidden: up('hidden', hidden)!, weight: uploadRowWindows(ctx, 'lm_head_stats:weight', weight, s.hidden, s.vocab, args.windowRows, owned),
      ids: up('ids', idArray), logsumexp: up('logsumexp', args.logsumexp)!, validCount: up('valid_count', args.validCount)!,
      gLogprob: up('g_logprob', args.gLogprob), gSelfCertainty: up('g_self_certainty', args.gSelfCertainty), dHidden, dWeight,
    }, { invTemperature: 1 / (args.temperature ?? 1), slabBytes: args.slabBytes });
    try {
      await ctx.runPass('lm_head_stats_backward', (pass) => prepared.encode(pass));
    } finally {
      prepared.destroy();
    }
    const dW = new Float32Array(s.vocab * s.hidden);
    for (const w of dWeight) dW.set(new Float32Array(await ctx.read('lm_head_stats_backward', w.buffer, w.rows * s.hidden * 4)), w.firstRow * s.hidden);
    return { dHidden: new Float32Array(await ctx.read('lm_head_stats_backward', dHidden, s.rows * s.hidden * 4)), dWeight: dW };
  } finally {
    for (const b of owned) b.destroy();
  }
}

/** Float64 logits x · Wᵀ of decoded weights, −inf at and past vocabLimit. */
function referenceLogits(hidden: ArrayLike<number>, weight: HostArray, s: CheckedShape): Float64Array {
  const read = elementReader(s.weightDType, weight);
  const values = Float64Array.from({ length: s.vocab * s.hidden }, (_, i) => read(i));
  const logits = referenceLinear(hidden, values, null, { m: s.rows, k: s.hidden, n: s.vocab });
  for (let r = 0; r < s.rows; r++) logits.fill(-Infinity, r * s.vocab + s.vocabLimit, (r + 1) * s.vocab);
  return logits;
}

/** The float64 reference of the forward: referenceLinear, then the token-stats reference. */
export function referenceLmHeadStats(hidden: ArrayLike<number>, weight: HostArray, shape: LmHeadStatsShape, ids: ArrayLike<number> | null, temperature = 1): ReferenceForward {
  const s = checkShape(shape);
  // The token-stats reference reads 'f32' data by index: float64 logits go through unrounded.
  return referenceForward('f32', referenceLogits(hidden, weight, s) as unknown as Float32Array, s.rows, s.vocab, ids, temperature);
}

/** The float64 reference of the backward: dz by the token-stats reference, then dz · W and dzᵀ · hidden. */
export function referenceLmHeadStatsBackward(hidden: ArrayLike<number>, weight: Float32Array, shape: LmHeadStatsShape, ids: ArrayLike<number> | null, temperature: number,
  logsumexp: ArrayLike<number>, validCount: ArrayLike<number>, gLogprob: ArrayLike<number> | null, gSelfCertainty: ArrayLike<number> | null): { dHidden: Float64Array; dWeight: Float64Array } {
  const s = checkShape(shape);
  const dz = referenceBackward('f32', referenceLogits(hidden, weight, s) as unknown as Float32Array, s.rows, s.vocab, ids, temperature, logsumexp, validCount, gLogprob, gSelfCertainty);
  const dHidden = new Float64Array(s.rows * s.hidden);
  const dWeight = new Float64Array(s.vocab * s.hidden);
  for (let r = 0; r < s.rows; r++) {
    for (let j = 0; j < s.vocab; j++) {
      const g = dz[r * s.vocab + j]!;
      if (g === 0) continue;
      for (let p = 0; p < s.hidden; p++) {
        dHidden[r * s.hidden + p] = dHidden[r * s.hidden + p]! + g * weight[j * s.hidden + p]!;
        dWeight[j * s.hidden + p] = dWeight[j * s.hidden + p]! + g * hidden[r * s.hidden + p]!;
      }
    }
  }
  return { dHidden, dWeight };
}
