/** attention_decode.wgsl against the float64 reference (decoding's last query), over caches filled by the RoPE dispatch (prepareRopeQk with a cache). */
import type { GpuContext } from '../../src/gpu/context.js';
import { referenceAttention } from '../../src/ops/attention.js';
import { prepareAttentionDecode } from '../../src/ops/kv-cache.js';
import { prepareRopeQk, referenceRopeQk } from '../../src/ops/rope.js';
import { ropeInverseFrequencies } from '../../src/model/config.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

const CASES: [number, number, number, number, number, number[], string][] = [
  // batch, seqLen, heads, kvHeads, headDim, lengths
  [1, 1, 1, 1, 2, [1], 'one key'],
  [3, 45, 4, 2, 16, [45, 7, 33], 'GQA, ragged lengths: threads with no keys merge as empty states'],
  [2, 70, 2, 1, 128, [70, 64], 'head size 128, more keys than threads'],
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
    ctx.writeBuffer(out, 0, new Float32Array(lastQ.length).fill(NaN));
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
});
