/** kernels/swiglu.wgsl against the float64 reference, on sizes that are not multiples of its workgroup, with extreme gates. */
import type { GpuContext } from '../../src/gpu/context.js';
import { prepareSwiglu, referenceSwiglu, swiglu } from '../../src/ops/swiglu.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';
import { SWIGLU_CASES, SWIGLU_EXTREMES } from './shared-cases.js';

describeGpu('swiglu (WebGPU)', () => {
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
    for (let i = 0; i < SWIGLU_EXTREMES.length && i < n; i++) gate[(i * 7919) % n] = SWIGLU_EXTREMES[i]!;
    const got = await swiglu(ctx, gate, up, { rows, intermediate }, { poison: true });
    expectClose(`swiglu ${rows}x${intermediate}`, got, referenceSwiglu(gate, up), TOLERANCES.swiglu);
  });

  test('silu of extreme gates is finite: x for large x, (−)0 for very negative x', async () => {
    const gate = Float32Array.from(SWIGLU_EXTREMES);
    const got = await swiglu(ctx, gate, new Float32Array(gate.length).fill(1), { rows: 1, intermediate: gate.length }, { poison: true });
    expect(got.every(Number.isFinite)).toBe(true);
    expect(got[0]).toBe(Math.fround(1e30));
    expect(Math.abs(got[1]!)).toBe(0);
    expect(got[2]).toBe(1e4);
    expect(Math.abs(got[3]!)).toBe(0);
  });

  test('bad arguments are refused before any GPU work', async () => {
    const a = new Float32Array(6);
    await expect(swiglu(ctx, a, a, { rows: 2, intermediate: 0 })).rejects.toThrow(/intermediate: expected a positive integer, got 0/);
    await expect(swiglu(ctx, new Float32Array(5), a, { rows: 2, intermediate: 3 })).rejects.toThrow(/gate: expected Float32Array of 6 elements/);
    await expect(swiglu(ctx, a, new Float64Array(6) as unknown as Float32Array, { rows: 2, intermediate: 3 })).rejects.toThrow(/up: expected Float32Array of 6 elements .*got Float64Array/);
    const small = ctx.createBuffer('test:small', 16, GPUBufferUsage.STORAGE);
    try {
      await expect(prepareSwiglu(ctx, { rows: 2, intermediate: 3 }, small, small, small)).rejects.toThrow(/gate: expected a GPUBuffer of at least 24 bytes/);
    } finally {
      small.destroy();
    }
  });
});
