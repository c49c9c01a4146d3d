/**
 * kernels/swiglu_backward.wgsl against the float64 reference (itself checked against finite
 * differences of the forward reference), on sizes that are not multiples of its workgroup, with
 * extreme gates; outputs are poisoned first, so an element never written fails.
 */
import type { GpuContext } from '../../src/gpu/context.js';
import { referenceSwiglu } from '../../src/ops/swiglu.js';
import { prepareSwigluBackward, referenceSwigluBackward, swigluBackward } from '../../src/ops/swiglu-backward.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';
import { SWIGLU_CASES, SWIGLU_EXTREMES } from './shared-cases.js';

describe('referenceSwigluBackward', () => {
  test('matches central finite differences of referenceSwiglu, across silu\'s curve', () => {
    const rand = mulberry32(3);
    const gate = Float64Array.from([-30, -6, -1.5, -0.01, 0, 0.01, 1.5, 6, 30, ...Array.from({ length: 8 }, () => 3 * gaussian(rand))]);
    const up = Float64Array.from(gate, () => gaussian(rand));
    const dAct = Float64Array.from(gate, () => gaussian(rand));
    const loss = (): number => referenceSwiglu(gate, up).reduce((s, y, i) => s + y * dAct[i]!, 0);
    const h = 1e-5;
    const numeric = (v: Float64Array): Float64Array => Float64Array.from(v, (value, k) => {
      v[k] = value + h;
      const high = loss();
      v[k] = value - h;
      const low = loss();
      v[k] = value;
      return (high - low) / (2 * h);
    });
    const want = referenceSwigluBackward(gate, up, dAct);
    expectClose('dGate', want.dGate, numeric(gate), TOLERANCES.finiteDifferences);
    expectClose('dUp', want.dUp, numeric(up), TOLERANCES.finiteDifferences);
  });
});

describeGpu('swiglu backward (WebGPU)', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  test.each(SWIGLU_CASES)('(%i × %i): %s', async (rows, intermediate) => {
    const n = rows * intermediate;
    const rand = mulberry32(rows * 101 + intermediate);
    const gate = Float32Array.from({ length: n }, () => 4 * gaussian(rand));
    const up = Float32Array.from({ length: n }, () => gaussian(rand));
    const dAct = Float32Array.from({ length: n }, () => gaussian(rand));
    for (let i = 0; i < SWIGLU_EXTREMES.length && i < n; i++) gate[(i * 7919) % n] = SWIGLU_EXTREMES[i]!;
    const got = await swigluBackward(ctx, gate, up, dAct, { rows, intermediate }, { poison: true });
    const want = referenceSwigluBackward(gate, up, dAct);
    expectClose(`dGate ${rows}x${intermediate}`, got.dGate, want.dGate, TOLERANCES.swigluBackward);
    expectClose(`dUp ${rows}x${intermediate}`, got.dUp, want.dUp, TOLERANCES.swigluBackward);
  });

  test('extreme gates give finite gradients: silu\' = 1 and dUp = dAct·g for large g, 0 for very negative g', async () => {
    const gate = Float32Array.from(SWIGLU_EXTREMES);
    const ones = new Float32Array(gate.length).fill(1);
    const got = await swigluBackward(ctx, gate, ones, ones, { rows: 1, intermediate: gate.length }, { poison: true });
    expect(got.dGate.every(Number.isFinite) && got.dUp.every(Number.isFinite)).toBe(true);
    expect([got.dGate[0], got.dGate[2], Math.abs(got.dGate[1]!), Math.abs(got.dGate[3]!)]).toEqual([1, 1, 0, 0]);
    expect([got.dUp[0], got.dUp[2], Math.abs(got.dUp[1]!), Math.abs(got.dUp[3]!)]).toEqual([Math.fround(1e30), 1e4, 0, 0]);
    expect([got.dGate[8], got.dUp[8]]).toEqual([0.5, 0]);
  });

  test('bad arguments are refused before any GPU work', async () => {
    const a = new Float32Array(6);
    await expect(swigluBackward(ctx, a, a, a, { rows: 0, intermediate: 3 })).rejects.toThrow(/rows: expected a positive integer, got 0/);
    await expect(swigluBackward(ctx, new Float32Array(5), a, a, { rows: 2, intermediate: 3 })).rejects.toThrow(/gate: expected Float32Array of 6 elements/);
    await expect(swigluBackward(ctx, a, a, new Float64Array(6) as unknown as Float32Array, { rows: 2, intermediate: 3 })).rejects.toThrow(/dAct: expected Float32Array of 6 elements .*got Float64Array/);
    const small = ctx.createBuffer('test:small', 16, GPUBufferUsage.STORAGE);
    const big = ctx.createBuffer('test:big', 32, GPUBufferUsage.STORAGE);
    try {
      const buffers = { gate: big, up: big, dAct: big, dGate: big, dUp: big };
      await expect(prepareSwigluBackward(ctx, { rows: 2, intermediate: 3 }, { ...buffers, dUp: small })).rejects.toThrow(/dUp: expected a GPUBuffer of at least 24 bytes/);
      await expect(prepareSwigluBackward(ctx, { rows: 2, intermediate: 3 }, null as unknown as typeof buffers)).rejects.toThrow(/buffers: expected an object/);
    } finally {
      small.destroy();
      big.destroy();
    }
  });
});
