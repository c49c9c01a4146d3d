/**
 * Backward of causal grouped-query attention (src/ops/attention.ts) on WebGPU
 * (kernels/attention_backward.wgsl, FlashAttention-2 style: probabilities recomputed per tile from
 * the forward's lse, no T×T matrix, fixed-order sums), with a float64 reference.
 */
import { POISON_BITS } from '../dtype.js';
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { grid } from './token-stats/plan.js';
import { bindingOf } from './bindings.js';
import { checkAttentionLengths, checkAttentionShape, prepareAttention, type AttentionShape } from './attention.js';

const KERNEL = 'attention_backward';
const WORKGROUP_SIZE = 256;
/** Slots of one tile, (own rows)·(stream rows)·(threads per dot product): two per thread. */
const TILE_SLOTS = 512;

/**
 * Tile geometry for head dimension D: a workgroup owns `ownRows` rows and streams tiles of
 * `streamRows`; `parts` threads share each dot product. Workgroup memory holds own and stream rows
 * of ceil(D/4) vec4s, so the rows shrink as D grows.
 */
function tilesFor(headDim: number): { ownRows: number; streamRows: number; parts: number } {
  const vec4s = Math.ceil(headDim / 4);
  const ownRows = vec4s <= 16 ? 32 : vec4s <= 32 ? 16 : 8;
  const streamRows = ownRows / 2;
  return { ownRows, streamRows, parts: TILE_SLOTS / (ownRows * streamRows) };
}

/**
 * float64 reference: the gradients of Σ dOut·out, out = referenceAttention(q, k, v, lengths, s).out,
 * with respect to q (B, T, Hq, D), k and v (B, T, Hkv, D). Zeros at padding positions.
 */
export function referenceAttentionBackward(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, dOut: ArrayLike<number>, lengths: ArrayLike<number>,
  s: AttentionShape): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { batch: B, seqLen: T, heads: H, kvHeads: KV, headDim: D } = s;
  const dq = new Float64Array(B * T * H * D);
  const dk = new Float64Array(B * T * KV * D);
  const dv = new Float64Array(B * T * KV * D);
  const scale = 1 / Math.sqrt(D);
  const dot = (a: ArrayLike<number>, i: number, b: ArrayLike<number>, j: number): number => {
    let sum = 0;
    for (let d = 0; d < D; d++) sum += a[i + d]! * b[j + d]!;
    return sum;
  };
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kvh = Math.floor(h / (H / KV));
      for (let t = 0; t < lengths[b]!; t++) {
        const qi = ((b * T + t) * H + h) * D;
        const kvAt = (u: number) => ((b * T + u) * KV + kvh) * D;
        const scores = Float64Array.from({ length: t + 1 }, (_, u) => scale * dot(q, qi, k, kvAt(u)));
        const max = Math.max(...scores);
        const weights = scores.map((x) => Math.exp(x - max));
        const sum = weights.reduce((a, x) => a + x, 0);
        const p = weights.map((x) => x / sum);
        const dp = Float64Array.from({ length: t + 1 }, (_, u) => dot(dOut, qi, v, kvAt(u)));
        const delta = p.reduce((a, x, u) => a + x * dp[u]!, 0); // = dOut·out
        for (let u = 0; u <= t; u++) {
          const ds = p[u]! * (dp[u]! - delta);
          const ku = kvAt(u);
          for (let d = 0; d < D; d++) {
            dq[qi + d] = dq[qi + d]! + scale * ds * k[ku + d]!;
            dk[ku + d] = dk[ku + d]! + scale * ds * q[qi + d]!;
            dv[ku + d] = dv[ku + d]! + p[u]! * dOut[qi + d]!;
          }
        }
      }
    }
  }
  return { dq, dk, dv };
}

export interface PreparedAttentionBackward {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

export interface AttentionBackwardBuffers {
  q: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  out: GPUBuffer;
  lse: GPUBuffer;
  lengths: GPUBuffer;
  dOut: GPUBuffer;
  dq: GPUBuffer;
  dk: GPUBuffer;
  dv: GPUBuffer;
}

/**
 * Records the attention backward over GPU buffers into a caller's pass (after the forward that
 * wrote out and lse): q, out, dOut, dq (B, T, Hq, D), k, v, dk, dv (B, T, Hkv, D), lse (B, Hq, T)
 * f32; lengths (B) u32. dq, dk, dv are OVERWRITTEN (zeros at padding positions) and must be three
 * buffers distinct from the inputs. Recomputes probabilities from the saved lse; no T×T matrix
 * anywhere. Owns scratch: (lse, Δ) per query, and when Hq > Hkv two (B, T, Hq, D) buffers of
 * per-query-head dk, dv shares, summed in head order.
 */
export async function prepareAttentionBackward(ctx: GpuContext, s: AttentionShape, buffers: AttentionBackwardBuffers): Promise<PreparedAttentionBackward> {
  checkAttentionShape(s);
  if (buffers === null || typeof buffers !== 'object') throw new InvalidArgumentError('buffers', 'an object { q, k, v, out, lse, lengths, dOut, dq, dk, dv }', describe(buffers));
  const { batch: B, seqLen: T, heads: H, kvHeads: KV, headDim: D } = s;
  const qBytes = B * T * H * D * 4;
  const kvBytes = B * T * KV * D * 4;
  const lseBytes = B * H * T * 4;
  const bind = {
    q: bindingOf(ctx, 'q', buffers.q, qBytes), k: bindingOf(ctx, 'k', buffers.k, kvBytes), v: bindingOf(ctx, 'v', buffers.v, kvBytes),
    out: bindingOf(ctx, 'out', buffers.out, qBytes), lse: bindingOf(ctx, 'lse', buffers.lse, lseBytes), lengths: bindingOf(ctx, 'lengths', buffers.lengths, B * 4),
    dOut: bindingOf(ctx, 'dOut', buffers.dOut, qBytes), dq: bindingOf(ctx, 'dq', buffers.dq, qBytes), dk: bindingOf(ctx, 'dk', buffers.dk, kvBytes), dv: bindingOf(ctx, 'dv', buffers.dv, kvBytes),
  };
  for (const output of ['dq', 'dk', 'dv'] as const) {
    const clash = (Object.keys(bind) as (keyof typeof bind)[]).find((name) => name !== output && buffers[name] === buffers[output]);
    if (clash) throw new InvalidArgumentError(output, `a buffer of its own (an output is overwritten while the inputs are read)`, `the same buffer as ${clash}`);
  }
  const group = H / KV;
  const tiles = tilesFor(D);
  const ownTiles = Math.ceil(T / tiles.ownRows);
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;
  for (const [name, count] of [['seqLen', Math.ceil(T / WORKGROUP_SIZE)], ['seqLen', ownTiles], ['heads', H], ['batch', B]] as const) {
    if (count > maxGroups) throw new InvalidArgumentError(name, `a size that needs at most ${maxGroups} workgroups along one grid dimension`, describe(s[name]));
  }
  if (B * H * T * 8 > ctx.maxBindingBytes) throw new InvalidArgumentError('seqLen', `a size whose (lse, Δ) scratch (8 bytes per query and head) fits in ${ctx.maxBindingBytes} bytes`, describe(T));
  const reduceTotal = B * T * KV * D;
  const [reduceX, reduceY] = grid(Math.ceil(reduceTotal / WORKGROUP_SIZE), maxGroups);
  const [deltaPipeline, dqPipeline, dkdvPipeline, reducePipeline] = await Promise.all(
    ['delta', 'dq', 'dkdv', 'reduce'].map((entry) => ctx.pipeline(KERNEL, `attention_backward_${entry}`)),
  );
  const owned: GPUBuffer[] = [];
  try {
    return await ctx.scoped('attention-backward:prepare', () => {
      const params = new ArrayBuffer(48);
      new Uint32Array(params).set([T, H, KV, D, 0, tiles.ownRows, tiles.streamRows, tiles.parts, reduceX, reduceTotal]);
      new Float32Array(params)[4] = 1 / Math.sqrt(D);
      const uniform = ctx.uniform('attention-backward:params', params);
      owned.push(uniform);
      const scratch = (label: string, bytes: number) => {
        const buffer = ctx.createBuffer(`attention-backward:${label}`, bytes, GPUBufferUsage.STORAGE);
        owned.push(buffer);
        return { buffer, size: bytes };
      };
      const stats = scratch('stats', B * H * T * 8);
      // Per-query-head dk, dv shares, in dk and dv's own layout when each kv head serves one query head.
      const [dkShares, dvShares] = group > 1 ? [scratch('dk-shares', qBytes), scratch('dv-shares', qBytes)] : [bind.dk, bind.dv];
      const shape = `B${B} T${T} H${H}/${KV} D${D}`;
      const dispatch = (pipeline: GPUComputePipeline, entry: string, resources: [number, GPUBufferBinding][], groups: [number, number, number]) => {
        const bindGroup = ctx.device.createBindGroup({
          label: `attention backward ${entry} ${shape}`,
          layout: pipeline.getBindGroupLayout(0),
          entries: [{ binding: 0, resource: { buffer: uniform } }, ...resources.map(([binding, resource]) => ({ binding, resource }))],
        });
        return (pass: GPUComputePassEncoder) => {
          pass.setPipeline(pipeline);
          pass.setBindGroup(0, bindGroup);
          pass.dispatchWorkgroups(...groups);
        };
      };
      const steps = [
        dispatch(deltaPipeline!, 'delta', [[4, bind.dOut], [5, bind.lengths], [6, stats], [7, bind.out], [8, bind.lse]], [Math.ceil(T / WORKGROUP_SIZE), H, B]),
        dispatch(dqPipeline!, 'dq', [[1, bind.q], [2, bind.k], [3, bind.v], [4, bind.dOut], [5, bind.lengths], [6, stats], [9, bind.dq]], [ownTiles, H, B]),
        dispatch(dkdvPipeline!, 'dkdv', [[1, bind.q], [2, bind.k], [3, bind.v], [4, bind.dOut], [5, bind.lengths], [6, stats], [10, dkShares], [11, dvShares]], [ownTiles, H, B]),
      ];
      if (group > 1) steps.push(dispatch(reducePipeline!, 'reduce', [[10, bind.dk], [11, bind.dv], [12, dkShares], [13, dvShares]], [reduceX, reduceY, 1]));
      return {
        encode(pass: GPUComputePassEncoder) {
          for (const step of steps) step(pass);
        },
        destroy() {
          for (const buffer of owned) buffer.destroy();
        },
      };
    });
  } catch (err) {
    for (const buffer of owned) buffer.destroy();
    throw err;
  }
}

/**
 * Attention backward over host arrays: runs the forward (prepareAttention) for out and lse, then
 * the backward, in one pass. q, dOut (B, T, Hq, D), k, v (B, T, Hkv, D) Float32Arrays; returns dq,
 * dk, dv as float32. `poison` fills them with POISON_BITS first (tests).
 */
export async function attentionBackward(ctx: GpuContext, q: Float32Array, k: Float32Array, v: Float32Array, dOut: Float32Array, lengths: ArrayLike<number>, s: AttentionShape,
  options: { poison?: boolean } = {}): Promise<{ dq: Float32Array; dk: Float32Array; dv: Float32Array }> {
  checkAttentionShape(s);
  checkAttentionLengths(lengths, s);
  const qLen = s.batch * s.seqLen * s.heads * s.headDim;
  const kvLen = s.batch * s.seqLen * s.kvHeads * s.headDim;
  for (const [name, array, n] of [['q', q, qLen], ['k', k, kvLen], ['v', v, kvLen], ['dOut', dOut, qLen]] as const) {
    if (!(array instanceof Float32Array) || array.length !== n) throw new InvalidArgumentError(name, `Float32Array of ${n} elements`, describe(array));
  }
  const owned: GPUBuffer[] = [];
  const make = (label: string, data: ArrayBufferView | number, usage: GPUBufferUsageFlags = GPUBufferUsage.STORAGE) => {
    const buffer = typeof data === 'number' ? ctx.createBuffer(`attention-backward:${label}`, data, usage) : ctx.upload(`attention-backward:${label}`, data, usage);
    owned.push(buffer);
    return buffer;
  };
  try {
    const input = { q: make('q', q), k: make('k', k), v: make('v', v), dOut: make('dOut', dOut), lengths: make('lengths', Uint32Array.from(lengths)) };
    const forward = { out: make('out', qLen * 4), lse: make('lse', s.batch * s.heads * s.seqLen * 4) };
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
    const output = (label: string, n: number) => make(label, options.poison ? new Uint32Array(n).fill(POISON_BITS) : n * 4, usage);
    const grads = { dq: output('dq', qLen), dk: output('dk', kvLen), dv: output('dv', kvLen) };
    const forwardOp = await prepareAttention(ctx, s, { ...input, ...forward });
    try {
      const backwardOp = await prepareAttentionBackward(ctx, s, { ...input, ...forward, ...grads });
      try {
        await ctx.runPass('attention-backward', (pass) => {
          forwardOp.encode(pass);
          backwardOp.encode(pass);
        });
      } finally {
        backwardOp.destroy();
      }
    } finally {
      forwardOp.destroy();
    }
    const [dq, dk, dv] = await Promise.all([ctx.read('attention-backward', grads.dq, qLen * 4), ctx.read('attention-backward', grads.dk, kvLen * 4), ctx.read('attention-backward', grads.dv, kvLen * 4)]);
    return { dq: new Float32Array(dq), dk: new Float32Array(dk), dv: new Float32Array(dv) };
  } finally {
    for (const buffer of owned) buffer.destroy();
  }
}
