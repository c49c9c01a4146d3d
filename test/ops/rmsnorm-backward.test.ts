/**
 * kernels/rmsnorm_backward.wgsl against the float64 reference (itself checked against finite
 * differences of the forward reference), on shapes that are not multiples of its row groups,
 * workgroup or weight columns; gradients are added to random initial values.
 */
import type { GpuContext } from '../../src/gpu/context.js';
import { referenceRmsNorm } from '../../src/ops/rmsnorm.js';
import { prepareRmsNormBackward, referenceRmsNormBackward, rmsNormBackward, type RmsNormBackwardShape } from '../../src/ops/rmsnorm-backward.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

type Case = [rows: number, hidden: number, path: string];

const CASES: Case[] = [
  [1, 1, 'one element: 15 lanes add zero to the row\'s tree; one row in the only group; one weight lane busy'],
  [3, 7, 'fewer columns than lanes; odd hidden'],
  [17, 257, 'one row past a group of 16: a second group of one row; 257 columns over 16 lanes, lane 0 strides 17 times'],
  [150, 896, "Qwen2.5-0.5B's hidden size: 16 lanes of 56 columns, all 16 rows reduced at once; 10 groups, the last of 6 rows, so all 8 weight lanes sum partials; 28 weight workgroups"],
  [1, 4099, 'one large row: 128 lanes (rows reduced 2 at a time, 8 rounds), a ragged last stride'],
  [300, 33, '19 groups: every weight lane sums 2 or 3 partials; 33 columns: a second weight workgroup of one column'],
  [1, 65_535 * 32 + 5, 'more weight workgroups (32 columns each) than one grid dimension holds: a 2-D grid; 256 lanes of 8192 columns, one row a round'],
];

/**
 * x rows of N(0, 1)·scale (scales from 1e-3 to 1e3, the first row zero: dx grows as 1/scale),
 * dy ~ N(0, 1), w ~ 1 + N(0, 0.1), and random initial gradients.
 */
function inputs(rows: number, hidden: number) {
  const rand = mulberry32(rows * 131 + hidden);
  const x = new Float32Array(rows * hidden);
  const dy = new Float32Array(rows * hidden);
  for (let r = 0; r < rows; r++) {
    const scale = r === 0 && rows > 1 ? 0 : 10 ** (6 * rand() - 3);
    for (let i = 0; i < hidden; i++) {
      x[r * hidden + i] = scale * gaussian(rand);
      dy[r * hidden + i] = gaussian(rand);
    }
  }
  const weight = Float32Array.from({ length: hidden }, () => 1 + 0.1 * gaussian(rand));
  const dx = Float32Array.from({ length: rows * hidden }, () => gaussian(rand));
  const dWeight = Float32Array.from({ length: hidden }, () => gaussian(rand));
  return { x, dy, weight, init: { dx, dWeight } };
}

/** init + gradient, in float64. */
function plus(init: Float32Array, gradient: Float64Array): Float64Array {
  return Float64Array.from(gradient, (g, i) => init[i]! + g);
}

describe('referenceRmsNormBackward', () => {
  test.each([
    [1, 1, 1e-6],
    [3, 5, 1e-6],
    [2, 7, 0.5],
  ])('matches central finite differences of referenceRmsNorm on (%i × %i), eps %d', (rows, hidden, eps) => {
    const rand = mulberry32(rows * 7 + hidden);
    const shape = { rows, hidden, eps };
    const x = Float64Array.from({ length: rows * hidden }, () => gaussian(rand));
    x.fill(0, 0, hidden > 1 && rows > 1 ? hidden : 0); // a zero row where there are several: only eps keeps rstd finite
    const weight = Float64Array.from({ length: hidden }, () => 1 + 0.3 * gaussian(rand));
    const dy = Float64Array.from({ length: rows * hidden }, () => gaussian(rand));
    const loss = (xs: Float64Array, ws: Float64Array): number => referenceRmsNorm(xs, ws, shape).reduce((s, y, i) => s + y * dy[i]!, 0);
    const h = 1e-5;
    const numeric = (v: Float64Array, f: () => number): Float64Array => Float64Array.from(v, (value, k) => {
      v[k] = value + h;
      const up = f();
      v[k] = value - h;
      const down = f();
      v[k] = value;
      return (up - down) / (2 * h);
    });
    const want = referenceRmsNormBackward(x, weight, dy, shape);
    expectClose('dx', want.dx, numeric(x, () => loss(x, weight)), TOLERANCES.finiteDifferences);
    expectClose('dWeight', want.dWeight, numeric(weight, () => loss(x, weight)), TOLERANCES.finiteDifferences);
  });
});

describeGpu('rmsnorm backward (WebGPU)', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  test.each(CASES)('(%i × %i): %s', async (rows, hidden) => {
    const { x, dy, weight, init } = inputs(rows, hidden);
    const shape = { rows, hidden, eps: 1e-6 };
    const got = await rmsNormBackward(ctx, x, weight, dy, shape, init);
    const want = referenceRmsNormBackward(x, weight, dy, shape);
    expectClose(`dx ${rows}x${hidden}`, got.dx, plus(init.dx, want.dx), TOLERANCES.rmsNormBackward);
    expectClose(`dWeight ${rows}x${hidden}`, got.dWeight, plus(init.dWeight, want.dWeight), TOLERANCES.rmsNormBackward);
  });

  test('a zero row gives dx = dy·w/sqrt(eps) and no weight gradient; the result is bit-identical run to run', async () => {
    const shape: RmsNormBackwardShape = { rows: 2, hidden: 3, eps: 0.25 };
    const x = Float32Array.from([0, 0, 0, 1, -2, 3]);
    const weight = Float32Array.from([1, 2, 3]);
    const dy = Float32Array.from([1, 1, -1, 0, 0, 0]);
    const first = await rmsNormBackward(ctx, x, weight, dy, shape);
    expectClose('dx with a zero row', first.dx, [2, 4, -6, 0, 0, 0], TOLERANCES.rmsNormBackward);
    expect([...first.dx.subarray(3)]).toEqual([0, 0, 0]);
    expect([...first.dWeight]).toEqual([0, 0, 0]);
    const { x: bx, dy: bdy, weight: bw } = inputs(40, 896);
    const big = { rows: 40, hidden: 896, eps: 1e-6 };
    const [a, b] = [await rmsNormBackward(ctx, bx, bw, bdy, big), await rmsNormBackward(ctx, bx, bw, bdy, big)];
    expect(Buffer.from(a.dWeight.buffer).equals(Buffer.from(b.dWeight.buffer))).toBe(true);
    expect(Buffer.from(a.dx.buffer).equals(Buffer.from(b.dx.buffer))).toBe(true);
  });

  test('bad arguments are refused before any GPU work', async () => {
    const m = new Float32Array(6);
    const w = new Float32Array(3);
    const shape = { rows: 2, hidden: 3, eps: 1e-6 };
    await expect(rmsNormBackward(ctx, m, w, m, { ...shape, eps: NaN })).rejects.toThrow(/eps: expected a finite number ≥ 0, got NaN/);
    await expect(rmsNormBackward(ctx, m, w, m, { ...shape, hidden: 1.5 })).rejects.toThrow(/hidden: expected a positive integer, got 1.5/);
    await expect(rmsNormBackward(ctx, new Float32Array(5), w, m, shape)).rejects.toThrow(/x: expected Float32Array of 6 elements/);
    await expect(rmsNormBackward(ctx, m, new Uint16Array(3) as unknown as Float32Array, m, shape)).rejects.toThrow(/weight: expected Float32Array of 3 elements .*got Uint16Array/);
    await expect(rmsNormBackward(ctx, m, w, new Float32Array(7), shape)).rejects.toThrow(/dy: expected Float32Array of 6 elements/);
    await expect(rmsNormBackward(ctx, m, w, m, shape, { dx: new Float32Array(3) })).rejects.toThrow(/init.dx: expected Float32Array of 6 elements/);
    await expect(rmsNormBackward(ctx, m, w, m, shape, { dWeight: new Float32Array(6) })).rejects.toThrow(/init.dWeight: expected Float32Array of 3 elements/);
    const small = ctx.createBuffer('test:small', 16, GPUBufferUsage.STORAGE);
    const big = ctx.createBuffer('test:big', 32, GPUBufferUsage.STORAGE);
    try {
      const buffers = { x: big, weight: small, dy: big, dx: big, dWeight: small };
      await expect(prepareRmsNormBackward(ctx, shape, { ...buffers, dx: small })).rejects.toThrow(/dx: expected a GPUBuffer of at least 24 bytes/);
      await expect(prepareRmsNormBackward(ctx, shape, { ...buffers, dWeight: null as unknown as GPUBuffer })).rejects.toThrow(/dWeight: expected a GPUBuffer, got null/);
    } finally {
      small.destroy();
      big.destroy();
    }
  });
});
