/** kv_write.wgsl and attention_decode.wgsl against the float64 references (decoding's last query). */
import type { GpuContext } from '../../src/gpu/context.js';
import { referenceAttention } from '../../src/ops/attention.js';
import { prepareAttentionDecode, prepareKvWrite, referenceKvWrite } from '../../src/ops/kv-cache.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

const CASES: [number, number, number, number, number, number[], string][] = [
  // batch, seqLen, heads, kvHeads, headDim, lengths
  [1, 1, 1, 1, 2, [1], 'one key'],
  [3, 45, 4, 2, 16, [45, 7, 33], 'GQA, ragged lengths: threads with no keys merge as empty states'],
  [2, 70, 2, 1, 128, [70, 64], 'head size 128, more keys than threads'],
];

describeGpu('KV cache: write and decode attention (WebGPU)', () => {
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
    const buffers = { k: ctx.upload('test:k', k), v: ctx.upload('test:v', v), positions: ctx.upload('test:pos', positions), q: ctx.upload('test:q', lastQ), lengths: ctx.upload('test:len', Uint32Array.from(lengths)) };
    const shape = { batch, seqLen, width, maxLen };
    const steps = [
      await prepareKvWrite(ctx, shape, buffers.k, buffers.positions, kCache),
      await prepareKvWrite(ctx, shape, buffers.v, buffers.positions, vCache),
      await prepareAttentionDecode(ctx, { batch, heads, kvHeads, headDim, maxLen }, { q: buffers.q, kCache, vCache, lengths: buffers.lengths, out }),
    ];
    await ctx.scoped('test', () => {
      const encoder = ctx.device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      for (const s of steps) s.encode(pass);
      pass.end();
      ctx.device.queue.submit([encoder.finish()]);
    });
    const cache = new Float32Array(await ctx.read('test', kCache, batch * maxLen * width * 4));
    expectClose('k cache', cache, referenceKvWrite(Float64Array.from(nan), k, positions, shape), TOLERANCES.embedding);
    const got = new Float32Array(await ctx.read('test', out, lastQ.byteLength));
    const full = referenceAttention(q, k, v, lengths, { batch, seqLen, heads, kvHeads, headDim }).out;
    const want = new Float64Array(lastQ.length);
    for (let b = 0; b < batch; b++) want.set(full.subarray(((b * seqLen + lengths[b]! - 1) * heads) * headDim, ((b * seqLen + lengths[b]!) * heads) * headDim), b * heads * headDim);
    expectClose('decode attention', got, want, TOLERANCES.attention);
    for (const s of steps) s.destroy();
    for (const b of [kCache, vCache, out, ...Object.values(buffers)]) b.destroy();
  });
});
