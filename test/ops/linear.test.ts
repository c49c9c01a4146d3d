/** kernels/linear.wgsl against the float64 reference, every weight and bias dtype, on shapes that are not multiples of its tiles. */
import { elementReader, encode, type DType } from '../../src/dtype.js';
import { InvalidArgumentError } from '../../src/errors.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { linear, prepareLinear, referenceLinear } from '../../src/ops/linear.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

type Case = [m: number, k: number, n: number, weightDType: DType, biasDType: DType | null, path: string];

const CASES: Case[] = [
  [1, 1, 1, 'f32', null, 'one element: every tile edge masked, no bias (placeholder bound)'],
  [1, 37, 70, 'bf16', 'bf16', 'one row (a decoding step); odd k: W rows alternate starting in the low and high half of a word; n one tile and 6 columns'],
  [3, 5, 7, 'f16', 'f16', 'smaller than one tile and one k-step; odd k and odd n: the bias ends mid-word'],
  [65, 17, 33, 'f32', 'f32', 'one row past a tile in m, one element past a k-step, ragged n'],
  [67, 31, 129, 'bf16', null, 'odd k, m and n past whole tiles (two and three workgroups), no bias'],
  [130, 64, 66, 'f16', 'bf16', 'whole k-steps, even k (rows start on a word), ragged m and n, bias dtype differs from W'],
  [2, 2053, 19, 'f16', 'f32', 'a large row: 129 staged k-steps with a ragged last one, odd k'],
];

/** x ~ N(0, 1) with an outlier, W ~ N(0, 1/k) and b ~ N(0, 1) rounded to their dtypes; the references see the decoded values. */
function inputs(m: number, k: number, n: number, weightDType: DType, biasDType: DType | null) {
  const rand = mulberry32(m * 7919 + k * 31 + n);
  const x = Float32Array.from({ length: m * k }, () => gaussian(rand));
  x[0] = 40;
  const weight = encode(weightDType, Float64Array.from({ length: n * k }, () => gaussian(rand) / Math.sqrt(k)));
  const bias = biasDType === null ? null : encode(biasDType, Float64Array.from({ length: n }, () => gaussian(rand)));
  const readW = elementReader(weightDType, weight);
  const weightValues = Float64Array.from({ length: n * k }, (_, i) => readW(i));
  const biasValues = bias === null ? null : Float64Array.from({ length: n }, (_, i) => elementReader(biasDType!, bias)(i));
  return { x, weight, bias, weightValues, biasValues };
}

describeGpu('linear (WebGPU, y = x · Wᵀ + b)', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  test.each(CASES)('(%i × %i) · (%i × k)ᵀ, W %s, bias %s: %s', async (m, k, n, weightDType, biasDType) => {
    const { x, weight, bias, weightValues, biasValues } = inputs(m, k, n, weightDType, biasDType);
    const shape = { m, k, n, weightDType, biasDType: biasDType ?? undefined };
    const got = await linear(ctx, x, weight, bias, shape, { poison: true });
    expectClose(`linear ${m}x${k}x${n} ${weightDType}/${biasDType}`, got, referenceLinear(x, weightValues, biasValues, shape), TOLERANCES.linear);
  });

  test('bad arguments are refused before any GPU work', async () => {
    const x = new Float32Array(6);
    await expect(linear(ctx, x, new Float32Array(6), null, { m: 2, k: 3, n: 0 })).rejects.toThrow(/n: expected a positive integer, got 0/);
    await expect(linear(ctx, new Float32Array(5), new Float32Array(6), null, { m: 2, k: 3, n: 2 })).rejects.toThrow(/x: expected Float32Array of 6 elements/);
    await expect(linear(ctx, x, new Uint16Array(6), null, { m: 2, k: 3, n: 2 })).rejects.toThrow(/weight: expected Float32Array for dtype f32/);
    await expect(linear(ctx, x, new Uint16Array(5), null, { m: 2, k: 3, n: 2, weightDType: 'bf16' })).rejects.toThrow(/weight: expected 6 elements/);
    await expect(linear(ctx, x, new Uint16Array(6), new Float32Array(2), { m: 2, k: 3, n: 2, weightDType: 'bf16' })).rejects.toThrow(/bias: expected Uint16Array for dtype bf16/);
    await expect(linear(ctx, x, new Float32Array(6), new Float32Array(3), { m: 2, k: 3, n: 2 })).rejects.toThrow(/bias: expected 2 elements/);
    await expect(linear(ctx, x, new Float32Array(6), null, { m: 2, k: 3, n: 2, weightDType: 'f8' as DType })).rejects.toThrow(InvalidArgumentError);
    const small = ctx.createBuffer('test:small', 16, GPUBufferUsage.STORAGE);
    try {
      // 7 bf16 values of W need 14 bytes, rounded up to 16: fits; 9 need 20.
      await expect(prepareLinear(ctx, { m: 1, k: 9, n: 1, weightDType: 'bf16' }, small, small, null, small)).rejects.toThrow(/x: expected a GPUBuffer of at least 36 bytes, got 16 bytes/);
      const x9 = ctx.createBuffer('test:x9', 36, GPUBufferUsage.STORAGE);
      await expect(prepareLinear(ctx, { m: 1, k: 9, n: 1, weightDType: 'bf16' }, x9, small, null, small)).rejects.toThrow(/weight: expected a GPUBuffer of at least 20 bytes/);
      x9.destroy();
    } finally {
      small.destroy();
    }
  });
});
