/**
 * Decoding's attention to the per-sequence key/value cache: attention_decode.wgsl attends one new
 * query per sequence to it (one workgroup per head and sequence, 32-key tiles, online softmax).
 * The cache is filled by the RoPE dispatch of each layer (prepareRopeQk in ./rope.ts, with a cache).
 * It takes every head size the prefill attention takes (MAX_HEAD_DIM).
 */
import { InvalidArgumentError, positiveInteger } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { MAX_HEAD_DIM } from './attention.js';
import { boundDispatch } from './bindings.js';

interface Prepared {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

function need(name: string, buffer: GPUBuffer, bytes: number): void {
  if (buffer.size < bytes) throw new InvalidArgumentError(name, `a GPUBuffer of at least ${bytes} bytes`, `${buffer.size} bytes`);
}

export interface DecodeAttentionShape {
  batch: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  maxLen: number;
}

/**
 * One query per sequence (B, Hq, D) against caches (B, maxLen, Hkv, D); lengths (B) = keys per
 * sequence (0 gives zeros; more than maxLen reads maxLen). kCache is also read as vec4s, so it must
 * hold at least 16 bytes.
 */
export async function prepareAttentionDecode(ctx: GpuContext, s: DecodeAttentionShape,
  buffers: { q: GPUBuffer; kCache: GPUBuffer; vCache: GPUBuffer; lengths: GPUBuffer; out: GPUBuffer }): Promise<Prepared> {
  for (const key of ['batch', 'heads', 'kvHeads', 'headDim', 'maxLen'] as const) positiveInteger(key, s[key]);
  if (s.heads % s.kvHeads !== 0) throw new InvalidArgumentError('heads', `a multiple of kvHeads (${s.kvHeads})`, String(s.heads));
  if (s.headDim > MAX_HEAD_DIM) throw new InvalidArgumentError('headDim', `at most ${MAX_HEAD_DIM}`, String(s.headDim));
  const qBytes = s.batch * s.heads * s.headDim * 4;
  const cacheBytes = s.batch * s.maxLen * s.kvHeads * s.headDim * 4;
  need('q', buffers.q, qBytes);
  need('kCache', buffers.kCache, Math.max(cacheBytes, 16));
  need('vCache', buffers.vCache, cacheBytes);
  need('lengths', buffers.lengths, s.batch * 4);
  need('out', buffers.out, qBytes);
  const pipeline = await ctx.pipeline('attention_decode', 'attention_decode_main');
  return ctx.scoped('attention_decode:prepare', () => {
    const params = new ArrayBuffer(32);
    new Uint32Array(params).set([s.heads, s.kvHeads, s.headDim, s.maxLen]);
    new Float32Array(params)[4] = Math.LOG2E / Math.sqrt(s.headDim);   // scores in base 2, rounded once
    const uniform = ctx.uniform('attention_decode:params', params);
    // The whole vec4s of kCache (binding 6): every one of them when D is a multiple of 4.
    const k4s = { buffer: buffers.kCache, size: Math.floor(buffers.kCache.size / 16) * 16 };
    return boundDispatch(ctx, pipeline, `attention_decode B${s.batch} H${s.heads}/${s.kvHeads} D${s.headDim} L${s.maxLen}`, uniform,
      [...[buffers.q, buffers.kCache, buffers.vCache, buffers.lengths, buffers.out].map((buffer) => ({ buffer })), k4s], [s.heads, s.batch]);
  });
}
