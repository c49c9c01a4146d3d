/**
 * Rotary position embedding (rotate-half, as Hugging Face Llama / Qwen2 apply it), in place on
 * WebGPU (kernels/rope.wgsl), with a float64 reference. For q or k laid out (tokens, heads, D):
 *   x1 = x[..., :D/2], x2 = x[..., D/2:],  out = [x1·cos − x2·sin, x2·cos + x1·sin],
 *   angle[t, i] = fl32(position[t] · invFreq[i]).
 * invFreq (D/2) is f32: src/model/config.ts ropeInverseFrequencies computes it in float64 and it
 * is rounded to f32 here. The kernel forms the angle as one f32 product (what Hugging Face's
 * f32 `inv_freq @ position_ids` does) and evaluates cos/sin itself in f32 (range reduction by
 * π/2, then polynomials), so the only error against the reference is f32 arithmetic.
 *
 * The backward rotates the gradient back by −angle (the transpose of the rotation):
 *   dx1 = dy1·cos + dy2·sin,  dx2 = dy2·cos − dy1·sin:
 * the same kernel with INVERSE set, so it uses exactly the forward's f32 angles and cos/sin.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { grid } from './token-stats/plan.js';
import { bindingOf, boundDispatch } from './bindings.js';

export interface RopeShape {
  tokens: number;
  /** Heads of the tensor being rotated (query heads for q, key/value heads for k). */
  heads: number;
  /** Head dimension D, even. */
  headDim: number;
}

const WORKGROUP_SIZE = 256;
/** Positions must be exact in f32 (and keep the kernel's range reduction exact). */
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
 * The float64 reference, returning the rotated copy of x. invFreq is rounded to f32 and the
 * angle fl32(position · invFreq) is formed as the kernel (and Hugging Face, in f32) forms it;
 * cos, sin and the rotation are float64.
 */
export function referenceRope(x: ArrayLike<number>, positions: ArrayLike<number>, invFreq: ArrayLike<number>, { tokens, heads, headDim }: RopeShape, inverse = false): Float64Array {
  const half = headDim / 2;
  const out = Float64Array.from(x);
  const sign = inverse ? -1 : 1;
  for (let t = 0; t < tokens; t++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(positions[t]! * Math.fround(invFreq[i]!));
      const [c, s] = [Math.cos(angle), sign * Math.sin(angle)];
      for (let h = 0; h < heads; h++) {
        const e = (t * heads + h) * headDim + i;
        const x1 = x[e]!;
        const x2 = x[e + half]!;
        out[e] = x1 * c - x2 * s;
        out[e + half] = x2 * c + x1 * s;
      }
    }
  }
  return out;
}

export interface PreparedRope {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

/**
 * Records the in-place rotation of x (tokens·heads·headDim f32) into a caller's pass, with
 * positions (tokens u32, each < 2^24 for exact f32 angles) and invFreq (headDim / 2 f32).
 */
export async function prepareRope(ctx: GpuContext, shape: RopeShape, x: GPUBuffer, positions: GPUBuffer, invFreq: GPUBuffer, inverse = false): Promise<PreparedRope> {
  const { tokens, heads, headDim } = checkShape(shape);
  const half = headDim / 2;
  const entries = [
    bindingOf(ctx, inverse ? 'dx' : 'x', x, tokens * heads * headDim * 4),
    bindingOf(ctx, 'positions', positions, tokens * 4),
    bindingOf(ctx, 'invFreq', invFreq, half * 4),
  ];
  const [groupsX, groupsY] = grid(Math.ceil((tokens * heads * half) / WORKGROUP_SIZE), ctx.limits.maxComputeWorkgroupsPerDimension);
  const op = inverse ? 'rope_backward' : 'rope';
  const pipeline = await ctx.pipeline('rope', 'rope_main', inverse ? { INVERSE: 1 } : {});
  return ctx.scoped(`${op}:prepare`, () => {
    const uniform = ctx.uniform(`${op}:params`, new Uint32Array([tokens, heads, half, groupsX]).buffer);
    return boundDispatch(ctx, pipeline, `${op} ${tokens}x${heads}x${headDim}`, uniform, entries, [groupsX, groupsY]);
  });
}

/**
 * The rotation for host arrays: returns a rotated copy of x (tokens·heads·headDim, float32);
 * positions are integers in [0, 2^24); invFreq (headDim / 2) may be float64 (rounded to f32).
 */
export async function rope(ctx: GpuContext, x: Float32Array, positions: Uint32Array | Int32Array | readonly number[], invFreq: Float32Array | Float64Array | readonly number[],
  shape: RopeShape, inverse = false): Promise<Float32Array> {
  const { tokens, heads, headDim } = checkShape(shape);
  const n = tokens * heads * headDim;
  if (!(x instanceof Float32Array) || x.length !== n) throw new InvalidArgumentError(inverse ? 'dy' : 'x', `Float32Array of ${n} elements (tokens·heads·headDim)`, describe(x));
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
    const bufX = ctx.upload('rope:x', x, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    owned.push(bufX);
    const bufPositions = ctx.upload('rope:positions', Uint32Array.from(positions));
    owned.push(bufPositions);
    const bufFreq = ctx.upload('rope:inv_freq', freq32);
    owned.push(bufFreq);
    const prepared = await prepareRope(ctx, shape, bufX, bufPositions, bufFreq, inverse);
    try {
      await ctx.runPass('rope', (pass) => prepared.encode(pass));
    } finally {
      prepared.destroy();
    }
    return new Float32Array(await ctx.read('rope', bufX, n * 4));
  } finally {
    for (const buffer of owned) buffer.destroy();
  }
}

/** The backward for host arrays: dy rotated back by −angle (see the file comment). */
export function ropeBackward(ctx: GpuContext, dy: Float32Array, positions: Uint32Array | Int32Array | readonly number[], invFreq: Float32Array | Float64Array | readonly number[],
  shape: RopeShape): Promise<Float32Array> {
  return rope(ctx, dy, positions, invFreq, shape, true);
}

/** Records the in-place backward rotation of a gradient (tokens·heads·headDim f32) into a caller's pass. */
export function prepareRopeBackward(ctx: GpuContext, shape: RopeShape, dx: GPUBuffer, positions: GPUBuffer, invFreq: GPUBuffer): Promise<PreparedRope> {
  return prepareRope(ctx, shape, dx, positions, invFreq, true);
}

/** The float64 reference of the backward: dy rotated by −angle. */
export function referenceRopeBackward(dy: ArrayLike<number>, positions: ArrayLike<number>, invFreq: ArrayLike<number>, shape: RopeShape): Float64Array {
  return referenceRope(dy, positions, invFreq, shape, true);
}
