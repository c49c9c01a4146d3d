/**
 * kernels/linear_backward.wgsl against the float64 reference (itself checked against finite
 * differences of referenceLinear), on shapes that are not multiples of its tiles, its reduction
 * step or 4, with the weight gradient's reduction in one range or split.
 */
import type { GpuContext } from '../../src/gpu/context.js';
import { referenceLinear } from '../../src/ops/linear.js';
import { linearBackward, linearBackwardSplits, prepareLinearBackward, referenceLinearBackward, type LinearBackwardShape } from '../../src/ops/linear-backward.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

type Case = [m: number, k: number, n: number, hasBias: boolean, accumulateDx: boolean, splits: number, path: string];

const CASES: Case[] = [
  [1, 1, 1, true, false, 1, 'one element: every tile edge masked, rows of one element fetched singly'],
  [3, 5, 7, false, true, 1, 'smaller than a tile and a reduction step; no bias (placeholder bound); dx added to'],
  [65, 17, 33, true, false, 1, 'one row past a tile in m, one past a reduction step in n (dx) and m (dW); ragged k'],
  [130, 70, 257, true, true, 1, 'three row tiles, ragged k, n one past 16 reduction steps and 4 tiles of dW'],
  [1, 64, 130, true, false, 1, 'one row: dW an outer product, 15 masked rows per step; k a multiple of 4 (16-byte x and W loads), n not'],
  [9, 30, 68, true, true, 1, 'n a multiple of 4 (16-byte dy loads), k not; dx added to'],
  [300, 200, 100, true, false, 1, 'n and k multiples of 4: every load 16 bytes; ragged tiles in all three dimensions'],
  [600, 64, 20, true, true, 2, 'dW split in two row ranges (partials, then the fixed-order sum), 16-byte loads'],
  [1000, 70, 9, true, false, 3, 'dW split in three, the last range not a multiple of the reduction step; unaligned'],
  [700, 13, 130, false, false, 2, 'dW split in two without a bias: the sum binds placeholders'],
];

/** x ~ N(0, 1) with an outlier, W ~ N(0, 1/k), dy ~ N(0, 1) with an outlier; gradient buffers start at N(0, 1). */
function inputs(m: number, k: number, n: number) {
  const rand = mulberry32(m * 7919 + k * 31 + n);
  const normal = (length: number, scale = 1) => Float32Array.from({ length }, () => scale * gaussian(rand));
  const x = normal(m * k);
  x[0] = 40;
  const dy = normal(m * n);
  dy[dy.length - 1] = -25;
  return { x, weight: normal(n * k, 1 / Math.sqrt(k)), dy, init: { dx: normal(m * k), dWeight: normal(n * k), dBias: normal(n) } };
}

const plus = (a: ArrayLike<number>, b: ArrayLike<number>): Float64Array => Float64Array.from(a, (v, i) => v + b[i]!);

describe('referenceLinearBackward', () => {
  test('matches central finite differences of referenceLinear on an odd shape', () => {
    const shape: LinearBackwardShape = { m: 3, k: 5, n: 4, hasBias: true };
    const { m, k, n } = shape;
    const rand = mulberry32(42);
    const normal = (length: number) => Float64Array.from({ length }, () => gaussian(rand));
    const [x, weight, bias, g] = [normal(m * k), normal(n * k), normal(n), normal(m * n)];
    // L = Σ g ⊙ y, so dL/dy = g.
    const loss = () => referenceLinear(x, weight, bias, shape).reduce((s, y, i) => s + g[i]! * y, 0);
    const h = 1e-5;
    const numeric = (values: Float64Array) => values.map((v, i) => {
      values[i] = v + h;
      const up = loss();
      values[i] = v - h;
      const down = loss();
      values[i] = v;
      return (up - down) / (2 * h);
    });
    const want = referenceLinearBackward(x, weight, g, shape);
    expectClose('dx', want.dx, numeric(x), TOLERANCES.finiteDifferences);
    expectClose('dWeight', want.dWeight, numeric(weight), TOLERANCES.finiteDifferences);
    expectClose('dBias', want.dBias!, numeric(bias), TOLERANCES.finiteDifferences);
  });
});

describeGpu('linear backward (WebGPU: dx = dy · W, dW += dyᵀ · x, db += Σ dy)', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  test.each(CASES)('m %i, k %i, n %i, bias %s, accumulate dx %s, %i range(s): %s', async (m, k, n, hasBias, accumulateDx, splits) => {
    const shape = { m, k, n, hasBias };
    expect(linearBackwardSplits(shape, ctx.maxBindingBytes).splits).toBe(splits);
    const { x, weight, dy, init } = inputs(m, k, n);
    const start = { dx: accumulateDx ? init.dx : undefined, dWeight: init.dWeight, dBias: hasBias ? init.dBias : undefined };
    const got = await linearBackward(ctx, x, weight, dy, shape, start, { accumulateDx, poison: true });
    const want = referenceLinearBackward(x, weight, dy, shape);
    const what = `linear backward ${m}x${k}x${n}`;
    expectClose(`${what} dx`, got.dx, accumulateDx ? plus(init.dx, want.dx) : want.dx, TOLERANCES.linearBackward);
    expectClose(`${what} dWeight`, got.dWeight, plus(init.dWeight, want.dWeight), TOLERANCES.linearBackward);
    if (hasBias) expectClose(`${what} dBias`, got.dBias!, plus(init.dBias, want.dBias!), TOLERANCES.linearBackward);
    else expect(got.dBias).toBeNull();
  });

  test('bit-identical when repeated (split reduction)', async () => {
    const shape = { m: 1000, k: 70, n: 9, hasBias: true };
    const { x, weight, dy, init } = inputs(shape.m, shape.k, shape.n);
    const first = await linearBackward(ctx, x, weight, dy, shape, init, { accumulateDx: true });
    const second = await linearBackward(ctx, x, weight, dy, shape, init, { accumulateDx: true });
    for (const key of ['dx', 'dWeight', 'dBias'] as const) {
      expect(new Uint32Array(second[key]!.buffer)).toEqual(new Uint32Array(first[key]!.buffer));
    }
  });

  test('without dx, one preparation encoded twice adds the parameter gradients twice', async () => {
    const shape = { m: 600, k: 33, n: 20, hasBias: true };
    expect(linearBackwardSplits(shape, ctx.maxBindingBytes).splits).toBe(2);
    const { x, weight, dy, init } = inputs(shape.m, shape.k, shape.n);
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
    const buffers = {
      x: ctx.upload('test:x', x), weight: ctx.upload('test:weight', weight), dy: ctx.upload('test:dy', dy), dx: null,
      dWeight: ctx.upload('test:dweight', init.dWeight, usage), dBias: ctx.upload('test:dbias', init.dBias, usage),
    };
    try {
      const prepared = await prepareLinearBackward(ctx, shape, buffers);
      try {
        await ctx.runPass('test', (pass) => prepared.encode(pass));
        await ctx.runPass('test', (pass) => prepared.encode(pass));
      } finally {
        prepared.destroy();
      }
      const want = referenceLinearBackward(x, weight, dy, shape);
      const twice = (v: Float64Array) => v.map((g) => 2 * g);
      const dWeight = new Float32Array(await ctx.read('test', buffers.dWeight, init.dWeight.byteLength));
      const dBias = new Float32Array(await ctx.read('test', buffers.dBias, init.dBias.byteLength));
      expectClose('dWeight', dWeight, plus(init.dWeight, twice(want.dWeight)), TOLERANCES.linearBackward);
      expectClose('dBias', dBias, plus(init.dBias, twice(want.dBias!)), TOLERANCES.linearBackward);
    } finally {
      for (const buffer of [buffers.x, buffers.weight, buffers.dy, buffers.dWeight, buffers.dBias]) buffer.destroy();
    }
  });

  test('bad arguments are refused before any GPU work', async () => {
    const [x, weight, dy] = [new Float32Array(6), new Float32Array(6), new Float32Array(4)];
    const shape = { m: 2, k: 3, n: 2, hasBias: false };
    await expect(linearBackward(ctx, x, weight, dy, { ...shape, n: 0 })).rejects.toThrow(/n: expected a positive integer, got 0/);
    await expect(linearBackward(ctx, x, weight, dy, { m: 2, k: 3, n: 2 } as LinearBackwardShape)).rejects.toThrow(/hasBias: expected a boolean, got undefined/);
    await expect(linearBackward(ctx, new Float32Array(5), weight, dy, shape)).rejects.toThrow(/x: expected Float32Array of 6 elements \(m·k\), got Float32Array of length 5/);
    await expect(linearBackward(ctx, x, new Float64Array(6) as unknown as Float32Array, dy, shape)).rejects.toThrow(/weight: expected Float32Array of 6 elements \(n·k\), got Float64Array/);
    await expect(linearBackward(ctx, x, weight, new Float32Array(6), shape)).rejects.toThrow(/dy: expected Float32Array of 4 elements \(m·n\)/);
    await expect(linearBackward(ctx, x, weight, dy, shape, { dWeight: new Float32Array(5) })).rejects.toThrow(/init.dWeight: expected Float32Array of 6 elements/);
    await expect(linearBackward(ctx, x, weight, dy, shape, { dBias: new Float32Array(2) })).rejects.toThrow(/init.dBias: expected undefined \(shape.hasBias is false\)/);
    await expect(linearBackward(ctx, x, weight, dy, { ...shape, hasBias: true }, { dBias: new Float32Array(3) })).rejects.toThrow(/init.dBias: expected Float32Array of 2 elements/);
    await expect(linearBackward(ctx, x, weight, dy, shape, {}, { accumulateDx: 1 as unknown as boolean })).rejects.toThrow(/accumulateDx: expected a boolean, got 1/);

    const made: GPUBuffer[] = [];
    const make = (label: string, bytes: number) => {
      made.push(ctx.createBuffer(`test:${label}`, bytes, GPUBufferUsage.STORAGE));
      return made[made.length - 1]!;
    };
    const small = make('small', 16);
    const [x9, w9, dy1, dw9, db1] = [make('x9', 36), make('w9', 36), make('dy1', 4), make('dw9', 36), make('db1', 4)];
    const one = { m: 1, k: 9, n: 1, hasBias: true };
    const good = { x: x9, weight: w9, dy: dy1, dx: null, dWeight: dw9, dBias: db1 };
    try {
      await expect(prepareLinearBackward(ctx, one, { ...good, x: small })).rejects.toThrow(/x: expected a GPUBuffer of at least 36 bytes, got 16 bytes/);
      await expect(prepareLinearBackward(ctx, one, { ...good, weight: small })).rejects.toThrow(/weight: expected a GPUBuffer of at least 36 bytes/);
      await expect(prepareLinearBackward(ctx, one, { ...good, dx: small })).rejects.toThrow(/dx: expected a GPUBuffer of at least 36 bytes/);
      await expect(prepareLinearBackward(ctx, one, { ...good, dWeight: small })).rejects.toThrow(/dWeight: expected a GPUBuffer of at least 36 bytes/);
      await expect(prepareLinearBackward(ctx, { ...one, n: 5 }, { ...good, dy: make('dy5', 20), weight: make('w45', 180), dWeight: make('dw45', 180) }))
        .rejects.toThrow(/dBias: expected a GPUBuffer of at least 20 bytes, got 16 bytes/);
      await expect(prepareLinearBackward(ctx, one, { ...good, dBias: null })).rejects.toThrow(/dBias: expected a GPUBuffer \(shape.hasBias is true\), got null/);
      await expect(prepareLinearBackward(ctx, { ...one, hasBias: false }, good)).rejects.toThrow(/dBias: expected null \(shape.hasBias is false\)/);
      await expect(prepareLinearBackward(ctx, one, { ...good, dx: x9 })).rejects.toThrow(/dx: expected a GPUBuffer distinct from x, got the same buffer as x/);
      await expect(prepareLinearBackward(ctx, one, { ...good, dWeight: w9 })).rejects.toThrow(/dWeight: expected a GPUBuffer distinct from weight/);
      await expect(prepareLinearBackward(ctx, one, { ...good, dBias: dy1 })).rejects.toThrow(/dBias: expected a GPUBuffer distinct from dy/);
      await expect(prepareLinearBackward(ctx, one, { ...good, dx: make('dx9', 36), dBias: dw9 })).rejects.toThrow(/dBias: expected a GPUBuffer distinct from dWeight/);
      await expect(prepareLinearBackward(ctx, one, good, { accumulateDx: 'no' as unknown as boolean })).rejects.toThrow(/accumulateDx: expected a boolean, got "no"/);
    } finally {
      for (const buffer of made) buffer.destroy();
    }
  });
});
