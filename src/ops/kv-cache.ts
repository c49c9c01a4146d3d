/**
 * Decoding's attention to the per-sequence key/value cache: attention_decode.wgsl attends one new
 * query per sequence to it. The cache is filled by the RoPE dispatch of each layer
 * (prepareRopeQk in ./rope.ts, with a cache).
 */
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { boundDispatch } from './bindings.js';

export const MAX_DECODE_HEAD_DIM = 128;

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
