/** profileDispatches: every dispatch of a recorded pass replayed and timed, grouped by kernel; the replay computes what the pass computes. */
import type { GpuContext } from '../../src/gpu/context.js';
import { profileDispatches, profileTable } from '../../src/gpu/profile.js';
import { linearPlan, prepareLinear, referenceLinear } from '../../src/ops/linear.js';
import { prepareRmsNorm } from '../../src/ops/rmsnorm.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

describeGpu('profileDispatches (WebGPU timestamps)', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  test('times each dispatch of a pass, sums them per kernel, and runs them for real', async () => {
    const [m, k, n] = [9, 300, 5];
    const x = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i));
    const w = Float32Array.from({ length: n * k }, (_, i) => Math.cos(i) / 8);
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const buffers = { x: ctx.upload('test:x', x), w: ctx.upload('test:w', w), norm: ctx.upload('test:norm', new Float32Array(k).fill(1)), h: ctx.createBuffer('test:h', m * k * 4, usage), y: ctx.createBuffer('test:y', m * n * 4, usage) };
    // Two RMSNorms and a linear split over k into partials and a reduction: 4 dispatches, 3 kernels.
    const steps = [
      await prepareRmsNorm(ctx, { rows: m, hidden: k, eps: 1e-6 }, buffers.x, buffers.norm, buffers.h),
      await prepareRmsNorm(ctx, { rows: m, hidden: k, eps: 1e-6 }, buffers.x, buffers.norm, buffers.h),
      await prepareLinear(ctx, { m, k, n }, buffers.x, buffers.w, null, buffers.y),
    ];
    try {
      ctx.writeBuffer(buffers.y, 0, new Float32Array(m * n).fill(NaN));
      const profile = await profileDispatches(ctx, 'test', (pass) => steps.forEach((s) => s.encode(pass)), { repeats: 2 });
      expect(linearPlan({ m, k, n }, ctx.maxBindingBytes).splits).toBe(2);
      expect(profile.dispatches).toBe(4);
      const byKernel = Object.fromEntries(profile.rows.map((r) => [r.kernel.split(':').slice(0, 2).join(':'), r.dispatches]));
      expect(byKernel).toEqual({ 'rmsnorm:rmsnorm_main': 2, 'linear:linear_main': 1, 'linear:linear_reduce': 1 });
      expect(profile.rows.every((r) => r.ms >= 0 && r.share >= 0)).toBe(true);
      expect(profile.rows.reduce((sum, r) => sum + r.share, 0)).toBeCloseTo(1, 6);
      expect(profile.rows.map((r) => r.ms)).toEqual([...profile.rows.map((r) => r.ms)].sort((a, b) => b - a));
      expect(profileTable(profile)).toContain('| rmsnorm:rmsnorm_main');
      expectClose('the replayed linear', new Float32Array(await ctx.read('test', buffers.y, m * n * 4)), referenceLinear(x, w, null, { m, k, n }), TOLERANCES.linear);
    } finally {
      steps.forEach((s) => s.destroy());
      Object.values(buffers).forEach((b) => b.destroy());
    }
  });

  test('bad arguments, and a pass that uses what the replay cannot reproduce, are refused by name', async () => {
    await expect(profileDispatches(ctx, 'test', null as unknown as () => void)).rejects.toThrow(/encode: expected a function recording dispatches into a pass, got null/);
    await expect(profileDispatches(ctx, 'test', () => undefined, { repeats: 0 })).rejects.toThrow(/repeats: expected a positive integer, got 0/);
    await expect(profileDispatches(ctx, 'test', (pass) => pass.dispatchWorkgroupsIndirect(null as unknown as GPUBuffer, 0))).rejects.toThrow(/encode: expected a pass of setPipeline, setBindGroup and dispatchWorkgroups calls, got a call to dispatchWorkgroupsIndirect/);
  });
});
