/** kernels/linear.wgsl against the float64 reference, every weight and bias dtype, on shapes that are not multiples of its tiles. */
import { elementReader, encode, type DType } from '../../src/dtype.js';
import { InvalidArgumentError } from '../../src/errors.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { linear, linearPlan, prepareLinear, referenceLinear } from '../../src/ops/linear.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

type Case = [m: number, k: number, n: number, weightDType: DType, biasDType: DType | null, path: string];

// Paths (linearPlan): "rows" = linear_rows_main (m ≤ 8: 8 columns a workgroup, 32 lanes split k);
// "small" = 32-row tiles (9 ≤ m ≤ 32), "large" = 64-row tiles; "aligned" = k % 4 = 0, so rows of
// x and W are read as whole quads (vec4 / packed pairs); "split S" = k cut into S ranges,
// partials reduced by linear_reduce (which adds the bias), else one dispatch writes y + bias.
const CASES: Case[] = [
  [1, 1, 1, 'f32', null, 'rows, one element: 3 of 4 lanes and 63 of 64 columns of the workgroup idle, no bias (placeholder bound)'],
  [1, 37, 70, 'bf16', 'bf16', 'rows, one row (a decoding step); odd k: W rows alternate starting in the low and high half of a word; 2 workgroups of 64 columns, the second with 6'],
  [3, 5, 7, 'f16', 'f16', 'rows, fewer columns than a workgroup and one quad of k; odd n: the bias ends mid-word'],
  [8, 4864, 131, 'bf16', 'f32', 'rows at its largest m, aligned pairs, 32 lanes of 38 quads (an MLP down projection)'],
  [5, 1003, 17, 'f32', null, 'rows, odd k: quads read element by element, 32 lanes, the last stride ragged'],
  [7, 64, 9, 'f16', 'f16', 'rows with more rows than lanes (4): lanes 0–2 write two rows of y each'],
  [65, 17, 33, 'f32', 'f32', 'large, one row past a tile in m, one element past a k-step, ragged n'],
  [67, 31, 129, 'bf16', null, 'large, odd k, m and n past whole tiles (two and three workgroups), no bias'],
  [130, 64, 66, 'f16', 'bf16', 'large, aligned 16-bit pairs, whole k-steps, ragged m and n, bias dtype differs from W'],
  [9, 2053, 19, 'f16', 'f32', 'small at its smallest m, split 15 (ranges of 144, the last 37), odd k: odd rows start every range mid-word; f32 bias added by the reduction'],
  [32, 300, 70, 'f32', 'f32', 'small at its largest m, aligned f32 quads, split 2 (160 + 140): a range ending mid-step'],
  [33, 260, 131, 'bf16', 'bf16', 'large at its smallest m (second tile row nearly empty), aligned pairs, split 2; bf16 bias ends mid-word in the reduction'],
  [70, 1001, 67, 'bf16', 'f16', 'large, split 7 (6 × 144 + 137), odd k: unaligned 16-bit reads across range edges'],
  [12, 512, 100, 'f16', null, 'small, aligned f16 pairs (subnormal weights among them), split 4, no bias in the reduction (placeholder)'],
  [100, 64, 200, 'f32', 'f32', 'large, aligned f32 quads, k too short to split: bias added by the tile kernel'],
  [2, 40, 5000, 'bf16', null, 'rows, wide n (79 workgroups of 64 columns, an lm_head in miniature), 4 lanes of 2 or 3 quads, aligned'],
  [20, 40, 5000, 'bf16', null, 'small, wide n (79 column tiles), k of 2.5 steps, aligned'],
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

  test.each([
    [3, 5, 7, 'f16', 'f16', 'rows: linear_rows_main adds into y'],
    [20, 40, 70, 'f32', 'f32', 'one dispatch: the tile kernel adds into y'],
    [70, 1001, 67, 'bf16', null, 'split 7: the reduction adds into y'],
    [13, 1001, 67, 'f32', 'bf16', 'split 7 with a bias (an o_proj with attention_bias): the reduction adds the bias, then the residual'],
  ] as Case[])('accumulate: y = r + (x · Wᵀ + b), (%i × %i) · (%i × k)ᵀ, W %s, bias %s: %s', async (m, k, n, weightDType, biasDType) => {
    const { x, weight, bias, weightValues, biasValues } = inputs(m, k, n, weightDType, biasDType);
    const shape = { m, k, n, weightDType, biasDType: biasDType ?? undefined };
    const rand = mulberry32(5);
    const residual = Float32Array.from({ length: m * n }, () => 10 * gaussian(rand));
    const got = await linear(ctx, x, weight, bias, shape, { addTo: residual });
    const want = referenceLinear(x, weightValues, biasValues, shape).map((v, i) => v + residual[i]!);
    expectClose(`linear += ${m}x${k}x${n}`, got, want, TOLERANCES.linear);
    // The same arithmetic as a separate add of the output: r + fl32(x · Wᵀ + b), bit for bit.
    const plain = await linear(ctx, x, weight, bias, shape);
    expect(Array.from(got)).toEqual(Array.from(plain, (v, i) => Math.fround(residual[i]! + v)));
    await expect(linear(ctx, x, weight, bias, shape, { addTo: new Float32Array(m * n - 1) })).rejects.toThrow(new RegExp(`addTo: expected Float32Array of ${m * n} elements`));
  });

  test('split-k runs repeat bit for bit (fixed-order reduction)', async () => {
    const [m, k, n] = [70, 1001, 67];
    expect(linearPlan({ m, k, n }, ctx.maxBindingBytes).splits).toBeGreaterThan(1);
    const { x, weight, bias } = inputs(m, k, n, 'bf16', 'f16');
    const shape = { m, k, n, weightDType: 'bf16' as const, biasDType: 'f16' as const };
    const first = await linear(ctx, x, weight, bias, shape);
    const second = await linear(ctx, x, weight, bias, shape);
    expect(Buffer.from(second.buffer).equals(Buffer.from(first.buffer))).toBe(true);
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
      const widest = 64 * ctx.limits.maxComputeWorkgroupsPerDimension;
      await expect(prepareLinear(ctx, { m: 1, k: 1, n: widest + 1 }, small, small, null, small)).rejects.toThrow(new RegExp(`n: expected at most ${widest}, got ${widest + 1}`));
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

describe('linearPlan (kernel, tile height and split-k, from the shape only)', () => {
  const big = 2 ** 31;
  test.each([
    [2048, 896, 4864, 64, 1, 896, 'prefill, 2432 tiles: enough without splitting'],
    [2048, 4864, 896, 64, 5, 976, 'prefill down-projection, 448 tiles: 5 ranges → 2240 workgroups'],
    [32, 4864, 896, 32, 38, 128, 'decode down-projection, 14 tiles: ranges no shorter than 128'],
    [32, 896, 4864, 32, 7, 128, 'decode gate/up, 76 tiles'],
    [32, 896, 128, 32, 7, 128, 'decode k/v projection, 2 tiles'],
    [32, 896, 151936, 32, 1, 896, 'decode lm_head, 2374 tiles'],
    [33, 127, 64, 64, 1, 128, 'k under one minimum range: never split'],
  ])('(%i, %i, %i) → tileM %i, %i ranges of %i: %s', (m, k, n, tileM, splits, kPerSplit) => {
    expect(linearPlan({ m, k, n }, big)).toEqual({ kernel: 'tiles', lanes: 0, tileM, splits, kPerSplit });
  });

  test('a few rows (m ≤ 8) run on linear_rows_main, unsplit, with about 8 quads of k per lane, while its grid fits 65,535 workgroups', () => {
    expect(linearPlan({ m: 1, k: 896, n: 151936 }, big)).toEqual({ kernel: 'rows', lanes: 32, tileM: 32, splits: 1, kPerSplit: 896 });
    expect(linearPlan({ m: 8, k: 4864, n: 896 }, big)).toMatchObject({ kernel: 'rows', lanes: 32 });
    expect(linearPlan({ m: 2, k: 64, n: 176 }, big)).toMatchObject({ kernel: 'rows', lanes: 4 });
    expect(linearPlan({ m: 9, k: 4864, n: 896 }, big).kernel).toBe('tiles');
    expect(linearPlan({ m: 1, k: 4096, n: 8 * 65535 + 1 }, big).kernel).toBe('tiles');
  });

  test('partials never exceed maxBindingBytes', () => {
    expect(linearPlan({ m: 32, k: 4864, n: 896 }, 2 * 32 * 896 * 4)).toEqual({ kernel: 'tiles', lanes: 0, tileM: 32, splits: 2, kPerSplit: 2432 });
    expect(linearPlan({ m: 32, k: 4864, n: 896 }, 32 * 896 * 4 + 4)).toEqual({ kernel: 'tiles', lanes: 0, tileM: 32, splits: 1, kPerSplit: 4864 });
  });
});
