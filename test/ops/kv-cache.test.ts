/**
 * attention_decode.wgsl against the float64 reference (decoding's last query): over caches filled
 * by the RoPE dispatch (prepareRopeQk with a cache), then over caches written directly for head
 * sizes RoPE does not take (odd) and for every column layout (D ≤ 128: 4 columns per thread, else 8),
 * ragged key tiles, padded batches and scores whose running max moves tile after tile.
 */
import { POISON_BITS } from '../../src/dtype.js';
import { InvalidArgumentError } from '../../src/errors.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { MAX_HEAD_DIM, referenceAttention } from '../../src/ops/attention.js';
import { runOnHost } from '../../src/ops/bindings.js';
import { prepareAttentionDecode } from '../../src/ops/kv-cache.js';
import { prepareRopeQk, referenceRopeQk } from '../../src/ops/rope.js';
import { ropeInverseFrequencies } from '../../src/model/config.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

const CASES: [number, number, number, number, number, number[], string][] = [
  // batch, seqLen, heads, kvHeads, headDim, lengths
  [1, 1, 1, 1, 2, [1], 'one key'],
  [3, 45, 4, 2, 16, [45, 7, 33], 'GQA, ragged lengths: a partial first or second key tile'],
  [2, 70, 2, 1, 128, [70, 64], 'head size 128, three key tiles (the last partial) and exactly two'],
];

interface DirectCase {
  batch: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  maxLen: number;
  lengths: number[];
  /** Key rows scaled up along the cache and a few q outliers: the running max moves tile after tile. */
  outliers: boolean;
}

const DIRECT_CASES: [DirectCase, string][] = [
  [{ batch: 1, heads: 1, kvHeads: 1, headDim: 7, maxLen: 1, lengths: [1], outliers: false }, 'D = 7 (scalar key loads, a partial vec4), one key in a one-row cache'],
  [{ batch: 3, heads: 6, kvHeads: 2, headDim: 7, maxLen: 96, lengths: [1, 33, 95], outliers: true }, 'D = 7, GQA 3:1, 1, 2 and 3 key tiles (last partial), rising scores'],
  [{ batch: 3, heads: 4, kvHeads: 1, headDim: 100, maxLen: 95, lengths: [95, 0, 33], outliers: true }, 'D = 100 (vec4 key loads, 4th column group partial), multi-query, an empty sequence (zeros)'],
  [{ batch: 2, heads: 4, kvHeads: 2, headDim: 256, maxLen: 97, lengths: [95, 33], outliers: true }, 'D = 256 = MAX_HEAD_DIM: 8 columns per thread, GQA 2:1, rising scores'],
  [{ batch: 4, heads: 2, kvHeads: 1, headDim: 256, maxLen: 40, lengths: [0, 1, 33, 40], outliers: false }, 'D = 256, padded batch: empty, one key, 33 and 40 keys'],
  [{ batch: 2, heads: 2, kvHeads: 2, headDim: 131, maxLen: 64, lengths: [64, 1], outliers: true }, 'D = 131: upper column groups with 3 live columns, scalar key loads'],
  [{ batch: 2, heads: 2, kvHeads: 1, headDim: 64, maxLen: 33, lengths: [50, 32], outliers: false }, 'a length past maxLen reads maxLen keys; one whole tile'],
];

describeGpu('KV cache: filled by RoPE, read by decode attention (WebGPU)', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  test.each(CASES)('B=%i T=%i H=%i/%i D=%i lengths %j: %s', async (batch, seqLen, heads, kvHeads, headDim, lengths) => {
    const rand = mulberry32(batch * 1000 + seqLen);
    const make = (n: number) => Float32Array.from({ length: n }, () => 2 * gaussian(rand));
    const width = kvHeads * headDim;
    const maxLen = seqLen + 3;
    const q = make(batch * seqLen * heads * headDim);
    const k = make(batch * seqLen * width);
    const v = make(batch * seqLen * width);
    const positions = Uint32Array.from({ length: batch * seqLen }, (_, i) => i % seqLen);
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const kCache = ctx.createBuffer('test:k_cache', batch * maxLen * width * 4, usage);
    const vCache = ctx.createBuffer('test:v_cache', batch * maxLen * width * 4, usage);
    const nan = new Float32Array(batch * maxLen * width).fill(NaN);
    ctx.writeBuffer(kCache, 0, nan);
    ctx.writeBuffer(vCache, 0, nan);
    // The decoding query of sequence b is its last token's.
    const lastQ = new Float32Array(batch * heads * headDim);
    for (let b = 0; b < batch; b++) lastQ.set(q.subarray(((b * seqLen + lengths[b]! - 1) * heads) * headDim, ((b * seqLen + lengths[b]!) * heads) * headDim), b * heads * headDim);
    const out = ctx.createBuffer('test:out', lastQ.byteLength, usage);
    ctx.writeBuffer(out, 0, new Uint32Array(lastQ.length).fill(POISON_BITS));
    const invFreq = ropeInverseFrequencies({ headDim, ropeTheta: 10_000, ropeScaling: { type: 'default' } });
    const buffers = {
      q: ctx.upload('test:q', q), k: ctx.upload('test:k', k, usage), v: ctx.upload('test:v', v), positions: ctx.upload('test:pos', positions),
      invFreq: ctx.upload('test:inv_freq', Float32Array.from(invFreq)), lastQ: ctx.upload('test:last_q', lastQ), lengths: ctx.upload('test:len', Uint32Array.from(lengths)),
    };
    const ropeShape = { tokens: batch * seqLen, heads, kvHeads, headDim, cache: { seqLen, maxLen } };
    const steps = [
      await prepareRopeQk(ctx, ropeShape, { q: buffers.q, k: buffers.k, v: buffers.v, positions: buffers.positions, invFreq: buffers.invFreq, kCache, vCache }),
      await prepareAttentionDecode(ctx, { batch, heads, kvHeads, headDim, maxLen }, { q: buffers.lastQ, kCache, vCache, lengths: buffers.lengths, out }),
    ];
    await ctx.scoped('test', () => {
      const encoder = ctx.device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      for (const s of steps) s.encode(pass);
      pass.end();
      ctx.device.queue.submit([encoder.finish()]);
    });
    const cacheK = new Float32Array(await ctx.read('test', kCache, batch * maxLen * width * 4));
    const cacheV = new Float32Array(await ctx.read('test', vCache, batch * maxLen * width * 4));
    const want = referenceRopeQk(q, k, v, positions, invFreq, ropeShape, { k: nan, v: nan });
    expectClose('k cache', cacheK, want.kCache!, TOLERANCES.rope);
    expectClose('v cache', cacheV, want.vCache!, TOLERANCES.embedding);
    // Attention against the keys as the cache holds them (RoPE's own error is tested above).
    const rotatedK = new Float32Array(await ctx.read('test', buffers.k, k.byteLength));
    const got = new Float32Array(await ctx.read('test', out, lastQ.byteLength));
    const full = referenceAttention(q, rotatedK, v, lengths, { batch, seqLen, heads, kvHeads, headDim }).out;
    const wantOut = new Float64Array(lastQ.length);
    for (let b = 0; b < batch; b++) wantOut.set(full.subarray(((b * seqLen + lengths[b]! - 1) * heads) * headDim, ((b * seqLen + lengths[b]!) * heads) * headDim), b * heads * headDim);
    expectClose('decode attention', got, wantOut, TOLERANCES.attention);
    for (const s of steps) s.destroy();
    for (const b of [kCache, vCache, out, ...Object.values(buffers)]) b.destroy();
  });

  test.each(DIRECT_CASES)('%j: %s', async (c) => {
    const { batch, heads, kvHeads, headDim, maxLen, lengths } = c;
    const rand = mulberry32(batch * 7919 + headDim * 31 + maxLen);
    const make = (n: number) => Float32Array.from({ length: n }, () => 2 * gaussian(rand));
    const row = kvHeads * headDim;
    const q = make(batch * heads * headDim);
    const kCache = make(batch * maxLen * row);
    const vCache = make(batch * maxLen * row);
    if (c.outliers) {
      // Later keys score ever higher (|scores| up to ~70): the running max rises at most later tiles.
      for (let i = 0; i < kCache.length; i++) kCache[i] = kCache[i]! * (0.25 + 2 * (Math.floor(i / row) % maxLen) / maxLen);
      for (let i = 0; i < q.length; i += 37) q[i] = q[i]! * 8;
    }
    const used = lengths.map((n) => Math.min(n, maxLen));
    // Rows past each sequence's length must never be read.
    for (let b = 0; b < batch; b++) {
      kCache.fill(NaN, (b * maxLen + used[b]!) * row, (b + 1) * maxLen * row);
      vCache.fill(NaN, (b * maxLen + used[b]!) * row, (b + 1) * maxLen * row);
    }
    const got = await runOnHost(ctx, 'test:attention_decode', { q, kCache, vCache, lengths: Uint32Array.from(lengths) }, q.length, true,
      (buffers, out) => prepareAttentionDecode(ctx, { batch, heads, kvHeads, headDim, maxLen }, { q: buffers.q!, kCache: buffers.kCache!, vCache: buffers.vCache!, lengths: buffers.lengths!, out }));
    // The reference over the cache as a sequence of maxLen tokens whose last live token queries q.
    const fullQ = new Float32Array(batch * maxLen * heads * headDim);
    for (let b = 0; b < batch; b++) {
      if (used[b]! > 0) fullQ.set(q.subarray(b * heads * headDim, (b + 1) * heads * headDim), (b * maxLen + used[b]! - 1) * heads * headDim);
    }
    const full = referenceAttention(fullQ, kCache, vCache, used, { batch, seqLen: maxLen, heads, kvHeads, headDim }).out;
    const want = new Float64Array(q.length);   // an empty sequence: zeros
    for (let b = 0; b < batch; b++) {
      if (used[b]! > 0) want.set(full.subarray((b * maxLen + used[b]! - 1) * heads * headDim, (b * maxLen + used[b]!) * heads * headDim), b * heads * headDim);
    }
    expectClose('decode attention', got, want, TOLERANCES.attention);
  });

  test(`headDim ${MAX_HEAD_DIM + 1} is refused, naming headDim`, async () => {
    const buffer = ctx.upload('test:any', new Float32Array(4));
    try {
      const call = prepareAttentionDecode(ctx, { batch: 1, heads: 1, kvHeads: 1, headDim: MAX_HEAD_DIM + 1, maxLen: 1 }, { q: buffer, kCache: buffer, vCache: buffer, lengths: buffer, out: buffer });
      await expect(call).rejects.toThrow(InvalidArgumentError);
      await expect(call).rejects.toThrow(new RegExp(`^headDim: expected at most ${MAX_HEAD_DIM},`));
    } finally {
      buffer.destroy();
    }
  });
});
