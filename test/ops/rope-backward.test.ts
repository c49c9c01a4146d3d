/**
 * RoPE's backward (kernels/rope.wgsl with INVERSE, in place on the gradient) against the float64
 * reference, itself checked against finite differences of the forward reference. In place, so
 * there is no output to poison: an element the kernel never wrote keeps dy, which differs from
 * the reference wherever the position is not 0 (every case has positions other than 0).
 */
import type { GpuContext } from '../../src/gpu/context.js';
import { ropeInverseFrequencies } from '../../src/model/config.js';
import { prepareRopeBackward, referenceRope, referenceRopeBackward, rope, ropeBackward } from '../../src/ops/rope.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';
import { ROPE_CASES } from './shared-cases.js';

function frequencies(headDim: number): Float64Array {
  return ropeInverseFrequencies({ headDim, ropeTheta: 1_000_000, ropeScaling: { type: 'default' } });
}

describe('referenceRopeBackward', () => {
  test.each([
    [1, 1, 2],
    [3, 2, 6],
  ])('matches central finite differences of referenceRope on (%i × %i × %i)', (tokens, heads, headDim) => {
    const rand = mulberry32(tokens * 31 + headDim);
    const shape = { tokens, heads, headDim };
    const n = tokens * heads * headDim;
    const x = Float64Array.from({ length: n }, () => gaussian(rand));
    const dy = Float64Array.from({ length: n }, () => gaussian(rand));
    const positions = Uint32Array.from({ length: tokens }, (_, t) => 3 + 17 * t);
    const invFreq = frequencies(headDim);
    const loss = (): number => referenceRope(x, positions, invFreq, shape).reduce((s, y, i) => s + y * dy[i]!, 0);
    const h = 1e-5;
    const numeric = Float64Array.from(x, (value, k) => {
      x[k] = value + h;
      const up = loss();
      x[k] = value - h;
      const down = loss();
      x[k] = value;
      return (up - down) / (2 * h);
    });
    expectClose('dx', referenceRopeBackward(dy, positions, invFreq, shape), numeric, TOLERANCES.finiteDifferences);
  });
});

describeGpu('rope backward (WebGPU, rotation by −angle, in place)', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  test.each(ROPE_CASES)('(%i × %i × %i), positions ≤ %i: %s', async (tokens, heads, headDim, maxPosition) => {
    const rand = mulberry32(tokens * 977 + heads * 13 + headDim);
    const dy = Float32Array.from({ length: tokens * heads * headDim }, () => 3 * gaussian(rand));
    const positions = Uint32Array.from({ length: tokens }, (_, t) => (t === tokens - 1 ? maxPosition : Math.floor(rand() * maxPosition)));
    const invFreq = frequencies(headDim);
    const shape = { tokens, heads, headDim };
    const got = await ropeBackward(ctx, dy, positions, invFreq, shape);
    expectClose(`rope backward ${tokens}x${heads}x${headDim}`, got, referenceRopeBackward(dy, positions, invFreq, shape), TOLERANCES.rope);
  });

  test('the backward undoes the forward (the rotation is orthogonal); position 0 is the identity', async () => {
    const [tokens, heads, headDim] = [5, 3, 10];
    const rand = mulberry32(11);
    const x = Float32Array.from({ length: tokens * heads * headDim }, () => gaussian(rand));
    const positions = [0, 1, 100, 4095, 70_000];
    const invFreq = frequencies(headDim);
    const shape = { tokens, heads, headDim };
    const back = await ropeBackward(ctx, await rope(ctx, x, positions, invFreq, shape), positions, invFreq, shape);
    expectClose('rope backward ∘ rope', back, x, TOLERANCES.rope);
    const identity = await ropeBackward(ctx, x, [0, 0, 0, 0, 0], invFreq, shape);
    expect([...identity]).toEqual([...x]);
  });

  test('the transposed convention: (dy1, dy2) → (dy1·cos + dy2·sin, dy2·cos − dy1·sin)', async () => {
    // D = 4, one frequency of 1 and one of 0: position 1 rotates the first pair by −1 rad, not the second.
    const got = await ropeBackward(ctx, Float32Array.from([1, 2, 3, 4]), [1], [1, 0], { tokens: 1, heads: 1, headDim: 4 });
    const [c, s] = [Math.cos(1), Math.sin(1)];
    expectClose('rope backward convention', got, [1 * c + 3 * s, 2, 3 * c - 1 * s, 4], TOLERANCES.rope);
    expectClose('rope backward reference', got, referenceRopeBackward([1, 2, 3, 4], [1], [1, 0], { tokens: 1, heads: 1, headDim: 4 }), TOLERANCES.rope);
  });

  test('bad arguments are refused before any GPU work', async () => {
    const dy = new Float32Array(12);
    const shape = { tokens: 2, heads: 1, headDim: 6 };
    await expect(ropeBackward(ctx, dy, [0, 1], [1, 1, 1], { tokens: 2, heads: 1, headDim: 5 })).rejects.toThrow(/headDim: expected an even integer, got 5/);
    await expect(ropeBackward(ctx, dy, [0, 1], [1, 1, 1], { ...shape, tokens: 0 })).rejects.toThrow(/tokens: expected a positive integer, got 0/);
    await expect(ropeBackward(ctx, new Float32Array(11), [0, 1], [1, 1, 1], shape)).rejects.toThrow(/dy: expected Float32Array of 12 elements/);
    await expect(ropeBackward(ctx, dy, [0], [1, 1, 1], shape)).rejects.toThrow(/positions: expected .* of 2 elements/);
    await expect(ropeBackward(ctx, dy, [0, 2 ** 24], [1, 1, 1], shape)).rejects.toThrow(/positions\[1\]: expected an integer in \[0, 2\^24\), got 16777216/);
    await expect(ropeBackward(ctx, dy, [0, 1], [1, 1], shape)).rejects.toThrow(/invFreq: expected .* of 3 elements/);
    await expect(ropeBackward(ctx, dy, [0, 1], [1, Infinity, 1], shape)).rejects.toThrow(/invFreq: expected finite values/);
    const small = ctx.createBuffer('test:small', 16, GPUBufferUsage.STORAGE);
    try {
      await expect(prepareRopeBackward(ctx, shape, small, small, small)).rejects.toThrow(/dx: expected a GPUBuffer of at least 48 bytes/);
    } finally {
      small.destroy();
    }
  });
});
