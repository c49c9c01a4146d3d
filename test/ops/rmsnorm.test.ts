/** kernels/rmsnorm.wgsl against the float64 reference, every weight dtype, on rows that are not multiples of its workgroup. */
import { elementReader, encode, type DType } from '../../src/dtype.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { prepareRmsNorm, referenceRmsNorm, rmsNorm } from '../../src/ops/rmsnorm.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

type Case = [rows: number, hidden: number, weightDType: DType, path: string];

const CASES: Case[] = [
  [1, 1, 'f32', 'one element: 31 lanes add zero to the row\'s tree, 7 rows of the workgroup idle'],
  [5, 7, 'f16', 'fewer columns than lanes, 5 of 8 rows; odd hidden: w ends mid-word'],
  [3, 257, 'bf16', 'one column past 8 passes of 32 lanes: lane 0 strides 9 times'],
  [70, 896, 'bf16', "Qwen2.5-0.5B's hidden size, 28 columns per lane; 9 workgroups, the last with 6 rows"],
  [1, 4099, 'f16', 'one large row: 128 lanes (2 rows a workgroup) of 33 columns, a ragged last stride'],
  [9, 300, 'f32', 'f32 weights, a second workgroup holding one row'],
  [524_289, 1, 'f32', 'more row groups than one grid dimension holds (65,535 × 8 rows): a 2-D grid'],
];

/** Rows of N(0, 1)·scale (row scales from 1e-3 to 1e3, the first row zero), w ~ 1 + N(0, 0.1) rounded to its dtype. */
function inputs(rows: number, hidden: number, weightDType: DType) {
  const rand = mulberry32(rows * 131 + hidden);
  const x = new Float32Array(rows * hidden);
  for (let r = 0; r < rows; r++) {
    const scale = r === 0 && rows > 1 ? 0 : 10 ** (6 * rand() - 3);
    for (let i = 0; i < hidden; i++) x[r * hidden + i] = scale * gaussian(rand);
  }
  const weight = encode(weightDType, Float64Array.from({ length: hidden }, () => 1 + 0.1 * gaussian(rand)));
  const read = elementReader(weightDType, weight);
  return { x, weight, weightValues: Float64Array.from({ length: hidden }, (_, i) => read(i)) };
}

describeGpu('rmsnorm (WebGPU)', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  test.each(CASES)('(%i × %i), w %s: %s', async (rows, hidden, weightDType) => {
    const { x, weight, weightValues } = inputs(rows, hidden, weightDType);
    const shape = { rows, hidden, eps: 1e-6, weightDType };
    const got = await rmsNorm(ctx, x, weight, shape, { poison: true });
    expectClose(`rmsnorm ${rows}x${hidden} ${weightDType}`, got, referenceRmsNorm(x, weightValues, shape), TOLERANCES.rmsNorm);
  });

  test('a zero row gives zeros (eps keeps the scale finite)', async () => {
    const got = await rmsNorm(ctx, new Float32Array(10), Float32Array.from({ length: 5 }, (_, i) => i + 1), { rows: 2, hidden: 5, eps: 1e-5 }, { poison: true });
    expect([...got]).toEqual(new Array(10).fill(0));
  });

  test('bad arguments are refused before any GPU work', async () => {
    const x = new Float32Array(6);
    await expect(rmsNorm(ctx, x, new Float32Array(3), { rows: 2, hidden: 3, eps: -1 })).rejects.toThrow(/eps: expected a finite number ≥ 0, got -1/);
    await expect(rmsNorm(ctx, x, new Float32Array(3), { rows: 0, hidden: 3, eps: 1e-6 })).rejects.toThrow(/rows: expected a positive integer, got 0/);
    await expect(rmsNorm(ctx, new Float32Array(5), new Float32Array(3), { rows: 2, hidden: 3, eps: 1e-6 })).rejects.toThrow(/x: expected Float32Array of 6 elements/);
    await expect(rmsNorm(ctx, x, new Float32Array(3), { rows: 2, hidden: 3, eps: 1e-6, weightDType: 'f16' })).rejects.toThrow(/weight: expected Uint16Array for dtype f16/);
    await expect(rmsNorm(ctx, x, new Float32Array(4), { rows: 2, hidden: 3, eps: 1e-6 })).rejects.toThrow(/weight: expected 3 elements/);
    const small = ctx.createBuffer('test:small', 16, GPUBufferUsage.STORAGE);
    try {
      await expect(prepareRmsNorm(ctx, { rows: 2, hidden: 3, eps: 1e-6 }, small, small, small)).rejects.toThrow(/x: expected a GPUBuffer of at least 24 bytes/);
    } finally {
      small.destroy();
    }
  });
});
