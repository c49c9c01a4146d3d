/** kernels/add.wgsl against the float64 reference: separate output and in place, on sizes that are not multiples of its workgroup. */
import type { GpuContext } from '../../src/gpu/context.js';
import { add, prepareAdd, referenceAdd } from '../../src/ops/add.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

const SIZES: [number, string][] = [
  [1, 'one element: 255 idle threads'],
  [255, 'one short of a workgroup'],
  [257, 'one past a workgroup: a second workgroup with one live thread'],
  [100_003, 'a large residual: 391 workgroups, ragged last one'],
];

function vectors(n: number): [Float32Array, Float32Array] {
  const rand = mulberry32(n);
  return [Float32Array.from({ length: n }, () => 10 * gaussian(rand)), Float32Array.from({ length: n }, () => gaussian(rand))];
}

async function runPrepared(ctx: GpuContext, n: number, a: GPUBuffer, b: GPUBuffer, out: GPUBuffer): Promise<Float32Array> {
  const prepared = await prepareAdd(ctx, { n }, a, b, out);
  try {
    await ctx.scoped('test:add', () => {
      const encoder = ctx.device.createCommandEncoder({ label: 'test:add' });
      const pass = encoder.beginComputePass({ label: 'test:add' });
      prepared.encode(pass);
      pass.end();
      ctx.device.queue.submit([encoder.finish()]);
    });
  } finally {
    prepared.destroy();
  }
  return new Float32Array(await ctx.read('test:add', out, n * 4));
}

describeGpu('add (WebGPU)', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  test.each(SIZES)('n = %i: %s', async (n) => {
    const [a, b] = vectors(n);
    const got = await add(ctx, a, b, { poison: true });
    expectClose(`add ${n}`, got, referenceAdd(a, b), TOLERANCES.add);
  });

  test.each([['a', 0], ['b', 1]] as const)('in place: out === %s (the buffer bound once, read-write)', async (_name, which) => {
    const n = 1001;
    const [a, b] = vectors(n);
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
    const bufA = ctx.upload('test:a', a, usage);
    const bufB = ctx.upload('test:b', b, usage);
    try {
      const got = await runPrepared(ctx, n, bufA, bufB, which === 0 ? bufA : bufB);
      expectClose(`add in place into ${_name}`, got, referenceAdd(a, b), TOLERANCES.add);
    } finally {
      bufA.destroy();
      bufB.destroy();
    }
  });

  test('bad arguments are refused before any GPU work', async () => {
    await expect(add(ctx, new Float32Array(0), new Float32Array(0))).rejects.toThrow(/a: expected a non-empty Float32Array/);
    await expect(add(ctx, new Float32Array(3), new Float32Array(4))).rejects.toThrow(/b: expected Float32Array of 3 elements/);
    const buffer = ctx.createBuffer('test:small', 16, GPUBufferUsage.STORAGE);
    const other = ctx.createBuffer('test:other', 16, GPUBufferUsage.STORAGE);
    try {
      await expect(prepareAdd(ctx, { n: 5 }, buffer, other, other)).rejects.toThrow(/out: expected a GPUBuffer of at least 20 bytes/);
      await expect(prepareAdd(ctx, { n: 0 }, buffer, other, other)).rejects.toThrow(/n: expected a positive integer/);
      await expect(prepareAdd(ctx, { n: 4 }, buffer, buffer, buffer)).rejects.toThrow(/out: expected a buffer other than a/);
    } finally {
      buffer.destroy();
      other.destroy();
    }
  });
});
