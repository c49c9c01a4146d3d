/**
 * The per-sequence key/value cache of decoding: kv_write.wgsl scatters new key/value rows into it,
 * attention_decode.wgsl attends one new query per sequence to it.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { boundDispatch } from './bindings.js';
import { grid } from './token-stats/plan.js';

export const MAX_DECODE_HEAD_DIM = 128;

export interface KvWriteShape {
  batch: number;
  seqLen: number;
  /** kvHeads · headDim. */
  width: number;
  maxLen: number;
}

interface Prepared {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

function positive(values: Record<string, number>): void {
  for (const [k, v] of Object.entries(values)) if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(k, 'a positive integer', describe(v));
}

function need(name: string, buffer: GPUBuffer, bytes: number): void {
  if (buffer.size < bytes) throw new InvalidArgumentError(name, `a GPUBuffer of at least ${bytes} bytes`, `${buffer.size} bytes`);
}

/** cache[b, positions[b, t]] = src[b, t] (float64 reference of kv_write.wgsl; positions ≥ maxLen skipped). */
export function referenceKvWrite(cache: Float64Array, src: ArrayLike<number>, positions: ArrayLike<number>, s: KvWriteShape): Float64Array {
  const out = Float64Array.from(cache);
  for (let row = 0; row < s.batch * s.seqLen; row++) {
    const pos = positions[row]!;
    if (pos >= s.maxLen) continue;
    const b = Math.floor(row / s.seqLen);
    for (let i = 0; i < s.width; i++) out[(b * s.maxLen + pos) * s.width + i] = src[row * s.width + i]!;
  }
  return out;
}

export async function prepareKvWrite(ctx: GpuContext, s: KvWriteShape, src: GPUBuffer, positions: GPUBuffer, cache: GPUBuffer): Promise<Prepared> {
  positive({ batch: s.batch, seqLen: s.seqLen, width: s.width, maxLen: s.maxLen });
  const rows = s.batch * s.seqLen;
  need('src', src, rows * s.width * 4);
  need('positions', positions, rows * 4);
  need('cache', cache, s.batch * s.maxLen * s.width * 4);
  const pipeline = await ctx.pipeline('kv_write', 'kv_write_main');
  return ctx.scoped('kv_write:prepare', () => {
    const [y, z] = grid(rows, ctx.limits.maxComputeWorkgroupsPerDimension);
    const uniform = ctx.uniform('kv_write:params', new Uint32Array([rows, s.seqLen, s.width, s.maxLen, y, 0, 0, 0]).buffer);
    return boundDispatch(ctx, pipeline, `kv_write ${s.batch}x${s.seqLen}x${s.width}`, uniform, [{ buffer: src }, { buffer: positions }, { buffer: cache }], [Math.ceil(s.width / 64), y, z]);
  });
}

export interface DecodeAttentionShape {
  batch: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  maxLen: number;
}

/** One query per sequence (B, Hq, D) against caches (B, maxLen, Hkv, D); lengths (B) = keys per sequence. */
export async function prepareAttentionDecode(ctx: GpuContext, s: DecodeAttentionShape,
  buffers: { q: GPUBuffer; kCache: GPUBuffer; vCache: GPUBuffer; lengths: GPUBuffer; out: GPUBuffer }): Promise<Prepared> {
  positive({ batch: s.batch, heads: s.heads, kvHeads: s.kvHeads, headDim: s.headDim, maxLen: s.maxLen });
  if (s.heads % s.kvHeads !== 0) throw new InvalidArgumentError('heads', `a multiple of kvHeads (${s.kvHeads})`, String(s.heads));
  if (s.headDim > MAX_DECODE_HEAD_DIM) throw new InvalidArgumentError('headDim', `at most ${MAX_DECODE_HEAD_DIM}`, String(s.headDim));
  const qBytes = s.batch * s.heads * s.headDim * 4;
  const cacheBytes = s.batch * s.maxLen * s.kvHeads * s.headDim * 4;
  need('q', buffers.q, qBytes);
  need('kCache', buffers.kCache, cacheBytes);
  need('vCache', buffers.vCache, cacheBytes);
  need('lengths', buffers.lengths, s.batch * 4);
  need('out', buffers.out, qBytes);
  const pipeline = await ctx.pipeline('attention_decode', 'attention_decode_main');
  return ctx.scoped('attention_decode:prepare', () => {
    const params = new ArrayBuffer(32);
    new Uint32Array(params).set([s.heads, s.kvHeads, s.headDim, s.maxLen]);
    new Float32Array(params)[4] = 1 / Math.sqrt(s.headDim);
    const uniform = ctx.uniform('attention_decode:params', params);
    return boundDispatch(ctx, pipeline, `attention_decode B${s.batch} H${s.heads}/${s.kvHeads} D${s.headDim} L${s.maxLen}`, uniform,
      [buffers.q, buffers.kCache, buffers.vCache, buffers.lengths, buffers.out].map((buffer) => ({ buffer })), [s.heads, s.batch]);
  });
}
