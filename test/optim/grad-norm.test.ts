/**
 * kernels/sum_squares.wgsl against float64 sums, on sizes around its 4096-element blocks and past
 * 256 partials per tensor; bit-identical across runs and across binding-window cuts; the non-finite
 * check; and the host helpers (globalNorm, clipScale) by hand values.
 */
import { POISON_BITS } from '../../src/dtype.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { clipScale, firstNonFinite, globalNorm, prepareGradSquares, referenceSumSquares, type GradTensor } from '../../src/optim/grad-norm.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

type Case = [numel: number, scale: number, path: string];

const CASES: Case[] = [
  [1, 1, 'one element: one block, 255 idle threads'],
  [255, 1e-3, 'one short of the workgroup, small values'],
  [4095, 1, 'one short of a block'],
  [4096, 1, 'exactly one block'],
  [4097, 1e3, 'one past a block: a second block of one element, large values'],
  [12_289, 1, 'three blocks and one element'],
  [1_100_003, 1, '269 partials: stage two strides past its 256 threads'],
  [777, 0, 'all zeros: exactly 0'],
];

/** N(0, 1)·scale with a few outliers (×40), the first element of the biggest tensor an outlier of 1e4·scale. */
function values(numel: number, scale: number, seed: number): Float32Array {
  const rand = mulberry32(seed);
  const x = new Float32Array(numel);
  for (let i = 0; i < numel; i++) x[i] = scale * gaussian(rand) * (rand() < 0.001 ? 40 : 1);
  if (numel > 1_000_000) x[0] = 1e4 * scale;
  return x;
}

async function sumSquares(ctx: GpuContext, data: Float32Array[]): Promise<Float64Array> {
  const buffers = data.map((x, i) => ctx.upload(`test:grad${i}`, x));
  try {
    const tensors: GradTensor[] = data.map((x, i) => ({ name: `t${i}`, buffer: buffers[i]!, numel: x.length }));
    const prepared = await prepareGradSquares(ctx, tensors);
    try {
      ctx.writeBuffer(prepared.out, 0, new Uint32Array(data.length).fill(POISON_BITS));
      await ctx.runPass('test:sum_squares', (pass) => prepared.encode(pass));
      return await prepared.read();
    } finally {
      prepared.destroy();
    }
  } finally {
    for (const buffer of buffers) buffer.destroy();
  }
}

describeGpu('sum of squares (WebGPU)', () => {
  let ctx: GpuContext;
  const data = CASES.map(([numel, scale], i) => values(numel, scale, 17 + i));
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  test('every case in one preparation, against float64', async () => {
    const got = await sumSquares(ctx, data);
    CASES.forEach(([numel, , path], i) => {
      expectClose(`Σx² of ${numel} (${path})`, [got[i]!], [referenceSumSquares(data[i]!)], TOLERANCES.sumSquares);
    });
    expect(got[CASES.length - 1]).toBe(0);
  });

  test('bit-identical across runs and across binding-window cuts (one block per window)', async () => {
    const first = await sumSquares(ctx, data);
    const second = await sumSquares(ctx, data);
    expect([...second]).toEqual([...first]);
    const windowed = await openGpu({ maxBindingBytes: 16_384 });
    try {
      expect([...(await sumSquares(windowed, data))]).toEqual([...first]);
    } finally {
      windowed.close();
    }
  });

  test('NaN, inf and f32 overflow are reported by name', async () => {
    const finite = values(100, 1, 1);
    const withNaN = values(5000, 1, 2);
    withNaN[4321] = NaN;
    const overflow = new Float32Array(10).fill(1e20);
    const withInf = values(3, 1, 3);
    withInf[1] = -Infinity;
    const got = await sumSquares(ctx, [finite, overflow, withNaN, withInf]);
    expect(Number.isNaN(got[2])).toBe(true);
    expect(got[1]).toBe(Infinity);
    expect(got[3]).toBe(Infinity);
    expect(firstNonFinite(['finite', 'overflow', 'nan', 'inf'], got)).toBe('overflow');
    expect(firstNonFinite(['finite', 'nan'], [got[0]!, got[2]!])).toBe('nan');
    expect(firstNonFinite(['finite'], [got[0]!])).toBeNull();
  });

  test('bad arguments are refused before any GPU work', async () => {
    const small = ctx.createBuffer('test:small', 16, GPUBufferUsage.STORAGE);
    try {
      await expect(prepareGradSquares(ctx, [])).rejects.toThrow(/tensors: expected a non-empty array/);
      await expect(prepareGradSquares(ctx, [{ name: 'a', buffer: small, numel: 5 }])).rejects.toThrow(/tensors\[0\]\.buffer: expected a GPUBuffer of at least 20 bytes/);
      await expect(prepareGradSquares(ctx, [{ name: 'a', buffer: small, numel: 0 }])).rejects.toThrow(/tensors\[0\]\.numel: expected a positive integer/);
      await expect(prepareGradSquares(ctx, [{ name: 'a', buffer: small, numel: 4 }, { name: 'a', buffer: small, numel: 4 }])).rejects.toThrow(/tensors\[1\]\.name: expected a name not used/);
    } finally {
      small.destroy();
    }
  });
});

describe('global norm helpers (host)', () => {
  test('globalNorm is the float64 square root of the sum', () => {
    expect(globalNorm([9, 16])).toBe(5);
    expect(globalNorm([0])).toBe(0);
  });

  test("clipScale is clip_grad_norm_'s clamped coefficient", () => {
    expect(clipScale(10, 1)).toBe(1 / (10 + 1e-6));
    expect(clipScale(0.5, 1)).toBe(1);
    expect(clipScale(1, 1)).toBe(1 / (1 + 1e-6));
    expect(clipScale(0, 1)).toBe(1);
    expect(() => clipScale(NaN, 1)).toThrow(/totalNorm: expected a finite number ≥ 0 \(see firstNonFinite\), got NaN/);
    expect(() => clipScale(1, 0)).toThrow(/maxNorm: expected a finite number > 0, got 0/);
  });

  test('firstNonFinite needs one sum per name', () => {
    expect(() => firstNonFinite(['a', 'b'], [1])).toThrow(/sums: expected 2 values/);
  });
});
