/**
 * The backward of RMSNorm (src/ops/rmsnorm.ts), y = x · rstd · w with rstd = 1 / sqrt(mean(x²) + eps),
 * on WebGPU (kernels/rmsnorm_backward.wgsl), with a float64 reference. Training weights are f32.
 * Both gradients are ADDED to: dx is the residual stream's gradient, dWeight a parameter gradient.
 * The weight gradient's sum over rows has a fixed order (partials per group of rows, then a
 * fixed tree), so results are bit-identical run to run.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { rmsNormLanes } from './rmsnorm.js';
import { grid } from './token-stats/plan.js';
import { bindingOf, boundDispatch } from './bindings.js';

export interface RmsNormBackwardShape {
  rows: number;
  hidden: number;
  /** The forward's eps. Finite and ≥ 0. */
  eps: number;
}

export interface RmsNormBackwardBuffers {
  /** The forward's input (rows·hidden f32). */
  x: GPUBuffer;
  /** The forward's weight (hidden f32). */
  weight: GPUBuffer;
  /** Gradient of the output (rows·hidden f32). */
  dy: GPUBuffer;
  /** Gradient of x (rows·hidden f32), added to; aliases none of x, dy. */
  dx: GPUBuffer;
  /** Gradient of the weight (hidden f32), added to. */
  dWeight: GPUBuffer;
}

export interface PreparedRmsNormBackward {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

/** Rows per workgroup of the first dispatch (kernels/rmsnorm_backward.wgsl ROWS_PER_GROUP). */
const ROWS_PER_GROUP = 16;
/** Columns per workgroup of the weight dispatch (kernels/rmsnorm_backward.wgsl COLUMNS). */
const COLUMNS_PER_GROUP = 32;

function checkShape(shape: RmsNormBackwardShape): RmsNormBackwardShape {
  if (shape === null || typeof shape !== 'object') throw new InvalidArgumentError('shape', 'an object { rows, hidden, eps }', describe(shape));
  for (const key of ['rows', 'hidden'] as const) {
    const v = shape[key];
    if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(key, 'a positive integer', describe(v));
  }
  if (typeof shape.eps !== 'number' || !Number.isFinite(shape.eps) || shape.eps < 0) throw new InvalidArgumentError('eps', 'a finite number ≥ 0', describe(shape.eps));
  if (shape.rows * shape.hidden > 0xffffffff) throw new InvalidArgumentError('shape', 'rows·hidden < 2^32', String(shape.rows * shape.hidden));
  return { rows: shape.rows, hidden: shape.hidden, eps: shape.eps };
}

/**
 * The float64 reference: dx = rstd·dy⊙w − x·rstd³·(Σ dy⊙w⊙x)/H per row and dWeight = Σ_rows dy⊙x·rstd
 * (the gradients alone; the kernel adds them to its buffers).
 */
export function referenceRmsNormBackward(x: ArrayLike<number>, weight: ArrayLike<number>, dy: ArrayLike<number>,
  { rows, hidden, eps }: RmsNormBackwardShape): { dx: Float64Array; dWeight: Float64Array } {
  const dx = new Float64Array(rows * hidden);
  const dWeight = new Float64Array(hidden);
  for (let r = 0; r < rows; r++) {
    const base = r * hidden;
    let squares = 0;
    let dot = 0;
    for (let i = 0; i < hidden; i++) {
      squares += x[base + i]! ** 2;
      dot += dy[base + i]! * weight[i]! * x[base + i]!;
    }
    const rstd = 1 / Math.sqrt(squares / hidden + eps);
    const k = rstd ** 3 * (dot / hidden);
    for (let i = 0; i < hidden; i++) {
      dx[base + i] = rstd * dy[base + i]! * weight[i]! - k * x[base + i]!;
      dWeight[i]! += dy[base + i]! * x[base + i]! * rstd;
    }
  }
  return { dx, dWeight };
}

/** Records dx += ∂/∂x and dWeight += ∂/∂w of RMSNorm over GPU buffers into a caller's pass (two dispatches). */
export async function prepareRmsNormBackward(ctx: GpuContext, shape: RmsNormBackwardShape, buffers: RmsNormBackwardBuffers): Promise<PreparedRmsNormBackward> {
  const { rows, hidden, eps } = checkShape(shape);
  if (buffers === null || typeof buffers !== 'object') throw new InvalidArgumentError('buffers', 'an object { x, weight, dy, dx, dWeight }', describe(buffers));
  const matrix = rows * hidden * 4;
  const x = bindingOf(ctx, 'x', buffers.x, matrix);
  const weight = bindingOf(ctx, 'weight', buffers.weight, hidden * 4);
  const dy = bindingOf(ctx, 'dy', buffers.dy, matrix);
  const dx = bindingOf(ctx, 'dx', buffers.dx, matrix);
  const dWeight = bindingOf(ctx, 'dWeight', buffers.dWeight, hidden * 4);
  const groups = Math.ceil(rows / ROWS_PER_GROUP);
  const partialBytes = groups * hidden * 4;
  if (partialBytes > ctx.maxBindingBytes) throw new InvalidArgumentError('shape', `ceil(rows / ${ROWS_PER_GROUP})·hidden·4 ≤ ${ctx.maxBindingBytes} bytes (partials)`, `${partialBytes} bytes`);
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;
  const rowsGrid = grid(groups, maxGroups);
  const weightGrid = grid(Math.ceil(hidden / COLUMNS_PER_GROUP), maxGroups);
  const [rowsPipeline, weightPipeline] = await Promise.all([
    ctx.pipeline('rmsnorm_backward', 'rows_main', { ROW_LANES: rmsNormLanes(hidden, 16) }),
    ctx.pipeline('rmsnorm_backward', 'weight_main'),
  ]);
  return ctx.scoped('rmsnorm_backward:prepare', () => {
    const partials = ctx.createBuffer('rmsnorm_backward:partials', partialBytes, GPUBufferUsage.STORAGE);
    const uniform = (groupsX: number): GPUBuffer => {
      const params = new ArrayBuffer(32);
      new Uint32Array(params).set([rows, hidden, groupsX, 0, groups]);
      new Float32Array(params, 12, 1)[0] = eps;
      return ctx.uniform('rmsnorm_backward:params', params);
    };
    const label = `rmsnorm_backward ${rows}x${hidden}`;
    const partialsBinding = { buffer: partials, size: partialBytes };
    const steps = [
      boundDispatch(ctx, rowsPipeline, `${label}:rows`, uniform(rowsGrid[0]), [partialsBinding, x, weight, dy, dx], rowsGrid, [partials]),
      boundDispatch(ctx, weightPipeline, `${label}:weight`, uniform(weightGrid[0]), [partialsBinding, dWeight], weightGrid),
    ];
    return {
      encode(pass: GPUComputePassEncoder) {
        for (const step of steps) step.encode(pass);
      },
      destroy() {
        for (const step of steps) step.destroy();
      },
    };
  });
}

function checkF32(name: string, value: unknown, length: number, what: string): Float32Array {
  if (!(value instanceof Float32Array) || value.length !== length) throw new InvalidArgumentError(name, `Float32Array of ${length} elements (${what})`, describe(value));
  return value;
}

/**
 * The backward for host arrays (Float32Array each): returns init.dx + ∂/∂x and init.dWeight + ∂/∂w
 * (inits default to zeros).
 */
export async function rmsNormBackward(ctx: GpuContext, x: Float32Array, weight: Float32Array, dy: Float32Array, shape: RmsNormBackwardShape,
  init: { dx?: Float32Array; dWeight?: Float32Array } = {}): Promise<{ dx: Float32Array; dWeight: Float32Array }> {
  const { rows, hidden } = checkShape(shape);
  const n = rows * hidden;
  checkF32('x', x, n, 'rows·hidden');
  checkF32('weight', weight, hidden, 'hidden');
  checkF32('dy', dy, n, 'rows·hidden');
  const dxInit = init.dx === undefined ? new Float32Array(n) : checkF32('init.dx', init.dx, n, 'rows·hidden');
  const dWeightInit = init.dWeight === undefined ? new Float32Array(hidden) : checkF32('init.dWeight', init.dWeight, hidden, 'hidden');
  const owned: GPUBuffer[] = [];
  const upload = (name: string, data: Float32Array, usage?: GPUBufferUsageFlags): GPUBuffer => {
    const buffer = ctx.upload(`rmsnorm_backward:${name}`, data, usage);
    owned.push(buffer);
    return buffer;
  };
  try {
    const readable = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
    const buffers = { x: upload('x', x), weight: upload('weight', weight), dy: upload('dy', dy), dx: upload('dx', dxInit, readable), dWeight: upload('dWeight', dWeightInit, readable) };
    const prepared = await prepareRmsNormBackward(ctx, shape, buffers);
    try {
      await ctx.runPass('rmsnorm_backward', (pass) => prepared.encode(pass));
    } finally {
      prepared.destroy();
    }
    return {
      dx: new Float32Array(await ctx.read('rmsnorm_backward', buffers.dx, n * 4)),
      dWeight: new Float32Array(await ctx.read('rmsnorm_backward', buffers.dWeight, hidden * 4)),
    };
  } finally {
    for (const buffer of owned) buffer.destroy();
  }
}
