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

/**
 * Code variants of the D ≤ 64 class (kernels/attention.wgsl, header): all compute the same
 * outputs (within f32 rounding) and differ only in tiles and staging.
 * - `q64k16-classic`: 64 threads, 64 query rows × 16-key tiles, one head per workgroup, K and V
 *   staged together at the top of each tile (the first version of this kernel).
 * - `q64k16-packed`: the same tiles with GQA packing (the query heads of one key/value head share
 *   each workgroup, so the causal diagonal a tile straddles is 64 / (Hq / Hkv) tokens) and the
 *   row tiles along grid z, so the longest tiles of every head start first (not only per head).
 * - `q64k16`: packed, tile-major, and K/V prefetched through registers a phase ahead, so global
 *   latency hides behind the FMAs instead of stalling a barrier.
 * - `q32k16`: 32 threads (one NVIDIA warp: a barrier never waits on another warp), 32 rows ×
 *   16-key tiles, packed, tile-major, prefetch; 15 KiB of workgroup memory, so ~2× the workgroups fit.
 * - `q32k32`: 32 threads, 32 rows × 32-key tiles (4 × 8 score tiles per thread: half the barriers
 *   and softmax corrections per key), packed, tile-major; K then V staged without prefetch (registers).
 * - `q32k16-s8`: q32k16 with 4 × 8 score tiles over half the head each (two threads per tile): 12
 *   workgroup-memory loads per 128 score FMAs instead of 16, for 16 more registers per thread.
 * - `q32k8`: q32k16 with 8-key tiles (4 staged vec4 per thread instead of 8, scores split over two
 *   threads): fewer registers, so more workgroups per SM, for twice the barriers per key.
 */
export const ATTENTION_VARIANTS = ['q64k16', 'q64k16-classic', 'q64k16-packed', 'q32k16', 'q32k32', 'q32k16-s8', 'q32k8'] as const;
export type AttentionVariant = (typeof ATTENTION_VARIANTS)[number];

/** How prepareAttention runs the D ≤ 64 class; larger heads have one configuration each and ignore it. */
export interface AttentionTuning {
  /** Default DEFAULT_ATTENTION_VARIANT. */
  variant?: AttentionVariant;
}

/**
 * The fastest on the H200 (B 8, T 2048, 14/2 heads, D 64, same run as PyTorch's SDPA at 1.91 ms):
 * q32k16 4.17 ms, q64k16 6.00, q64k16-packed 7.79, q64k16-classic 8.51, q32k32 11.4
 * (bench/results/h200-2026-11-26-run4.json).
 */
export const DEFAULT_ATTENTION_VARIANT: AttentionVariant = 'q32k16';

/** One kernel configuration: its override constants and whether the GQA group shares a workgroup. */
interface AttentionConfig {
  dimClass: 64 | 128 | 256;
  threads: number;
  keysPerTile: number;
  scoreKeys: 4 | 8;
  prefetch: boolean;
  kvTogether: boolean;
  packHeads: boolean;
  tileMajor: boolean;
}

const D64_CONFIGS: Record<AttentionVariant, AttentionConfig> = {
  'q64k16-classic': { dimClass: 64, threads: 64, keysPerTile: 16, scoreKeys: 4, prefetch: false, kvTogether: true, packHeads: false, tileMajor: false },
  'q64k16-packed': { dimClass: 64, threads: 64, keysPerTile: 16, scoreKeys: 4, prefetch: false, kvTogether: true, packHeads: true, tileMajor: true },
  q64k16: { dimClass: 64, threads: 64, keysPerTile: 16, scoreKeys: 4, prefetch: true, kvTogether: false, packHeads: true, tileMajor: true },
  q32k16: { dimClass: 64, threads: 32, keysPerTile: 16, scoreKeys: 4, prefetch: true, kvTogether: false, packHeads: true, tileMajor: true },
  q32k32: { dimClass: 64, threads: 32, keysPerTile: 32, scoreKeys: 8, prefetch: false, kvTogether: false, packHeads: true, tileMajor: true },
  'q32k16-s8': { dimClass: 64, threads: 32, keysPerTile: 16, scoreKeys: 8, prefetch: true, kvTogether: false, packHeads: true, tileMajor: true },
  q32k8: { dimClass: 64, threads: 32, keysPerTile: 8, scoreKeys: 4, prefetch: true, kvTogether: false, packHeads: true, tileMajor: true },
};

/** The configuration for a head size (D ≤ 64, ≤ 128 or ≤ 256, padded with zeros up to it). */
function attentionConfig(headDim: number, variant: AttentionVariant): AttentionConfig {
  if (headDim <= 64) return D64_CONFIGS[variant];
  const dimClass = headDim <= 128 ? 128 : 256;
  return { dimClass, threads: 64, keysPerTile: dimClass === 256 ? 8 : 16, scoreKeys: 4, prefetch: false, kvTogether: false, packHeads: false, tileMajor: false };
}

function checkTuning(tuning: AttentionTuning): AttentionVariant {
  if (tuning === null || typeof tuning !== 'object') throw new InvalidArgumentError('tuning', 'an object', describe(tuning));
  const variant = tuning.variant ?? DEFAULT_ATTENTION_VARIANT;
  if (!(ATTENTION_VARIANTS as readonly string[]).includes(variant)) {
    throw new InvalidArgumentError('tuning.variant', `one of ${ATTENTION_VARIANTS.join(', ')}`, describe(variant));
  }
  return variant;
}

/** Checks an attention shape (shared by the forward and the backward). */
export function checkAttentionShape(s: AttentionShape): void {
  if (s === null || typeof s !== 'object') throw new InvalidArgumentError('shape', 'an object { batch, seqLen, heads, kvHeads, headDim }', describe(s));
  for (const key of ['batch', 'seqLen', 'heads', 'kvHeads', 'headDim'] as const) {
    if (!Number.isSafeInteger(s[key]) || s[key] < 1) throw new InvalidArgumentError(key, 'a positive integer', describe(s[key]));
  }
  if (s.heads % s.kvHeads !== 0) throw new InvalidArgumentError('heads', `a multiple of kvHeads (${s.kvHeads})`, String(s.heads));
  if (s.headDim > MAX_HEAD_DIM) throw new InvalidArgumentError('headDim', `at most ${MAX_HEAD_DIM}`, String(s.headDim));
}

/** Checks per-sequence lengths: one per sequence, each an integer in [0, seqLen]. */
export function checkAttentionLengths(lengths: ArrayLike<number>, s: AttentionShape): void {
  if (lengths === null || typeof lengths !== 'object' || typeof lengths.length !== 'number') throw new InvalidArgumentError('lengths', `an array of ${s.batch} lengths`, describe(lengths));
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
 * q, k and v are also read as vec4 arrays, so each must hold at least 16 bytes. `tuning` picks the
 * kernel variant of the D ≤ 64 class (ATTENTION_VARIANTS); every variant gives the same results.
 */
export async function prepareAttention(ctx: GpuContext, s: AttentionShape, buffers: { q: GPUBuffer; k: GPUBuffer; v: GPUBuffer; lengths: GPUBuffer; out: GPUBuffer; lse: GPUBuffer },
  tuning: AttentionTuning = {}): Promise<PreparedAttention> {
  checkAttentionShape(s);
  const variant = checkTuning(tuning);
  const qBytes = s.batch * s.seqLen * s.heads * s.headDim * 4;
  const kvBytes = s.batch * s.seqLen * s.kvHeads * s.headDim * 4;
  // q, k and v are also bound as vec4 arrays, which need at least one vec4.
  const needs: [keyof typeof buffers, number][] = [['q', Math.max(qBytes, 16)], ['k', Math.max(kvBytes, 16)], ['v', Math.max(kvBytes, 16)], ['lengths', s.batch * 4], ['out', qBytes], ['lse', s.batch * s.heads * s.seqLen * 4]];
  for (const [name, bytes] of needs) {
    if (buffers[name].size < bytes) throw new InvalidArgumentError(name, `a GPUBuffer of at least ${bytes} bytes`, `${buffers[name].size} bytes`);
  }
  const c = attentionConfig(s.headDim, variant);
  const pipeline = await ctx.pipeline('attention', 'attention_main', {
    DIM_CLASS: c.dimClass, THREADS: c.threads, BK: c.keysPerTile, SCORE_KEYS: c.scoreKeys, PREFETCH: Number(c.prefetch), KV_TOGETHER: Number(c.kvTogether), TILE_MAJOR: Number(c.tileMajor),
  });
  return ctx.scoped('attention:prepare', () => {
    const packedHeads = c.packHeads ? s.heads / s.kvHeads : 1;
    const params = new ArrayBuffer(32);
    new Uint32Array(params).set([s.seqLen, s.heads, s.kvHeads, s.headDim]);
    new Float32Array(params)[4] = Math.LOG2E / Math.sqrt(s.headDim);   // scores in base 2, rounded once
    new Uint32Array(params)[5] = packedHeads;
    const uniform = ctx.uniform('attention:params', params);
    const rowsPerGroup = (64 * c.threads) / c.dimClass;
    const tiles = Math.ceil((packedHeads * s.seqLen) / rowsPerGroup);
    const groups = c.tileMajor ? [s.heads / packedHeads, s.batch, tiles] as const : [tiles, s.heads / packedHeads, s.batch] as const;
    const label = `attention ${s.headDim <= 64 ? variant : `D${c.dimClass}`} B${s.batch} T${s.seqLen} H${s.heads}/${s.kvHeads} D${s.headDim}`;
    return boundDispatch(ctx, pipeline, label, uniform, [{ buffer: buffers.q }, { buffer: buffers.k }, { buffer: buffers.v }, { buffer: buffers.lengths }, { buffer: buffers.out }, { buffer: buffers.lse },
      vec4View(buffers.q), vec4View(buffers.k), vec4View(buffers.v)], groups);
  });
}

/** Attention over host arrays: { out, lse } as float32. `poisonOutputs` fills them with NaN first (tests); `tuning` as prepareAttention. */
export async function attention(ctx: GpuContext, q: Float32Array, k: Float32Array, v: Float32Array, lengths: ArrayLike<number>, s: AttentionShape,
  options: { poisonOutputs?: boolean; tuning?: AttentionTuning } = {}): Promise<{ out: Float32Array; lse: Float32Array }> {
  checkAttentionShape(s);
  checkAttentionLengths(lengths, s);
  checkTuning(options.tuning ?? {});
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
    const prepared = await prepareAttention(ctx, s, { q: owned[0], k: owned[1], v: owned[2], lengths: owned[3], out: owned[4], lse: owned[5] }, options.tuning);
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
