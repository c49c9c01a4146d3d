/**
 * kernels/adamw.wgsl against the float64 reference (PyTorch's AdamW formulas): one and three steps
 * of several parameters at once, with and without weight decay, clipped gradients, both branches
 * of torch.lerp, parameters cut into binding windows; the state round trip; argument checks.
 */
import type { GpuContext } from '../../src/gpu/context.js';
import { AdamW, referenceAdamW, type AdamWOptions, type AdamWStep, type OptimParam } from '../../src/optim/adamw.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

type Case = [numel: number, decay: boolean, path: string];

const CASES: Case[] = [
  [1, true, 'one element: 255 idle threads'],
  [255, false, 'one short of the workgroup, no decay'],
  [257, true, 'one past the workgroup: a ragged second workgroup'],
  [1003, false, 'not a multiple of 4'],
  [2500, true, 'three binding windows (of 1024) in the windowed context, the last ragged'],
];

type OptionCase = [options: AdamWOptions, path: string];

const OPTION_CASES: OptionCase[] = [
  [{ weightDecay: 0.1 }, 'defaults (lerp weight 0.1 < 0.5) with weight decay'],
  [{ beta1: 0.3, beta2: 0.95, eps: 1e-6 }, "β1 < 0.5: torch.lerp's other branch; no weight decay"],
];

/** lr per step and the clipping factor: warmup-like changes, one step clipped hard. */
const STEPS: Required<AdamWStep>[] = [
  { step: 1, lr: 0.05, gradScale: 1 },
  { step: 2, lr: 0.03, gradScale: 0.37 },
  { step: 3, lr: 0.01, gradScale: 2.5 },
];

/** p ~ N(0, 1); per step g ~ N(0, 1) with zeros, tiny (1e-6) and large (30) entries. */
function tensors(numel: number, seed: number, steps: number): { param: Float32Array; grads: Float32Array[] } {
  const rand = mulberry32(seed);
  const param = Float32Array.from({ length: numel }, () => gaussian(rand));
  const grads = Array.from({ length: steps }, () => Float32Array.from({ length: numel }, () => {
    const u = rand();
    return u < 0.02 ? 0 : u < 0.04 ? 1e-6 * gaussian(rand) : u < 0.05 ? 30 * gaussian(rand) : gaussian(rand);
  }));
  return { param, grads };
}

interface Setup {
  optimizer: AdamW;
  params: OptimParam[];
  destroy(): void;
}

async function setup(ctx: GpuContext, initial: Float32Array[], options: AdamWOptions): Promise<Setup> {
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const params: OptimParam[] = CASES.map(([numel, decay], i) => ({
    name: `layer${i}.weight`, numel, decay,
    param: ctx.upload(`test:param${i}`, initial[i]!, usage),
    grad: ctx.createBuffer(`test:grad${i}`, numel * 4, usage),
  }));
  const optimizer = await AdamW.create(ctx, params, options);
  return {
    optimizer, params,
    destroy() {
      optimizer.destroy();
      for (const p of params) {
        p.param.destroy();
        p.grad.destroy();
      }
    },
  };
}

async function readParams(ctx: GpuContext, params: OptimParam[]): Promise<Float32Array[]> {
  return Promise.all(params.map(async (p) => new Float32Array(await ctx.read('test:param', p.param, p.numel * 4))));
}

describeGpu('AdamW (WebGPU)', () => {
  let ctx: GpuContext;
  let windowed: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
    windowed = await openGpu({ maxBindingBytes: 4096 });
  });
  afterAll(() => {
    ctx.close();
    windowed.close();
  });

  const contexts = (): [string, GpuContext][] => [['whole bindings', ctx], ['1024-element windows', windowed]];

  for (const [options, path] of OPTION_CASES) {
    for (const steps of [1, 3]) {
      test(`${steps} step(s), ${path}`, async () => {
        const data = CASES.map(([numel], i) => tensors(numel, 100 * i + 7, steps));
        for (const [where, context] of contexts()) {
          const run = await setup(context, data.map((d) => d.param), options);
          try {
            await run.optimizer.prepare();
            for (let s = 0; s < steps; s++) {
              run.params.forEach((p, i) => context.writeBuffer(p.grad, 0, data[i]!.grads[s]!));
              // The trainer's path (encodeStep into its own pass) and the convenience step() alternate.
              if (s % 2 === 0) await context.runPass('test:adamw', (pass) => run.optimizer.encodeStep(pass, STEPS[s]!));
              else await run.optimizer.step(STEPS[s]!);
            }
            const got = await readParams(context, run.params);
            const state = await run.optimizer.state();
            CASES.forEach(([numel, decay, casePath], i) => {
              const p = Float64Array.from(data[i]!.param);
              const m = new Float64Array(numel);
              const v = new Float64Array(numel);
              for (let s = 0; s < steps; s++) referenceAdamW(p, m, v, data[i]!.grads[s]!, STEPS[s]!, options, decay);
              const what = `${where}, ${casePath}`;
              expectClose(`param (${what})`, got[i]!, p, TOLERANCES.adamwParams);
              expectClose(`exp_avg (${what})`, state[`layer${i}.weight`]!.m, m, TOLERANCES.adamwMoments);
              expectClose(`exp_avg_sq (${what})`, state[`layer${i}.weight`]!.v, v, TOLERANCES.adamwMoments);
            });
          } finally {
            run.destroy();
          }
        }
      });
    }
  }

  test('state() → loadState() resumes bit-identically', async () => {
    const data = CASES.map(([numel], i) => tensors(numel, 31 * i + 5, 3));
    const options = { weightDecay: 0.05 };
    const straight = await setup(ctx, data.map((d) => d.param), options);
    try {
      for (let s = 0; s < 3; s++) {
        straight.params.forEach((p, i) => ctx.writeBuffer(p.grad, 0, data[i]!.grads[s]!));
        await straight.optimizer.step(STEPS[s]!);
        if (s !== 1) continue;
        // Resume after step 2 from copied weights and state, as from a checkpoint.
        const resumed = await setup(ctx, await readParams(ctx, straight.params), options);
        try {
          resumed.optimizer.loadState(await straight.optimizer.state());
          resumed.params.forEach((p, i) => ctx.writeBuffer(p.grad, 0, data[i]!.grads[2]!));
          await resumed.optimizer.step(STEPS[2]!);
          straight.params.forEach((p, i) => ctx.writeBuffer(p.grad, 0, data[i]!.grads[2]!));
          await straight.optimizer.step(STEPS[2]!);
          const bits = (arrays: Float32Array[]) => arrays.map((a) => [...new Uint32Array(a.buffer, a.byteOffset, a.length)]);
          expect(bits(await readParams(ctx, resumed.params))).toEqual(bits(await readParams(ctx, straight.params)));
          const [a, b] = [await resumed.optimizer.state(), await straight.optimizer.state()];
          for (const name of Object.keys(b)) {
            expect(bits([a[name]!.m, a[name]!.v])).toEqual(bits([b[name]!.m, b[name]!.v]));
          }
        } finally {
          resumed.destroy();
        }
        return;
      }
    } finally {
      straight.destroy();
    }
  });

  test('bad arguments are refused before any GPU work', async () => {
    const data = CASES.map(([numel], i) => tensors(numel, i, 1));
    const run = await setup(ctx, data.map((d) => d.param), {});
    try {
      const [first] = run.params as [OptimParam];
      await expect(AdamW.create(ctx, [{ ...first, numel: first.numel + 4 }])).rejects.toThrow(/params\[0\]\.param: expected a GPUBuffer of at least 20 bytes/);
      await expect(AdamW.create(ctx, [{ ...first, grad: first.param }])).rejects.toThrow(/params\[0\]\.grad: expected a buffer other than the parameter/);
      await expect(AdamW.create(ctx, [first, { ...first, name: 'other' }])).rejects.toThrow(/params\[1\]\.param: expected a buffer no earlier parameter uses/);
      await expect(AdamW.create(ctx, [first], { beta2: 1 })).rejects.toThrow(/beta2: expected a number in \[0, 1\), got 1/);
      await expect(AdamW.create(ctx, [first], { weightDecay: -0.1 })).rejects.toThrow(/weightDecay: expected a finite number ≥ 0, got -0.1/);
      await expect(AdamW.create(ctx, [{ ...first, decay: 'yes' as unknown as boolean }])).rejects.toThrow(/params\[0\]\.decay: expected true or false/);
      await run.optimizer.prepare();
      await expect(run.optimizer.step({ step: 0, lr: 0.1 })).rejects.toThrow(/step: expected a positive integer \(1 for the first update\), got 0/);
      await expect(run.optimizer.step({ step: 1, lr: NaN })).rejects.toThrow(/lr: expected a finite number ≥ 0, got NaN/);
      await expect(run.optimizer.step({ step: 1, lr: 0.1, gradScale: Infinity })).rejects.toThrow(/gradScale: expected a finite number ≥ 0, got Infinity/);
      const state = await run.optimizer.state();
      expect(() => run.optimizer.loadState({ ...state, stray: state['layer0.weight']! })).toThrow(/state: expected only names of this optimiser's parameters, got "stray"/);
      expect(() => run.optimizer.loadState({ ...state, 'layer1.weight': { m: new Float32Array(3), v: new Float32Array(255) } })).toThrow(/state\["layer1.weight"\]\.m: expected a Float32Array of 255 elements/);
    } finally {
      run.destroy();
    }
    expect(() => run.optimizer.encodeStep({} as GPUComputePassEncoder, STEPS[0]!)).toThrow(/the optimiser was destroyed/);
  });

  test('encodeStep before prepare() resolves says so', async () => {
    const data = CASES.map(([numel], i) => tensors(numel, i, 1));
    const run = await setup(ctx, data.map((d) => d.param), {});
    try {
      expect(() => run.optimizer.encodeStep({} as GPUComputePassEncoder, STEPS[0]!)).toThrow(/call it after `await optimizer.prepare\(\)` resolved/);
    } finally {
      run.destroy();
    }
  });
});
