/**
 * RMSNorm (Llama / Qwen2): y = x / sqrt(mean(x²) + eps) · w over the last axis, on WebGPU
 * (kernels/rmsnorm.wgsl), with a float64 reference. x and y are f32 (rows, hidden); w is f32,
 * f16 or bf16 (16-bit values packed two per 32-bit word, as in a safetensors file).
 */
import { BYTES_PER_ELEMENT, checkHostArray, parseDType, type DType, type HostArray } from '../dtype.js';
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { lanesFor } from './split.js';
import { grid } from './token-stats/plan.js';
import { bindingOf, boundDispatch, runOnHost } from './bindings.js';

export interface RmsNormShape {
  rows: number;
  hidden: number;
  /** Added to mean(x²); the model config's rms_norm_eps. Finite and ≥ 0. */
  eps: number;
  /** Storage of w. Default 'f32'. */
  weightDType?: DType;
}

const DTYPE_CODE: Record<DType, number> = { f32: 0, f16: 1, bf16: 2 };
const WORKGROUP_SIZE = 256;

/**
 * Threads that sum one row's squares (kernels/rmsnorm.wgsl LANES, rmsnorm_backward.wgsl
 * ROW_LANES): the power of two that leaves each at most 64 columns, within [least, 256]. Short
 * rows share a workgroup (hidden 896: 32 lanes, 8 rows), and a lane's sequential f32 sum stays
 * short however long the row.
 */
export function rmsNormLanes(hidden: number, least: number): number {
  return lanesFor(hidden, 64, least, WORKGROUP_SIZE);
}

function checkShape(shape: RmsNormShape): { rows: number; hidden: number; eps: number; weightDType: DType } {
  if (shape === null || typeof shape !== 'object') throw new InvalidArgumentError('shape', 'an object { rows, hidden, eps }', describe(shape));
  for (const key of ['rows', 'hidden'] as const) {
    const v = shape[key];
    if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(key, 'a positive integer', describe(v));
  }
  if (typeof shape.eps !== 'number' || !Number.isFinite(shape.eps) || shape.eps < 0) throw new InvalidArgumentError('eps', 'a finite number ≥ 0', describe(shape.eps));
  return { rows: shape.rows, hidden: shape.hidden, eps: shape.eps, weightDType: parseDType(shape.weightDType ?? 'f32', 'weightDType') };
}

/** The float64 reference over values (decode 16-bit weights first, e.g. with elementReader). */
export function referenceRmsNorm(x: ArrayLike<number>, weight: ArrayLike<number>, { rows, hidden, eps }: RmsNormShape): Float64Array {
  const y = new Float64Array(rows * hidden);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let i = 0; i < hidden; i++) s += x[r * hidden + i]! ** 2;
    const scale = 1 / Math.sqrt(s / hidden + eps);
    for (let i = 0; i < hidden; i++) y[r * hidden + i] = x[r * hidden + i]! * scale * weight[i]!;
  }
  return y;
}

export interface PreparedRmsNorm {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

/**
 * Records y = RMSNorm(x) · w over GPU buffers into a caller's pass: x and y (rows·hidden f32,
 * distinct buffers), weight (hidden of weightDType, 16-bit packed).
 */
export async function prepareRmsNorm(ctx: GpuContext, shape: RmsNormShape, x: GPUBuffer, weight: GPUBuffer, y: GPUBuffer): Promise<PreparedRmsNorm> {
  const { rows, hidden, eps, weightDType } = checkShape(shape);
  const entries = [
    bindingOf(ctx, 'x', x, rows * hidden * 4),
    bindingOf(ctx, 'weight', weight, hidden * BYTES_PER_ELEMENT[weightDType]),
    bindingOf(ctx, 'y', y, rows * hidden * 4),
  ];
  const lanes = rmsNormLanes(hidden, 32);
  const [groupsX, groupsY] = grid(Math.ceil(rows / (WORKGROUP_SIZE / lanes)), ctx.limits.maxComputeWorkgroupsPerDimension);
  const pipeline = await ctx.pipeline('rmsnorm', 'rmsnorm_main', { W_DTYPE: DTYPE_CODE[weightDType], LANES: lanes });
  return ctx.scoped('rmsnorm:prepare', () => {
    const params = new ArrayBuffer(16);
    new Uint32Array(params, 0, 3).set([rows, hidden, groupsX]);
    new Float32Array(params, 12, 1)[0] = eps;
    const uniform = ctx.uniform('rmsnorm:params', params);
    return boundDispatch(ctx, pipeline, `rmsnorm ${rows}x${hidden} ${weightDType}`, uniform, entries, [groupsX, groupsY]);
  });
}

/**
 * RMSNorm for host arrays: x a Float32Array (rows·hidden), weight (hidden) a Float32Array for
 * f32 or a Uint16Array of f16/bf16 bits. Returns y as float32. `poison` fills y with NaN first.
 */
export async function rmsNorm(ctx: GpuContext, x: Float32Array, weight: HostArray, shape: RmsNormShape, options: { poison?: boolean } = {}): Promise<Float32Array> {
  const { rows, hidden, weightDType } = checkShape(shape);
  if (!(x instanceof Float32Array) || x.length !== rows * hidden) throw new InvalidArgumentError('x', `Float32Array of ${rows * hidden} elements (rows·hidden)`, describe(x));
  checkHostArray('weight', weightDType, weight);
  if (weight.length !== hidden) throw new InvalidArgumentError('weight', `${hidden} elements (hidden)`, describe(weight));
  return runOnHost(ctx, 'rmsnorm', { x, weight }, rows * hidden, options.poison ?? false, (bufs, y) => prepareRmsNorm(ctx, shape, bufs.x!, bufs.weight!, y));
}
