/**
 * y = x · Wᵀ + b, PyTorch's nn.Linear, on WebGPU (kernels/linear.wgsl), with a float64
 * reference. W is (N, K) as Hugging Face checkpoints store it, in f32, f16 or bf16 (16-bit values
 * packed two per 32-bit word, exactly as in a safetensors file, K odd included); the optional
 * bias likewise; x and y are f32 and the accumulation is f32.
 */
import { BYTES_PER_ELEMENT, checkHostArray, parseDType, type DType, type HostArray } from '../dtype.js';
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { bindingOf, boundDispatch, runOnHost } from './bindings.js';

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

const DTYPE_CODE: Record<DType, number> = { f32: 0, f16: 1, bf16: 2 };
const NO_BIAS = 3;
const TILE = 64;

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
 * weightDType, 16-bit packed), bias (n of biasDType, or null), y (m·n f32, distinct from the
 * inputs). Buffers may be larger than needed; the leading bytes are used.
 */
export async function prepareLinear(ctx: GpuContext, shape: LinearShape, x: GPUBuffer, weight: GPUBuffer, bias: GPUBuffer | null, y: GPUBuffer): Promise<PreparedLinear> {
  const { m, k, n, weightDType, biasDType } = checkShape(shape);
  const [groupsX, groupsY] = [Math.ceil(n / TILE), Math.ceil(m / TILE)];
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;
  if (groupsX > maxGroups || groupsY > maxGroups) {
    throw new InvalidArgumentError('shape', `m and n of at most ${TILE * maxGroups}`, `m=${m}, n=${n}`);
  }
  const xBinding = bindingOf(ctx, 'x', x, m * k * 4);
  const wBinding = bindingOf(ctx, 'weight', weight, n * k * BYTES_PER_ELEMENT[weightDType]);
  const bBinding = bias === null ? null : bindingOf(ctx, 'bias', bias, n * BYTES_PER_ELEMENT[biasDType]);
  const yBinding = bindingOf(ctx, 'y', y, m * n * 4);
  const pipeline = await ctx.pipeline('linear', 'linear_main', { W_DTYPE: DTYPE_CODE[weightDType], B_DTYPE: bias === null ? NO_BIAS : DTYPE_CODE[biasDType] });
  return ctx.scoped('linear:prepare', () => {
    const uniform = ctx.uniform('linear:params', new Uint32Array([m, n, k, 0]).buffer);
    const placeholder = bBinding === null ? ctx.createBuffer('linear:absent_bias', 16, GPUBufferUsage.STORAGE) : null;
    return boundDispatch(ctx, pipeline, `linear ${m}x${k}x${n} ${weightDType}${bias === null ? '' : ` +bias ${biasDType}`}`, uniform,
      [xBinding, wBinding, bBinding ?? { buffer: placeholder! }, yBinding], [groupsX, groupsY], placeholder ? [placeholder] : []);
  });
}

/**
 * y = x · Wᵀ + b for host arrays: x a Float32Array (m·k), weight (n·k) and bias (n, or null) a
 * Float32Array for f32 or a Uint16Array of f16/bf16 bits. Returns y (m·n) as float32.
 * `poison` fills y with NaN before the run (tests: an element the kernel never wrote shows).
 */
export async function linear(ctx: GpuContext, x: Float32Array, weight: HostArray, bias: HostArray | null, shape: LinearShape,
  options: { poison?: boolean } = {}): Promise<Float32Array> {
  const { m, k, n, weightDType, biasDType } = checkShape(shape);
  if (!(x instanceof Float32Array) || x.length !== m * k) throw new InvalidArgumentError('x', `Float32Array of ${m * k} elements (m·k)`, describe(x));
  checkHostArray('weight', weightDType, weight);
  if (weight.length !== n * k) throw new InvalidArgumentError('weight', `${n * k} elements (n·k)`, describe(weight));
  if (bias !== null) {
    checkHostArray('bias', biasDType, bias);
    if (bias.length !== n) throw new InvalidArgumentError('bias', `${n} elements (n)`, describe(bias));
  }
  return runOnHost(ctx, 'linear', { x, weight, bias }, m * n, options.poison ?? false,
    (bufs, y) => prepareLinear(ctx, shape, bufs.x!, bufs.weight!, bufs.bias, y));
}
