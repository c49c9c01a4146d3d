/**
 * kernels/linear_norm.wgsl (rmsnorm fused into q/k/v-style projections, or into gate/up with
 * SwiGLU) against the float64 reference and against the unfused ops (rmsnorm, linear, swiglu),
 * every weight, bias and norm dtype, row windows, ragged shapes, outliers, outputs poisoned first.
 */
import { elementReader, encode, type DType, type HostArray } from '../../src/dtype.js';
import { InvalidArgumentError } from '../../src/errors.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { linear } from '../../src/ops/linear.js';
import { linearNorm, linearNormPlan, linearNormScratch, prepareLinearNorm, referenceLinearNorm, type LinearNormShape } from '../../src/ops/linear-norm.js';
import { rmsNorm } from '../../src/ops/rmsnorm.js';
import { swiglu } from '../../src/ops/swiglu.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

type Case = [m: number, k: number, ns: number[], weightDTypes: DType[], biasDType: DType | null, normDType: DType, glu: boolean, windowRows: number | null, path: string];

// Paths (linearNormPlan): "fused" = linear_norm_rows (m ≤ 8), lanes = 4 … 32 per column (about 8
// quads of k each), up to 3 parts (projections or row windows) per dispatch; "unfused" (m > 8) =
// rmsnorm, then linear per projection (then swiglu). "aligned" = k % 4 = 0.
const CASES: Case[] = [
  [1, 1, [1], ['f32'], null, 'f32', false, null, 'fused, one element: 3 of 4 lanes and 63 of 64 columns idle, no bias'],
  [1, 37, [70, 20, 20], ['bf16', 'bf16', 'bf16'], 'bf16', 'bf16', false, null, 'fused q/k/v of one decoding row, odd k: rows start mid-word; biases end mid-word'],
  [3, 64, [40, 8, 8], ['f16', 'f16', 'f16'], 'f16', 'f32', false, null, 'fused, aligned 16-bit halves of 16-byte words, 3 rows'],
  [8, 130, [33, 17], ['f32', 'f32'], 'f32', 'f16', false, null, 'fused at its largest m, unaligned f32 (k % 4 = 2), 8 lanes'],
  [8, 16, [10], ['f32'], null, 'bf16', false, null, 'fused, 4 lanes serving 8 rows (two each)'],
  [2, 40, [30, 9, 11], ['f32', 'bf16', 'f16'], 'f32', 'f32', false, null, 'fused, every part its own weight dtype'],
  [1, 896, [896, 128, 128], ['f32', 'f32', 'f32'], 'f32', 'f32', false, null, 'fused, Qwen2.5-0.5B q/k/v shapes, 32 lanes, aligned f32 quads'],
  [1, 40, [70, 30, 30], ['f32', 'f32', 'f32'], 'f32', 'f32', false, 16, 'fused, row windows of 16: 5 + 2 + 2 parts in 6 dispatches (never two windows of one output together)'],
  [5, 256, [100, 100], ['bf16', 'bf16'], null, 'bf16', true, null, 'fused SwiGLU (gate, up), aligned bf16'],
  [2, 13, [9, 9], ['f16', 'f16'], null, 'f16', true, null, 'fused SwiGLU, odd k, f16'],
  [4, 36, [50, 50], ['bf16', 'bf16'], null, 'f32', true, 20, 'fused SwiGLU in row windows of 20: 3 dispatches of paired windows'],
  [9, 37, [33, 9, 9], ['bf16', 'bf16', 'bf16'], 'bf16', 'bf16', false, null, 'unfused at its smallest m: rmsnorm then three linears'],
  [32, 36, [24, 8, 8], ['f16', 'bf16', 'f32'], 'f32', 'bf16', false, null, 'unfused, every projection its own weight dtype (a decoding batch of 32: split k)'],
  [20, 64, [40, 40], ['f32', 'f32'], null, 'f32', true, 16, 'unfused SwiGLU, row windows of 16'],
];

/**
 * x ~ N(0, 1) with an outlier of 40 in row 0, row 1 scaled by 10^3 and row 2 by 10^-3 (the norm
 * divides them out), norm weight 1 + N(0, 0.1)², W ~ N(0, 1/k) and b ~ N(0, 1), rounded to their
 * dtypes (the references see the decoded values).
 */
function inputs(m: number, k: number, ns: number[], weightDTypes: DType[], biasDType: DType | null, normDType: DType) {
  const rand = mulberry32(m * 7919 + k * 31 + ns[0]!);
  const x = Float32Array.from({ length: m * k }, (_, i) => gaussian(rand) * (Math.floor(i / k) === 1 ? 1e3 : Math.floor(i / k) === 2 ? 1e-3 : 1));
  x[0] = 40;
  const decode = (dtype: DType, data: HostArray) => Float64Array.from({ length: data.length }, (_, i) => elementReader(dtype, data)(i));
  const norm = encode(normDType, Float64Array.from({ length: k }, () => 1 + 0.1 * gaussian(rand)));
  const weights = ns.map((n, i) => encode(weightDTypes[i]!, Float64Array.from({ length: n * k }, () => gaussian(rand) / Math.sqrt(k))));
  const biases = ns.map((n) => (biasDType === null ? null : encode(biasDType, Float64Array.from({ length: n }, () => gaussian(rand)))));
  return {
    x, norm, weights, biases,
    normValues: decode(normDType, norm),
    weightValues: weights.map((w, i) => decode(weightDTypes[i]!, w)),
    biasValues: biases.map((b) => (b === null ? null : decode(biasDType!, b))),
  };
}

describeGpu('linear_norm (WebGPU, y = rmsnorm(x) · Wᵀ + b per projection, or SwiGLU of two)', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  test.each(CASES)('m %i, k %i, n %j, W %j, bias %s, norm %s, glu %s, windows of %s rows: %s', async (m, k, ns, weightDTypes, biasDType, normDType, glu, windowRows) => {
    const { x, norm, weights, biases, normValues, weightValues, biasValues } = inputs(m, k, ns, weightDTypes, biasDType, normDType);
    const shape: LinearNormShape = { m, k, eps: 1e-6, normDType, glu, projections: ns.map((n, i) => ({ n, weightDType: weightDTypes[i]!, biasDType: biasDType ?? undefined })) };
    const got = await linearNorm(ctx, x, norm, weights, biases, shape, { poison: true, windowRows: windowRows ?? undefined });
    const want = referenceLinearNorm(x, normValues, weightValues, biasValues, shape);
    expect(got).toHaveLength(want.length);
    got.forEach((y, i) => expectClose(`linear_norm ${m}x${k} output ${i}`, y, want[i]!, TOLERANCES.linearNorm));

    // The unfused ops on the same inputs: rmsnorm into f32, then each linear (then swiglu).
    const h = await rmsNorm(ctx, x, norm, { rows: m, hidden: k, eps: 1e-6, weightDType: normDType });
    const ys = await Promise.all(ns.map((n, i) => linear(ctx, h, weights[i]!, biases[i]!, { m, k, n, weightDType: weightDTypes[i]!, biasDType: biasDType ?? undefined })));
    const unfused = glu ? [await swiglu(ctx, ys[0]!, ys[1]!, { rows: m, intermediate: ns[0]! })] : ys;
    got.forEach((y, i) => expectClose(`linear_norm ${m}x${k} output ${i} vs unfused`, y, unfused[i]!, TOLERANCES.linearNorm));
   }, 300_000);

  test('the plan: fused up to 8 rows on a device that binds 11 storage buffers, else unfused', () => {
    const limits = { maxStorageBuffersPerShaderStage: 16, maxComputeWorkgroupsPerDimension: 65535 };
    const qkv = [{ n: 896, weightDType: 'f32' as DType, biasDType: 'f32' as DType }, { n: 128, weightDType: 'f32' as DType, biasDType: 'f32' as DType }];
    expect(linearNormPlan({ m: 8, k: 896, projections: qkv }, limits)).toEqual({ kernel: 'fused', lanes: 32 });
    expect(linearNormPlan({ m: 9, k: 896, projections: qkv }, limits).kernel).toBe('unfused');
    expect(linearNormPlan({ m: 1, k: 16, projections: qkv }, limits)).toEqual({ kernel: 'fused', lanes: 4 });
    expect(linearNormPlan({ m: 1, k: 896, projections: qkv }, { ...limits, maxStorageBuffersPerShaderStage: 10 }).kernel).toBe('unfused');
    expect(linearNormScratch({ m: 8, k: 896, eps: 0, projections: qkv }, limits)).toEqual({ h: 0, gate: 0, up: 0 });
    expect(linearNormScratch({ m: 9, k: 896, eps: 0, glu: true, projections: [qkv[0]!, qkv[0]!] }, limits)).toEqual({ h: 9 * 896, gate: 9 * 896, up: 9 * 896 });
  });

  test('bad input: typed errors naming the argument', async () => {
    const x = new Float32Array(6);
    const one = { m: 2, k: 3, eps: 1e-6 };
    await expect(linearNorm(ctx, x, new Float32Array(3), [], [], { ...one, projections: [] })).rejects.toThrow(/projections: expected one to 3 projections/);
    await expect(linearNorm(ctx, x, new Float32Array(3), [new Float32Array(6)], [null], { ...one, glu: true, projections: [{ n: 2 }] })).rejects.toThrow(/projections: expected two projections \(gate, up\)/);
    await expect(linearNorm(ctx, x, new Float32Array(3), [new Float32Array(6), new Float32Array(3)], [null, null], { ...one, glu: true, projections: [{ n: 2 }, { n: 1 }] })).rejects.toThrow(/gate and up of equal n/);
    await expect(linearNorm(ctx, x, new Float32Array(2), [new Float32Array(6)], [null], { ...one, projections: [{ n: 2 }] })).rejects.toThrow(/norm: expected 3 elements/);
    await expect(linearNorm(ctx, x, new Float32Array(3), [new Float32Array(5)], [null], { ...one, projections: [{ n: 2 }] })).rejects.toThrow(/weights\[0\]: expected 6 elements/);
    await expect(linearNorm(ctx, x, new Float32Array(3), [new Float32Array(6)], [null], { ...one, eps: -1, projections: [{ n: 2 }] })).rejects.toThrow(InvalidArgumentError);
    const small = ctx.createBuffer('test:small', 16, GPUBufferUsage.STORAGE);
    const other = ctx.createBuffer('test:other', 16, GPUBufferUsage.STORAGE);
    try {
      const gluShape = { m: 1, k: 1, eps: 0, glu: true, projections: [{ n: 1 }, { n: 1 }] };
      await expect(prepareLinearNorm(ctx, gluShape, { x: small, norm: small, weights: [small, small], biases: [small, null], outputs: [other] })).rejects.toThrow(/biases: expected nulls with glu/);
      await expect(prepareLinearNorm(ctx, { m: 1, k: 1, eps: 0, projections: [{ n: 1 }, { n: 1 }] }, { x: small, norm: small, weights: [small, small], biases: [null, null], outputs: [other, other] }))
        .rejects.toThrow(/outputs: expected 2 distinct output buffers, none of them x/);
      await expect(prepareLinearNorm(ctx, { m: 1, k: 9, eps: 0, projections: [{ n: 1 }] }, { x: small, norm: small, weights: [small], biases: [null], outputs: [other] }))
        .rejects.toThrow(/x: expected a GPUBuffer of at least 48 bytes, got 16 bytes/);
      // More than 8 rows run unfused, on the caller's scratch (shared by the ops of a forward).
      await expect(prepareLinearNorm(ctx, { m: 40, k: 1, eps: 0, projections: [{ n: 1 }] }, { x: small, norm: small, weights: [small], biases: [null], outputs: [other] }))
        .rejects.toThrow(/scratch: expected buffers \{ h \} for 40 rows \(linearNormScratch: the shape runs unfused\), got undefined/);
    } finally {
      small.destroy();
      other.destroy();
    }
  });
});
