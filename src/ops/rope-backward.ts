/**
 * The backward of rotary position embedding (src/ops/rope.ts): RoPE rotates each pair
 * (x1[i], x2[i]) by angle[t, i], so the gradient rotates back by −angle, the transpose:
 *   dx1 = dy1·cos + dy2·sin,  dx2 = dy2·cos − dy1·sin.
 * On WebGPU it is kernels/rope.wgsl with INVERSE set (the same f32 angles and cos/sin as the
 * forward), in place on the gradient, with a float64 reference.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { grid } from './token-stats/plan.js';
import { bindingOf, boundDispatch } from './bindings.js';
import type { PreparedRope, RopeShape } from './rope.js';

const WORKGROUP_SIZE = 256;
/** Positions must be exact in f32 (as for the forward). */
const MAX_POSITION = 2 ** 24;

function checkShape(shape: RopeShape): RopeShape {
  if (shape === null || typeof shape !== 'object') throw new InvalidArgumentError('shape', 'an object { tokens, heads, headDim }', describe(shape));
  for (const key of ['tokens', 'heads', 'headDim'] as const) {
    const v = shape[key];
    if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(key, 'a positive integer', describe(v));
  }
  if (shape.headDim % 2 !== 0) throw new InvalidArgumentError('headDim', 'an even integer', describe(shape.headDim));
  const elements = shape.tokens * shape.heads * shape.headDim;
  if (elements > 0xffffffff) throw new InvalidArgumentError('shape', 'tokens·heads·headDim < 2^32', String(elements));
  return { tokens: shape.tokens, heads: shape.heads, headDim: shape.headDim };
}

/**
 * The float64 reference: the gradient of x given dy, i.e. dy rotated by −angle, with the angle
 * fl32(position · fl32(invFreq)) formed as the forward forms it; cos, sin and the rotation are float64.
 */
export function referenceRopeBackward(dy: ArrayLike<number>, positions: ArrayLike<number>, invFreq: ArrayLike<number>, { tokens, heads, headDim }: RopeShape): Float64Array {
  const half = headDim / 2;
  const dx = Float64Array.from(dy);
  for (let t = 0; t < tokens; t++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(positions[t]! * Math.fround(invFreq[i]!));
      const [c, s] = [Math.cos(angle), Math.sin(angle)];
      for (let h = 0; h < heads; h++) {
        const e = (t * heads + h) * headDim + i;
        const dy1 = dy[e]!;
        const dy2 = dy[e + half]!;
        dx[e] = dy1 * c + dy2 * s;
        dx[e + half] = dy2 * c - dy1 * s;
      }
    }
  }
  return dx;
}

/**
 * Records the in-place backward rotation of dx (tokens·heads·headDim f32: dy in, dx out) into a
 * caller's pass, with the forward's positions (tokens u32, each < 2^24) and invFreq (headDim / 2 f32).
 */
export async function prepareRopeBackward(ctx: GpuContext, shape: RopeShape, dx: GPUBuffer, positions: GPUBuffer, invFreq: GPUBuffer): Promise<PreparedRope> {
  const { tokens, heads, headDim } = checkShape(shape);
  const half = headDim / 2;
  const entries = [
    bindingOf(ctx, 'dx', dx, tokens * heads * headDim * 4),
    bindingOf(ctx, 'positions', positions, tokens * 4),
    bindingOf(ctx, 'invFreq', invFreq, half * 4),
  ];
  const [groupsX, groupsY] = grid(Math.ceil((tokens * heads * half) / WORKGROUP_SIZE), ctx.limits.maxComputeWorkgroupsPerDimension);
  const pipeline = await ctx.pipeline('rope', 'rope_main', { INVERSE: 1 });
  return ctx.scoped('rope_backward:prepare', () => {
    const uniform = ctx.uniform('rope_backward:params', new Uint32Array([tokens, heads, half, groupsX]).buffer);
    return boundDispatch(ctx, pipeline, `rope_backward ${tokens}x${heads}x${headDim}`, uniform, entries, [groupsX, groupsY]);
  });
}

/**
 * The backward for host arrays: returns dx for dy (tokens·heads·headDim, float32); positions are
 * integers in [0, 2^24); invFreq (headDim / 2) may be float64 (rounded to f32), as for rope().
 */
export async function ropeBackward(ctx: GpuContext, dy: Float32Array, positions: Uint32Array | Int32Array | readonly number[], invFreq: Float32Array | Float64Array | readonly number[],
  shape: RopeShape): Promise<Float32Array> {
  const { tokens, heads, headDim } = checkShape(shape);
  const n = tokens * heads * headDim;
  if (!(dy instanceof Float32Array) || dy.length !== n) throw new InvalidArgumentError('dy', `Float32Array of ${n} elements (tokens·heads·headDim)`, describe(dy));
  const positionsOk = positions instanceof Uint32Array || positions instanceof Int32Array || Array.isArray(positions);
  if (!positionsOk || positions.length !== tokens) throw new InvalidArgumentError('positions', `Uint32Array, Int32Array or number[] of ${tokens} elements (tokens)`, describe(positions));
  for (let t = 0; t < tokens; t++) {
    const p = positions[t];
    if (!Number.isInteger(p) || p! < 0 || p! >= MAX_POSITION) throw new InvalidArgumentError(`positions[${t}]`, `an integer in [0, 2^24)`, describe(p));
  }
  const freqOk = invFreq instanceof Float32Array || invFreq instanceof Float64Array || Array.isArray(invFreq);
  if (!freqOk || invFreq.length !== headDim / 2) throw new InvalidArgumentError('invFreq', `Float32Array, Float64Array or number[] of ${headDim / 2} elements (headDim / 2)`, describe(invFreq));
  const freq32 = Float32Array.from(invFreq);
  if (!freq32.every(Number.isFinite)) throw new InvalidArgumentError('invFreq', 'finite values (in f32)', 'a non-finite value');
  const owned: GPUBuffer[] = [];
  try {
    const bufDx = ctx.upload('rope_backward:dx', dy, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    owned.push(bufDx);
    const bufPositions = ctx.upload('rope_backward:positions', Uint32Array.from(positions));
    owned.push(bufPositions);
    const bufFreq = ctx.upload('rope_backward:inv_freq', freq32);
    owned.push(bufFreq);
    const prepared = await prepareRopeBackward(ctx, shape, bufDx, bufPositions, bufFreq);
    try {
      await ctx.runPass('rope_backward', (pass) => prepared.encode(pass));
    } finally {
      prepared.destroy();
    }
    return new Float32Array(await ctx.read('rope_backward', bufDx, n * 4));
  } finally {
    for (const buffer of owned) buffer.destroy();
  }
}
