/**
 * kernels/rope.wgsl against the float64 reference: the rotate-half convention, f32 angles formed
 * as Hugging Face forms them, and the kernel's own cos/sin up to large positions. RoPE works in
 * place, so there is no output to poison: an element the kernel never wrote keeps its input
 * value, which differs from the reference wherever the position is not 0 (the cases below use
 * position 0 only as one token among others).
 */
import { InvalidArgumentError } from '../../src/errors.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { ropeInverseFrequencies } from '../../src/model/config.js';
import { prepareRope, prepareRopeQk, referenceRope, referenceRopeBackward, referenceRopeQk, rope } from '../../src/ops/rope.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';
import { ROPE_CASES } from './shared-cases.js';

describeGpu('rope (WebGPU, rotate-half, in place)', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  test.each(ROPE_CASES)('(%i × %i × %i), positions ≤ %i: %s', async (tokens, heads, headDim, maxPosition) => {
    const rand = mulberry32(tokens * 977 + heads * 13 + headDim);
    const x = Float32Array.from({ length: tokens * heads * headDim }, () => 3 * gaussian(rand));
    const positions = Uint32Array.from({ length: tokens }, (_, t) => (t === tokens - 1 ? maxPosition : Math.floor(rand() * maxPosition)));
    const invFreq = ropeInverseFrequencies({ headDim, ropeTheta: 1_000_000, ropeScaling: { type: 'default' } });
    const shape = { tokens, heads, headDim };
    const got = await rope(ctx, x, positions, invFreq, shape);
    expectClose(`rope ${tokens}x${heads}x${headDim}`, got, referenceRope(x, positions, invFreq, shape), TOLERANCES.rope);
  });

  test('Llama 3 scaled frequencies, every angle up to 2.6·10^5 rad, and position 0 is the identity', async () => {
    const [tokens, heads, headDim] = [65, 1, 64];
    const rand = mulberry32(5);
    const x = Float32Array.from({ length: tokens * heads * headDim }, () => gaussian(rand));
    const positions = Uint32Array.from({ length: tokens }, (_, t) => t * 4096 - (t > 0 ? 1 : 0)); // 0, 4095, ..., 262143
    const invFreq = ropeInverseFrequencies({
      headDim, ropeTheta: 500_000,
      ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
    });
    const shape = { tokens, heads, headDim };
    const got = await rope(ctx, x, positions, invFreq, shape);
    expectClose('rope llama3', got, referenceRope(x, positions, invFreq, shape), TOLERANCES.rope);
    expect([...got.subarray(0, headDim)]).toEqual([...x.subarray(0, headDim)]);
  });

  test('the rotate-half convention: (x1, x2) → (x1·cos − x2·sin, x2·cos + x1·sin)', async () => {
    // D = 4, one frequency of 1 and one of 0: position 1 rotates the first pair by 1 rad, not the second.
    const got = await rope(ctx, Float32Array.from([1, 2, 3, 4]), [1], [1, 0], { tokens: 1, heads: 1, headDim: 4 });
    const [c, s] = [Math.cos(1), Math.sin(1)];
    expectClose('rope convention', got, [1 * c - 3 * s, 2, 3 * c + 1 * s, 4], TOLERANCES.rope);
  });

  test('bad arguments are refused before any GPU work', async () => {
    const x = new Float32Array(12);
    const shape = { tokens: 2, heads: 1, headDim: 6 };
    await expect(rope(ctx, x, [0, 1], [1, 1, 1], { tokens: 2, heads: 1, headDim: 5 })).rejects.toThrow(/headDim: expected an even integer, got 5/);
    await expect(rope(ctx, x, [0, 1], [1, 1, 1], { ...shape, heads: 0 })).rejects.toThrow(/heads: expected a positive integer, got 0/);
    await expect(rope(ctx, new Float32Array(11), [0, 1], [1, 1, 1], shape)).rejects.toThrow(/x: expected Float32Array of 12 elements/);
    await expect(rope(ctx, x, [0], [1, 1, 1], shape)).rejects.toThrow(/positions: expected .* of 2 elements/);
    await expect(rope(ctx, x, [0, -1], [1, 1, 1], shape)).rejects.toThrow(/positions\[1\]: expected an integer in \[0, 2\^24\), got -1/);
    await expect(rope(ctx, x, [0, 2 ** 24], [1, 1, 1], shape)).rejects.toThrow(InvalidArgumentError);
    await expect(rope(ctx, x, [0, 1], [1, 1], shape)).rejects.toThrow(/invFreq: expected .* of 3 elements/);
    await expect(rope(ctx, x, [0, 1], [1, NaN, 1], shape)).rejects.toThrow(/invFreq: expected finite values/);
    const small = ctx.createBuffer('test:small', 16, GPUBufferUsage.STORAGE);
    try {
      await expect(prepareRope(ctx, shape, small, small, small)).rejects.toThrow(/x: expected a GPUBuffer of at least 48 bytes/);
    } finally {
      small.destroy();
    }
  });

  // prepareRopeQk: q and k of a layer in one dispatch; with a cache, the rotated keys and the
  // values stored per sequence (what decoding reads).
  const QK_CASES: [batch: number, seqLen: number, heads: number, kvHeads: number, headDim: number, maxLen: number, path: string][] = [
    [1, 1, 1, 1, 2, 4, 'one token, one pair per tensor: 3 rows in one workgroup'],
    [3, 7, 14, 2, 64, 9, 'Qwen2.5-0.5B heads, ragged: 21 tokens × 18 rows × 32 pairs = 47.25 workgroups; positions 9..11 (padding past maxLen) not stored'],
    [2, 5, 4, 4, 6, 40, 'no GQA, D/2 = 3: rows of q, k and v interleave within a workgroup'],
  ];

  test.each(QK_CASES)('rope q and k (+ cache): B=%i S=%i heads %i/%i D=%i maxLen %i: %s', async (batch, seqLen, heads, kvHeads, headDim, maxLen, _path) => {
    const rand = mulberry32(batch * 31 + seqLen * 7 + headDim);
    const tokens = batch * seqLen;
    const make = (n: number) => Float32Array.from({ length: n }, () => 3 * gaussian(rand));
    const [q, k, v] = [make(tokens * heads * headDim), make(tokens * kvHeads * headDim), make(tokens * kvHeads * headDim)];
    // Positions run 0.. in each sequence, offset so that some pass maxLen in the ragged case.
    const positions = Uint32Array.from({ length: tokens }, (_, t) => (t % seqLen) + (seqLen > 5 ? 5 : 0));
    const invFreq = ropeInverseFrequencies({ headDim, ropeTheta: 10_000, ropeScaling: { type: 'default' } });
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const nan = new Float32Array(batch * maxLen * kvHeads * headDim).fill(NaN);
    const buffers = {
      q: ctx.upload('test:q', q, usage), k: ctx.upload('test:k', k, usage), v: ctx.upload('test:v', v), positions: ctx.upload('test:positions', positions),
      invFreq: ctx.upload('test:inv_freq', Float32Array.from(invFreq)), kCache: ctx.upload('test:k_cache', nan, usage), vCache: ctx.upload('test:v_cache', nan, usage),
    };
    try {
      const shape = { tokens, heads, kvHeads, headDim, cache: { seqLen, maxLen } };
      const prepared = await prepareRopeQk(ctx, shape, buffers);
      await ctx.runPass('test', (pass) => prepared.encode(pass));
      prepared.destroy();
      const read = async (b: GPUBuffer, n: number) => new Float32Array(await ctx.read('test', b, n * 4));
      const want = referenceRopeQk(q, k, v, positions, invFreq, shape, { k: nan, v: nan });
      expectClose('q', await read(buffers.q, q.length), want.q, TOLERANCES.rope);
      expectClose('k', await read(buffers.k, k.length), want.k, TOLERANCES.rope);
      expectClose('k cache (unstored slots stay NaN)', await read(buffers.kCache, nan.length), want.kCache!, TOLERANCES.rope);
      expect(Array.from(await read(buffers.vCache, nan.length))).toEqual(Array.from(want.vCache!, Math.fround));
      // The backward of both (no cache), from the rotated values the forward left.
      const [rotatedQ, rotatedK] = [await read(buffers.q, q.length), await read(buffers.k, k.length)];
      const back = await prepareRopeQk(ctx, { tokens, heads, kvHeads, headDim }, buffers, true);
      await ctx.runPass('test', (pass) => back.encode(pass));
      back.destroy();
      expectClose('dq', await read(buffers.q, q.length), referenceRopeBackward(rotatedQ, positions, invFreq, { tokens, heads, headDim }), TOLERANCES.rope);
      expectClose('dk', await read(buffers.k, k.length), referenceRopeBackward(rotatedK, positions, invFreq, { tokens, heads: kvHeads, headDim }), TOLERANCES.rope);
    } finally {
      Object.values(buffers).forEach((b) => b.destroy());
    }
  });

  test('rope q and k: bad arguments are refused before any GPU work', async () => {
    const small = ctx.createBuffer('test:small', 16, GPUBufferUsage.STORAGE);
    const big = ctx.createBuffer('test:big', 4096, GPUBufferUsage.STORAGE);
    try {
      const shape = { tokens: 4, heads: 2, kvHeads: 1, headDim: 8 };
      const buffers = { q: big, k: big, positions: big, invFreq: big };
      await expect(prepareRopeQk(ctx, { ...shape, kvHeads: 0 }, buffers)).rejects.toThrow(/heads: expected a positive integer, got 0/);
      await expect(prepareRopeQk(ctx, shape, null as unknown as typeof buffers)).rejects.toThrow(/buffers: expected an object \{ q, k, positions, invFreq/);
      await expect(prepareRopeQk(ctx, shape, { ...buffers, k: small })).rejects.toThrow(/k: expected a GPUBuffer of at least 128 bytes, got 16 bytes/);
      await expect(prepareRopeQk(ctx, { ...shape, cache: { seqLen: 2, maxLen: 8 } }, buffers)).rejects.toThrow(/v: expected a GPUBuffer \(shape.cache is set\), got none/);
      await expect(prepareRopeQk(ctx, { ...shape, cache: { seqLen: 3, maxLen: 8 } }, buffers)).rejects.toThrow(/cache.seqLen: expected a divisor of tokens \(4\), got 3/);
      await expect(prepareRopeQk(ctx, { ...shape, cache: { seqLen: 2, maxLen: 8 } }, { ...buffers, v: big, kCache: small, vCache: big })).rejects.toThrow(/kCache: expected a GPUBuffer of at least 512 bytes/);
      await expect(prepareRopeQk(ctx, { ...shape, cache: { seqLen: 2, maxLen: 8 } }, { ...buffers, v: big, kCache: big, vCache: big }, true)).rejects.toThrow(/shape.cache: expected no cache with inverse/);
    } finally {
      small.destroy();
      big.destroy();
    }
  });
});
