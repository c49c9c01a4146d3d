/** kernels/matmul.wgsl against the float64 reference, on shapes that are not multiples of its tiles. */
import { InvalidArgumentError } from '../../src/errors.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { matmul, referenceMatmul } from '../../src/ops/matmul.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

const SHAPES: [number, number, number, string][] = [
  [1, 1, 1, 'one element: every tile edge masked'],
  [3, 5, 7, 'smaller than one tile in every dimension'],
  [65, 17, 33, 'one row and one k-step past a tile'],
  [128, 64, 130, 'whole tiles in m and k, a ragged n'],
  [70, 300, 9, 'long k: many staged k-steps with a ragged last one'],
];

describeGpu('matmul (WebGPU, f32)', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  test.each(SHAPES)('(%i × %i) · (%i): %s', async (m, k, n) => {
    const rand = mulberry32(m * 31 + k * 7 + n);
    const a = Float32Array.from({ length: m * k }, () => gaussian(rand));
    const b = Float32Array.from({ length: k * n }, () => gaussian(rand));
    a[0] = 40; // an outlier
    const got = await matmul(ctx, a, b, { m, k, n });
    expectClose(`matmul ${m}x${k}x${n}`, got, referenceMatmul(a, b, { m, k, n }), TOLERANCES.matmul);
  });

  test('bad shapes are refused before any GPU work', async () => {
    await expect(matmul(ctx, new Float32Array(6), new Float32Array(6), { m: 2, k: 3, n: 0 })).rejects.toThrow(InvalidArgumentError);
    await expect(matmul(ctx, new Float32Array(5), new Float32Array(6), { m: 2, k: 3, n: 2 })).rejects.toThrow(/a: expected Float32Array of 6 elements/);
  });
});
