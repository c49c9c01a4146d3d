/**
 * C = A · B in float32 on WebGPU (kernels/matmul.wgsl), with a float64 reference. For now the
 * FLOP/s ceiling of the benchmarks; the model's projections build on it.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { bindingOf, boundDispatch, runOnHost } from './bindings.js';

export interface MatmulShape {
  m: number;
  k: number;
  n: number;
}

function checkShape(shape: MatmulShape): void {
  for (const key of ['m', 'k', 'n'] as const) {
    const v = shape[key];
    if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(key, 'a positive integer', describe(v));
  }
}

/** The float64 reference: C (m, n) = A (m, k) · B (k, n), row-major. */
export function referenceMatmul(a: ArrayLike<number>, b: ArrayLike<number>, { m, k, n }: MatmulShape): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const av = a[i * k + p]!;
      for (let j = 0; j < n; j++) c[i * n + j] = c[i * n + j]! + av * b[p * n + j]!;
    }
  }
  return c;
}

export interface PreparedMatmul {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

/** Records C = A · B over GPU buffers (f32, row-major) into a caller's pass. */
export async function prepareMatmul(ctx: GpuContext, shape: MatmulShape, a: GPUBuffer, b: GPUBuffer, c: GPUBuffer): Promise<PreparedMatmul> {
  checkShape(shape);
  const { m, k, n } = shape;
  const [x, y] = [Math.ceil(n / 64), Math.ceil(m / 64)];
  if (x > ctx.limits.maxComputeWorkgroupsPerDimension || y > ctx.limits.maxComputeWorkgroupsPerDimension) {
    throw new InvalidArgumentError('shape', `m and n of at most ${64 * ctx.limits.maxComputeWorkgroupsPerDimension}`, `m=${m}, n=${n}`);
  }
  const entries = [bindingOf(ctx, 'a', a, m * k * 4), bindingOf(ctx, 'b', b, k * n * 4), bindingOf(ctx, 'c', c, m * n * 4)];
  const pipeline = await ctx.pipeline('matmul', 'matmul_main');
  return ctx.scoped('matmul:prepare', () => {
    const uniform = ctx.uniform('matmul:params', new Uint32Array([m, n, k, 0]).buffer);
    return boundDispatch(ctx, pipeline, `matmul ${m}x${k}x${n}`, uniform, entries, [x, y]);
  });
}

/** C = A · B for host arrays (float32 result). */
export async function matmul(ctx: GpuContext, a: Float32Array, b: Float32Array, shape: MatmulShape): Promise<Float32Array> {
  checkShape(shape);
  const { m, k, n } = shape;
  if (!(a instanceof Float32Array) || a.length !== m * k) throw new InvalidArgumentError('a', `Float32Array of ${m * k} elements (m·k)`, describe(a));
  if (!(b instanceof Float32Array) || b.length !== k * n) throw new InvalidArgumentError('b', `Float32Array of ${k * n} elements (k·n)`, describe(b));
  return runOnHost(ctx, 'matmul', { a, b }, m * n, false, (bufs, c) => prepareMatmul(ctx, shape, bufs.a!, bufs.b!, c));
}
