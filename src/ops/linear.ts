/**
 * y = x · Wᵀ + b, PyTorch's nn.Linear, on WebGPU (kernels/linear.wgsl), with a float64
 * reference. W is (N, K) as Hugging Face checkpoints store it, in f32, f16 or bf16 (16-bit values
 * packed two per 32-bit word, exactly as in a safetensors file, K odd included); the optional
 * bias likewise; x and y are f32 and the accumulation is f32. Small grids (decoding, narrow
 * outputs) cut k into ranges whose partials a second dispatch adds in a fixed order (linearPlan),
 * so results repeat bit for bit; a few rows (decoding a small batch) run on a kernel that reads
 * each W row with 32 lanes splitting k instead of padding a 32-row tile.
 */
import { BYTES_PER_ELEMENT, checkHostArray, parseDType, type DType, type HostArray } from '../dtype.js';
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { DispatchList, bindingOf, runOnHost } from './bindings.js';
import { lanesFor, splitReduction, windowsOf, type RowWindow } from './split.js';

export interface LinearShape {
  /** Rows of x and y (tokens). */
  m: number;
  /** Input features: columns of x and of W. */
  k: number;
  /** Output features: rows of W, columns of y, length of the bias. */
  n: number;
  /** Storage of W. Default 'f32'. */
  weightDType?: DType;
  /** Storage of the bias, when there is one. Default: weightDType. */
  biasDType?: DType;
}

/** W_DTYPE / B_DTYPE override codes of kernels/linear_tile.wgsl (shared by the fused lm_head). */
export const DTYPE_CODE: Record<DType, number> = { f32: 0, f16: 1, bf16: 2 };
const NO_BIAS = 3;
/** Columns of y per workgroup (kernels/linear_tile.wgsl TILE_N). */
export const TILE_N = 64;
/** k elements staged per step; split ranges are multiples of it. */
const DEPTH = 16;
const REDUCE_WORKGROUP = 256;
/** Up to this many rows of x run on linear_rows_main (lanes splitting k, no padding rows). */
const ROWS_MAX = 8;
/** Threads of a linear_rows_main workgroup. */
const ROWS_WORKGROUP = 256;
/** Workgroups per grid dimension that every WebGPU device allows. */
const GUARANTEED_WORKGROUPS = 65535;
/** Up to this many rows of x run as one 32-row tile row (decoding: W is then read exactly once). */
const SMALL_M = 32;

/** Rows of the linear tile (kernels/linear_tile.wgsl TILE_M) for m rows of x: 32 up to SMALL_M, else 64. */
export function tileRows(m: number): 32 | 64 {
  return m <= SMALL_M ? 32 : 64;
}
/** Split k until about this many workgroups run (≈ 15 per SM on a 132-SM GPU: enough waves that the last, partial one costs little)… */
export const TARGET_WORKGROUPS = 2048;
/** …but give each range at least this many k (see ./split.ts). */
const MIN_SPLIT_K = 128;

export interface LinearPlan {
  /**
   * 'rows' (m ≤ 8, and its grid within 65,535 workgroups): linear_rows_main, `lanes` threads per
   * column of y splitting k, every row of x at once; 'tiles': linear_main's tiles.
   */
  kernel: 'rows' | 'tiles';
  /** rows: threads per column, 4 … 32, about 8 quads of k each (256 / lanes columns a workgroup). */
  lanes: number;
  /** Rows of x per workgroup: 32 when m ≤ 32, else 64. */
  tileM: 32 | 64;
  /** Ranges k is cut into (grid z); 1: y is written directly, else partials then a reduction. */
  splits: number;
  /** k per range, a multiple of 16 (the last range may be shorter). */
  kPerSplit: number;
}

/**
 * How kernels/linear.wgsl runs a shape: a TILE_M × 64 tile of y per workgroup, and k cut into
 * `splits` consecutive ranges when the ceil(n / 64) · ceil(m / tileM) tiles alone are fewer than
 * TARGET_WORKGROUPS: splits = min(ceil(TARGET_WORKGROUPS / tiles), floor(k / MIN_SPLIT_K), partials
 * that fit 64 MiB), at least 1, each range a multiple of 16 long. Each range writes a
 * partial tile, and a second dispatch adds them in range order, then the bias. A function of the
 * shape (and of maxBindingBytes when that is under 64 MiB) only, so results repeat bit for bit.
 * E.g. (m, k, n) = (2048, 896, 4864): 2432 tiles, one range; (2048, 4864, 896): 448 tiles,
 * 5 ranges of 976 (the last 960); (32, 4864, 896): 14 tiles of 32 rows, 38 ranges of 128.
 * A few rows (m ≤ 8) run on linear_rows_main instead, unsplit.
 */
export function linearPlan({ m, k, n }: Pick<LinearShape, 'm' | 'k' | 'n'>, maxBindingBytes: number): LinearPlan {
  const lanes = lanesFor(Math.ceil(k / 4), 8, 4, 32);
  if (m <= ROWS_MAX && Math.ceil(n / (ROWS_WORKGROUP / lanes)) <= GUARANTEED_WORKGROUPS) return { kernel: 'rows', lanes, tileM: 32, splits: 1, kPerSplit: k };
  const tileM = tileRows(m);
  const tiles = Math.ceil(n / TILE_N) * Math.ceil(m / tileM);
  const { splits, range } = splitReduction({ tiles, length: k, targetWorkgroups: TARGET_WORKGROUPS, minRange: MIN_SPLIT_K, partialBytes: m * n * 4, maxBindingBytes, multiple: DEPTH });
  return { kernel: 'tiles', lanes: 0, tileM, splits, kPerSplit: range };
}

function checkShape(shape: LinearShape): { m: number; k: number; n: number; weightDType: DType; biasDType: DType } {
  if (shape === null || typeof shape !== 'object') throw new InvalidArgumentError('shape', 'an object { m, k, n }', describe(shape));
  for (const key of ['m', 'k', 'n'] as const) {
    const v = shape[key];
    if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(key, 'a positive integer', describe(v));
  }
  const weightDType = parseDType(shape.weightDType ?? 'f32', 'weightDType');
  const biasDType = parseDType(shape.biasDType ?? weightDType, 'biasDType');
  return { m: shape.m, k: shape.k, n: shape.n, weightDType, biasDType };
}

/**
 * The float64 reference: y (m, n) = x (m, k) · Wᵀ + b with W (n, k) row-major. `weight` and
 * `bias` are values (decode 16-bit storage first, e.g. with elementReader from ../dtype.js).
 */
export function referenceLinear(x: ArrayLike<number>, weight: ArrayLike<number>, bias: ArrayLike<number> | null, { m, k, n }: LinearShape): Float64Array {
  const y = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = bias ? bias[j]! : 0;
      for (let p = 0; p < k; p++) s += x[i * k + p]! * weight[j * k + p]!;
      y[i * n + j] = s;
    }
  }
  return y;
}

export interface PreparedLinear {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

/**
 * Records y = x · Wᵀ + b over GPU buffers into a caller's pass: x (m·k f32), weight (n·k of
 * weightDType, 16-bit packed; or row windows of it, src/ops/split.ts, for a weight larger than
 * one binding), bias (n of biasDType, or null), y (m·n f32, distinct from the inputs). With
 * `accumulate`, y += x · Wᵀ + b instead (a residual connection in the same dispatch). Buffers may
 * be larger than needed; the leading bytes are used. One dispatch per window, two when k is split
 * (see linearPlan); every window follows the whole shape's plan, so windows give y bit for bit as
 * one weight would. destroy() frees the uniforms and the split's scratch partials.
 */
export async function prepareLinear(ctx: GpuContext, shape: LinearShape, x: GPUBuffer, weight: GPUBuffer | readonly RowWindow[], bias: GPUBuffer | null, y: GPUBuffer,
  { accumulate = false }: { accumulate?: boolean } = {}): Promise<PreparedLinear> {
  const { m, k, n, weightDType, biasDType } = checkShape(shape);
  const windows = windowsOf('weight', weight, n);
  const { kernel, lanes, tileM, splits, kPerSplit } = linearPlan({ m, k, n }, ctx.maxBindingBytes);
  const groupsOf = (columns: number): [number, number] =>
    kernel === 'rows' ? [Math.ceil(columns / (ROWS_WORKGROUP / lanes)), 1] : [Math.ceil(columns / TILE_N), Math.ceil(m / tileM)];
  const [groupsX, groupsY] = groupsOf(n);
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;
  if (groupsX > maxGroups) throw new InvalidArgumentError('n', `at most ${TILE_N * maxGroups}`, String(n));
  if (groupsY > maxGroups) throw new InvalidArgumentError('m', `at most ${tileM * maxGroups}`, String(m));
  const xBinding = bindingOf(ctx, 'x', x, m * k * 4);
  const wBindings = windows.map((w) => bindingOf(ctx, windows.length === 1 ? 'weight' : `weight[${w.firstRow}:${w.firstRow + w.rows}]`, w.buffer, w.rows * k * BYTES_PER_ELEMENT[weightDType]));
  const bBinding = bias === null ? null : bindingOf(ctx, 'bias', bias, n * BYTES_PER_ELEMENT[biasDType]);
  const yBinding = bindingOf(ctx, 'y', y, m * n * 4);
  const kAligned = k % 4 === 0;
  const biasCode = bias === null ? NO_BIAS : DTYPE_CODE[biasDType];
  const [mainPipeline, reducePipeline] = await Promise.all([
    kernel === 'rows'
      ? ctx.pipeline('linear', 'linear_rows_main', { W_DTYPE: DTYPE_CODE[weightDType], B_DTYPE: biasCode, K_ALIGNED: kAligned ? 1 : 0, ACCUMULATE: accumulate ? 1 : 0, ROWS_M: m, ROWS_LANES: lanes })
      : ctx.pipeline('linear', 'linear_main', {
        W_DTYPE: DTYPE_CODE[weightDType], B_DTYPE: splits > 1 ? NO_BIAS : biasCode, K_ALIGNED: kAligned ? 1 : 0, TILE_M: tileM,
        ACCUMULATE: accumulate && splits === 1 ? 1 : 0,
      }),
    splits > 1 ? ctx.pipeline('linear', 'linear_reduce', { B_DTYPE: biasCode, ACCUMULATE: accumulate ? 1 : 0 }) : null,
  ]);

  return ctx.scoped('linear:prepare', () => {
    const label = `linear ${m}x${k}x${n} ${weightDType}${bias === null ? '' : ` +bias ${biasDType}`}${accumulate ? ' +=' : ''}${windows.length > 1 ? ` in ${windows.length} windows` : ''}`;
    const owned: GPUBuffer[] = [];
    const own = (buffer: GPUBuffer): GPUBuffer => (owned.push(buffer), buffer);
    let placeholder: GPUBuffer | null = null;
    // Bindings an entry declares but this variant never reads.
    const unread = (): GPUBufferBinding => ({ buffer: (placeholder ??= own(ctx.createBuffer('linear:unread', 16, GPUBufferUsage.STORAGE))) });
    const uniforms = windows.map((w) => own(ctx.uniform('linear:params', new Uint32Array([m, w.rows, k, kPerSplit, splits, n, w.firstRow, 0]).buffer)));
    const dispatches = new DispatchList(ctx, label, uniforms[0]!, owned);
    // Windows run one after another in the pass, so they share the scratch partials.
    const widest = Math.max(...windows.map((w) => w.rows));
    const partials = splits > 1 ? own(ctx.createBuffer('linear:partials', splits * m * widest * 4, GPUBufferUsage.STORAGE)) : null;
    windows.forEach((w, i) => {
      const name = windows.length === 1 ? '' : ` rows ${w.firstRow}:${w.firstRow + w.rows}`;
      const wBinding = wBindings[i]!;
      dispatches.add(mainPipeline, (kernel === 'rows' ? 'rows' : splits > 1 ? `split ${splits}` : 'main') + name, [
        [1, xBinding], [2, kAligned ? xBinding : unread()], [3, wBinding],
        [4, kAligned && weightDType === 'f32' ? wBinding : unread()], [5, kAligned && weightDType !== 'f32' ? wBinding : unread()],
        [6, splits === 1 && bBinding !== null ? bBinding : unread()], [7, partials ? { buffer: partials } : yBinding],
      ], [...groupsOf(w.rows), splits], uniforms[i]);
      if (reducePipeline !== null) {
        // At most 2048 tiles of ≤ 64 × 64 are split, so m·n / 256 ≤ 32768 workgroups: one grid dimension.
        dispatches.add(reducePipeline, `reduce${name}`, [[8, { buffer: partials! }], [6, bBinding ?? unread()], [9, yBinding]],
          [Math.ceil((m * w.rows) / REDUCE_WORKGROUP), 1, 1], uniforms[i]);
      }
    });
    return dispatches.prepared();
  });
}

/**
 * y = x · Wᵀ + b for host arrays: x a Float32Array (m·k), weight (n·k) and bias (n, or null) a
 * Float32Array for f32 or a Uint16Array of f16/bf16 bits. Returns y (m·n) as float32.
 * `poison` fills y with NaN before the run (tests: an element the kernel never wrote shows);
 * `addTo` (m·n) is a residual: y = addTo + (x · Wᵀ + b), in the kernel.
 */
export async function linear(ctx: GpuContext, x: Float32Array, weight: HostArray, bias: HostArray | null, shape: LinearShape,
  options: { poison?: boolean; addTo?: Float32Array } = {}): Promise<Float32Array> {
  const { m, k, n, weightDType, biasDType } = checkShape(shape);
  if (!(x instanceof Float32Array) || x.length !== m * k) throw new InvalidArgumentError('x', `Float32Array of ${m * k} elements (m·k)`, describe(x));
  checkHostArray('weight', weightDType, weight);
  if (weight.length !== n * k) throw new InvalidArgumentError('weight', `${n * k} elements (n·k)`, describe(weight));
  if (bias !== null) {
    checkHostArray('bias', biasDType, bias);
    if (bias.length !== n) throw new InvalidArgumentError('bias', `${n} elements (n)`, describe(bias));
  }
  const { addTo } = options;
  if (addTo !== undefined && (!(addTo instanceof Float32Array) || addTo.length !== m * n)) throw new InvalidArgumentError('addTo', `Float32Array of ${m * n} elements (m·n)`, describe(addTo));
  return runOnHost(ctx, 'linear', { x, weight, bias }, addTo ?? m * n, options.poison ?? false,
    (bufs, y) => prepareLinear(ctx, shape, bufs.x!, bufs.weight!, bufs.bias, y, { accumulate: addTo !== undefined }));
}
