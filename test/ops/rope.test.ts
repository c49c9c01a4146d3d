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
import { prepareRope, referenceRope, rope } from '../../src/ops/rope.js';
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
});
