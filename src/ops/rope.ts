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
 *
 * prepareRopeQk rotates a layer's q and k in one dispatch (forward or backward) and, for
 * decoding, stores the rotated keys and the values into the per-sequence KV cache in the same
 * dispatch.
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
    const uniform = ctx.uniform(`${op}:params`, new Uint32Array([tokens, heads, half, groupsX, 0, 0, 0, 0]).buffer);
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

export interface RopeQkShape {
  tokens: number;
  /** Query heads (rows of q per token). */
  heads: number;
  /** Key/value heads (rows of k and v per token). */
  kvHeads: number;
  headDim: number;
  /**
   * Store the rotated k and v into caches (batch, maxLen, kvHeads, headDim): token t is position
   * positions[t] of sequence t / seqLen; positions ≥ maxLen (padding) are not stored.
   */
  cache?: { seqLen: number; maxLen: number };
}

export interface RopeQkBuffers {
  q: GPUBuffer;
  k: GPUBuffer;
  positions: GPUBuffer;
  invFreq: GPUBuffer;
  /** With shape.cache: the values and both caches. */
  v?: GPUBuffer;
  kCache?: GPUBuffer;
  vCache?: GPUBuffer;
}

/**
 * Records RoPE on q (tokens·heads·headDim) and k (tokens·kvHeads·headDim) in place, in one
 * dispatch, and with `shape.cache` the cache stores of k (rotated) and v; `inverse` rotates
 * gradients back instead (no cache).
 */
export async function prepareRopeQk(ctx: GpuContext, shape: RopeQkShape, buffers: RopeQkBuffers, inverse = false): Promise<PreparedRope> {
  const { tokens, heads, headDim } = checkShape(shape);
  checkShape({ tokens, heads: shape.kvHeads, headDim });
  if (buffers === null || typeof buffers !== 'object') throw new InvalidArgumentError('buffers', 'an object { q, k, positions, invFreq[, v, kCache, vCache] }', describe(buffers));
  const { kvHeads, cache } = shape;
  if (cache !== undefined) {
    if (inverse) throw new InvalidArgumentError('shape.cache', 'no cache with inverse (a backward stores nothing)', 'a cache');
    for (const key of ['seqLen', 'maxLen'] as const) {
      if (!Number.isSafeInteger(cache[key]) || cache[key] < 1) throw new InvalidArgumentError(`cache.${key}`, 'a positive integer', describe(cache[key]));
    }
    if (tokens % cache.seqLen !== 0) throw new InvalidArgumentError('cache.seqLen', `a divisor of tokens (${tokens})`, String(cache.seqLen));
  }
  const half = headDim / 2;
  const kvBytes = tokens * kvHeads * headDim * 4;
  const cacheBytes = cache ? (tokens / cache.seqLen) * cache.maxLen * kvHeads * headDim * 4 : 0;
  const required = (name: 'v' | 'kCache' | 'vCache'): GPUBuffer => {
    const buffer = buffers[name];
    if (buffer === undefined) throw new InvalidArgumentError(name, 'a GPUBuffer (shape.cache is set)', 'none');
    return buffer;
  };
  const entries = [
    bindingOf(ctx, inverse ? 'dq' : 'q', buffers.q, tokens * heads * headDim * 4),
    bindingOf(ctx, 'positions', buffers.positions, tokens * 4),
    bindingOf(ctx, 'invFreq', buffers.invFreq, half * 4),
    bindingOf(ctx, inverse ? 'dk' : 'k', buffers.k, kvBytes),
  ];
  const cacheEntries = cache ? [bindingOf(ctx, 'v', required('v'), kvBytes), bindingOf(ctx, 'kCache', required('kCache'), cacheBytes), bindingOf(ctx, 'vCache', required('vCache'), cacheBytes)] : null;
  const rows = tokens * (heads + (cache ? 2 : 1) * kvHeads);
  const [groupsX, groupsY] = grid(Math.ceil((rows * half) / WORKGROUP_SIZE), ctx.limits.maxComputeWorkgroupsPerDimension);
  const op = inverse ? 'rope_qk_backward' : 'rope_qk';
  const pipeline = await ctx.pipeline('rope', 'rope_qk_main', { INVERSE: inverse ? 1 : 0, CACHE: cache ? 1 : 0 });
  return ctx.scoped(`${op}:prepare`, () => {
    // Without a cache the kernel's v and cache bindings are never read or written: placeholders
    // (distinct, as two writable bindings may not share a buffer).
    const placeholders = cacheEntries ? [] : [0, 1, 2].map(() => ctx.createBuffer('rope_qk:unused', 16, GPUBufferUsage.STORAGE));
    const uniform = ctx.uniform(`${op}:params`, new Uint32Array([tokens, heads, half, groupsX, kvHeads, cache?.seqLen ?? 1, cache?.maxLen ?? 0, 0]).buffer);
    return boundDispatch(ctx, pipeline, `${op} ${tokens}x(${heads}+${kvHeads})x${headDim}${cache ? ' +cache' : ''}`, uniform,
      [...entries, ...(cacheEntries ?? placeholders.map((buffer) => ({ buffer })))], [groupsX, groupsY], placeholders);
  });
}

/**
 * The float64 reference of prepareRopeQk: rotated copies of q and k and, with shape.cache, the
 * caches after the stores (starting from `cacheBefore`'s values).
 */
export function referenceRopeQk(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number> | null, positions: ArrayLike<number>, invFreq: ArrayLike<number>,
  shape: RopeQkShape, cacheBefore?: { k: ArrayLike<number>; v: ArrayLike<number> }): { q: Float64Array; k: Float64Array; kCache?: Float64Array; vCache?: Float64Array } {
  const { tokens, heads, kvHeads, headDim, cache } = shape;
  const rq = referenceRope(q, positions, invFreq, { tokens, heads, headDim });
  const rk = referenceRope(k, positions, invFreq, { tokens, heads: kvHeads, headDim });
  if (!cache || !v || !cacheBefore) return { q: rq, k: rk };
  const width = kvHeads * headDim;
  const kCache = Float64Array.from(cacheBefore.k);
  const vCache = Float64Array.from(cacheBefore.v);
  for (let t = 0; t < tokens; t++) {
    const position = positions[t]!;
    if (position >= cache.maxLen) continue;
    const at = (Math.floor(t / cache.seqLen) * cache.maxLen + position) * width;
    for (let i = 0; i < width; i++) {
      kCache[at + i] = rk[t * width + i]!;
      vCache[at + i] = v[t * width + i]!;
    }
  }
  return { q: rq, k: rk, kCache, vCache };
}
