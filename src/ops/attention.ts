/**
 * Causal grouped-query attention over a batch of (possibly padded) sequences, on WebGPU
 * (kernels/attention.wgsl, FlashAttention-2 style: register tiles over key/value tiles in workgroup
 * memory, one online-softmax correction per tile, no T×T matrix), with a float64 reference. Also
 * returns the per-query logsumexp, which a backward pass uses to recompute probabilities.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { boundDispatch } from './bindings.js';

export interface AttentionShape {
  batch: number;
  seqLen: number;
  heads: number;
  kvHeads: number;
  headDim: number;
}

export const MAX_HEAD_DIM = 256;

/** The kernel variant for a head size: D ≤ 64, ≤ 128 or ≤ 256 (padded with zeros up to it). */
function attentionDimClass(headDim: number): 64 | 128 | 256 {
  return headDim <= 64 ? 64 : headDim <= 128 ? 128 : 256;
}

function checkShape(s: AttentionShape): void {
  for (const key of ['batch', 'seqLen', 'heads', 'kvHeads', 'headDim'] as const) {
    if (!Number.isSafeInteger(s[key]) || s[key] < 1) throw new InvalidArgumentError(key, 'a positive integer', describe(s[key]));
  }
  if (s.heads % s.kvHeads !== 0) throw new InvalidArgumentError('heads', `a multiple of kvHeads (${s.kvHeads})`, String(s.heads));
  if (s.headDim > MAX_HEAD_DIM) throw new InvalidArgumentError('headDim', `at most ${MAX_HEAD_DIM}`, String(s.headDim));
}

function checkLengths(lengths: ArrayLike<number>, s: AttentionShape): void {
  if (lengths.length !== s.batch) throw new InvalidArgumentError('lengths', `one length per sequence (${s.batch})`, `${lengths.length}`);
  for (let i = 0; i < lengths.length; i++) {
    const n = lengths[i]!;
    if (!Number.isSafeInteger(n) || n < 0 || n > s.seqLen) throw new InvalidArgumentError(`lengths[${i}]`, `an integer in [0, ${s.seqLen}]`, describe(n));
  }
}

/** float64 reference: { out (B, T, Hq, D), lse (B, Hq, T) }. */
export function referenceAttention(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, lengths: ArrayLike<number>, s: AttentionShape): { out: Float64Array; lse: Float64Array } {
  const { batch: B, seqLen: T, heads: H, kvHeads: KV, headDim: D } = s;
  const out = new Float64Array(B * T * H * D);
  const lse = new Float64Array(B * H * T);
  const scale = 1 / Math.sqrt(D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kvh = Math.floor(h / (H / KV));
      for (let t = 0; t < lengths[b]!; t++) {
        const scores = new Float64Array(t + 1);
        let max = -Infinity;
        for (let u = 0; u <= t; u++) {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[((b * T + t) * H + h) * D + d]! * k[((b * T + u) * KV + kvh) * D + d]!;
          scores[u] = dot * scale;
          max = Math.max(max, scores[u]!);
        }
        let sum = 0;
        for (let u = 0; u <= t; u++) sum += Math.exp(scores[u]! - max);
        lse[(b * H + h) * T + t] = max + Math.log(sum);
        for (let u = 0; u <= t; u++) {
          const p = Math.exp(scores[u]! - max) / sum;
          const o = ((b * T + t) * H + h) * D;
          for (let d = 0; d < D; d++) out[o + d] = out[o + d]! + p * v[((b * T + u) * KV + kvh) * D + d]!;
        }
      }
    }
  }
  return { out, lse };
}

/** The whole vec4s of a buffer (bindings 7–9 read q, k, v as vec4 arrays when D is a multiple of 4). */
function vec4View(buffer: GPUBuffer): GPUBufferBinding {
  return { buffer, size: Math.floor(buffer.size / 16) * 16 };
}

export interface PreparedAttention {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

/**
 * Records attention over GPU buffers (q, k, v f32; lengths u32 per sequence) into a caller's pass.
 * q, k and v are also read as vec4 arrays, so each must hold at least 16 bytes.
 */
export async function prepareAttention(ctx: GpuContext, s: AttentionShape, buffers: { q: GPUBuffer; k: GPUBuffer; v: GPUBuffer; lengths: GPUBuffer; out: GPUBuffer; lse: GPUBuffer }): Promise<PreparedAttention> {
  checkShape(s);
  const qBytes = s.batch * s.seqLen * s.heads * s.headDim * 4;
  const kvBytes = s.batch * s.seqLen * s.kvHeads * s.headDim * 4;
  // q, k and v are also bound as vec4 arrays, which need at least one vec4.
  const needs: [keyof typeof buffers, number][] = [['q', Math.max(qBytes, 16)], ['k', Math.max(kvBytes, 16)], ['v', Math.max(kvBytes, 16)], ['lengths', s.batch * 4], ['out', qBytes], ['lse', s.batch * s.heads * s.seqLen * 4]];
  for (const [name, bytes] of needs) {
    if (buffers[name].size < bytes) throw new InvalidArgumentError(name, `a GPUBuffer of at least ${bytes} bytes`, `${buffers[name].size} bytes`);
  }
  const dimClass = attentionDimClass(s.headDim);
  const pipeline = await ctx.pipeline('attention', 'attention_main', { DIM_CLASS: dimClass });
  return ctx.scoped('attention:prepare', () => {
    const params = new ArrayBuffer(32);
    new Uint32Array(params).set([s.seqLen, s.heads, s.kvHeads, s.headDim]);
    new Float32Array(params)[4] = Math.LOG2E / Math.sqrt(s.headDim);   // scores in base 2, rounded once
    const uniform = ctx.uniform('attention:params', params);
    const queriesPerGroup = 4096 / dimClass;
    const groups = [Math.ceil(s.seqLen / queriesPerGroup), s.heads, s.batch] as const;
    return boundDispatch(ctx, pipeline, `attention B${s.batch} T${s.seqLen} H${s.heads}/${s.kvHeads} D${s.headDim}`, uniform, [{ buffer: buffers.q }, { buffer: buffers.k }, { buffer: buffers.v }, { buffer: buffers.lengths }, { buffer: buffers.out }, { buffer: buffers.lse },
      vec4View(buffers.q), vec4View(buffers.k), vec4View(buffers.v)], groups);
  });
}

/** Attention over host arrays: { out, lse } as float32. `poisonOutputs` fills them with NaN first (tests). */
export async function attention(ctx: GpuContext, q: Float32Array, k: Float32Array, v: Float32Array, lengths: ArrayLike<number>, s: AttentionShape,
  options: { poisonOutputs?: boolean } = {}): Promise<{ out: Float32Array; lse: Float32Array }> {
  checkShape(s);
  checkLengths(lengths, s);
  const qLen = s.batch * s.seqLen * s.heads * s.headDim;
  const kvLen = s.batch * s.seqLen * s.kvHeads * s.headDim;
  for (const [name, array, n] of [['q', q, qLen], ['k', k, kvLen], ['v', v, kvLen]] as const) {
    if (!(array instanceof Float32Array) || array.length !== n) throw new InvalidArgumentError(name, `Float32Array of ${n} elements`, describe(array));
  }
  const owned = [
    ctx.upload('attention:q', q), ctx.upload('attention:k', k), ctx.upload('attention:v', v), ctx.upload('attention:lengths', Uint32Array.from(lengths)),
    ctx.createBuffer('attention:out', qLen * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST),
    ctx.createBuffer('attention:lse', s.batch * s.heads * s.seqLen * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST),
  ] as const;
  if (options.poisonOutputs) {
    ctx.writeBuffer(owned[4], 0, new Float32Array(qLen).fill(NaN));
    ctx.writeBuffer(owned[5], 0, new Float32Array(s.batch * s.heads * s.seqLen).fill(NaN));
  }
  try {
    const prepared = await prepareAttention(ctx, s, { q: owned[0], k: owned[1], v: owned[2], lengths: owned[3], out: owned[4], lse: owned[5] });
    try {
      await ctx.runPass('attention', (pass) => prepared.encode(pass));
    } finally {
      prepared.destroy();
    }
    const [out, lse] = await Promise.all([ctx.read('attention', owned[4], qLen * 4), ctx.read('attention', owned[5], s.batch * s.heads * s.seqLen * 4)]);
    return { out: new Float32Array(out), lse: new Float32Array(lse) };
  } finally {
    for (const b of owned) b.destroy();
  }
}
