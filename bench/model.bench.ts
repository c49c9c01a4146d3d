/**
 * Suites `linear`, `linear_decode` and `attention`: the policy's heavy kernels at Qwen2.5-0.5B shapes.
 * - linear: y = x · Wᵀ for M = 2048 tokens, hidden 896, intermediate 4864 (gate/up and down
 *   projections), f32 and bf16 weights; GFLOP/s against the f32 matmul ceiling of the same run.
 * - linear_decode: the same projections and the lm_head (V 151,936) for one decoding step at
 *   batch 1 (linear_rows_main) and 32 (32-row tiles, k split): memory-bound, so GB/s of weights
 *   read against the copy ceiling of the same run.
 * - attention: causal prefill, B 8, 14 query heads, 2 key/value heads, T 2048, D 64, f32: every
 *   kernel variant of the D ≤ 64 class (backend `webgpu` for the default, `webgpu/<variant>` for
 *   the others), so one run compares them with each other and with PyTorch's SDPA; and one D 128
 *   row (B 8, 16/2 heads, T 2048) for the default configuration of that class.
 * - lm_head_stats: the lm_head fused with the token statistics (src/ops/lm-head-stats.ts) against
 *   the unfused path (linear into logits, in windows of rows that fit one binding, then the
 *   token-stats forward), 8 × 512 rows, hidden 896, V 151,936, f32 and bf16 weights; each row's
 *   note gives the peak GPU memory the step allocates beyond its inputs (the logits, unfused).
 * On a software adapter (lavapipe) they run at reduced sizes, labelled by their shapes.
 * PyTorch rows (cuBLAS `x @ W.T`, `scaled_dot_product_attention`) come from
 * bench/peers/torch_token_stats.py on the same card and join through --peers.
 */
import { encode, type DType } from '../src/dtype.js';
import type { GpuContext } from '../src/gpu/context.js';
import { timeOnGpu, type GpuTiming } from '../src/gpu/timing.js';
import { ATTENTION_VARIANTS, DEFAULT_ATTENTION_VARIANT, prepareAttention, type AttentionShape, type AttentionVariant } from '../src/ops/attention.js';
import { linearPlan, prepareLinear } from '../src/ops/linear.js';
import { prepareLmHeadStats } from '../src/ops/lm-head-stats.js';
import { rowsPerWindow, type RowWindow } from '../src/ops/split.js';
import { allocateOutputs, prepareForward as prepareStatsForward } from '../src/ops/token-stats/webgpu.js';
import { gaussian, mulberry32 } from '../src/util/random.js';
import { runCase, withBandwidthCeiling, withMatmulCeiling, type BenchEnv } from './harness.js';
import { rowFromSamples } from './schema.js';

export const MODEL_KERNELS = ['linear', 'linear_decode', 'attention', 'lm_head_stats'] as const;

function randomValues(n: number, seed: number): Float32Array {
  const rand = mulberry32(seed);
  return Float32Array.from({ length: n }, () => gaussian(rand));
}

/** Times y = x · Wᵀ (no bias) on random inputs of one shape: the GPU samples and the bytes of W. */
async function timeLinear(gpu: GpuContext, label: string, { m, k, n }: { m: number; k: number; n: number }, dtype: DType,
  timing: { samples: number; warmupMs: number }): Promise<{ timing: GpuTiming; weightBytes: number }> {
  const x = gpu.upload('bench:x', randomValues(m * k, k));
  const w = gpu.upload('bench:w', encode(dtype, randomValues(n * k, n)));
  const y = gpu.createBuffer('bench:y', m * n * 4, GPUBufferUsage.STORAGE);
  try {
    const prepared = await prepareLinear(gpu, { m, k, n, weightDType: dtype }, x, w, null, y);
    try {
      return { timing: await timeOnGpu(gpu, label, (pass) => prepared.encode(pass), timing), weightBytes: w.size };
    } finally {
      prepared.destroy();
    }
  } finally {
    for (const b of [x, w, y]) b.destroy();
  }
}

interface Step {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

/**
 * Times the per-row statistics of hidden (rows, k) · Wᵀ (V, k): `fused` with prepareLmHeadStats, else
 * the linear op into logits windows then the token-stats forward per window. Returns the GPU
 * samples and the peak bytes the step's own buffers reach (inputs and outputs excluded).
 */
async function timeLmHeadStats(gpu: GpuContext, fused: boolean, { rows, k, vocab }: { rows: number; k: number; vocab: number }, dtype: DType,
  weightValues: Float32Array, timing: { samples: number; warmupMs: number }): Promise<{ timing: GpuTiming; peakBytes: number; windows: number }> {
  const bpe = dtype === 'f32' ? 4 : 2;
  const owned: GPUBuffer[] = [];
  const keep = (b: GPUBuffer): GPUBuffer => (owned.push(b), b);
  const steps: Step[] = [];
  try {
    // W in row windows that fit one binding (an even count for 16-bit rows of odd length).
    const perWindow = Math.min(vocab, rowsPerWindow(k * bpe, gpu.maxBindingBytes, bpe === 2 && k % 2 === 1 ? 2 : 1));
    const weight: RowWindow[] = [];
    for (let first = 0; first < vocab; first += perWindow) {
      const n = Math.min(perWindow, vocab - first);
      weight.push({ buffer: keep(gpu.upload(`bench:w[${first}]`, encode(dtype, weightValues.subarray(first * k, (first + n) * k)))), firstRow: first, rows: n });
    }
    const rand = mulberry32(rows);
    const hiddenValues = randomValues(rows * k, 7);
    const ids = Uint32Array.from({ length: rows }, () => Math.floor(rand() * vocab));
    // Unfused: logits of `window` rows at a time (each window its own hidden and ids buffers).
    const window = fused ? rows : Math.max(1, Math.min(rows, rowsPerWindow(vocab * 4, gpu.maxBindingBytes)));
    const parts = Array.from({ length: Math.ceil(rows / window) }, (_, i) => {
      const first = i * window;
      const count = Math.min(window, rows - first);
      return {
        count, hidden: keep(gpu.upload(`bench:hidden[${first}]`, hiddenValues.subarray(first * k, (first + count) * k))),
        ids: keep(gpu.upload(`bench:ids[${first}]`, ids.subarray(first, first + count))),
      };
    });
    const outputs = allocateOutputs(gpu, window, true);
    [outputs.logsumexp, outputs.selfCertainty, outputs.entropy, outputs.logprob!, outputs.validCount].forEach(keep);
    const before = gpu.memory.liveBytes;
    gpu.resetPeak();
    if (fused) {
      steps.push(await prepareLmHeadStats(gpu, { rows, hidden: k, vocab, weightDType: dtype }, { hidden: parts[0]!.hidden, weight, ids: parts[0]!.ids }, outputs));
    } else {
      const logits = keep(gpu.createBuffer('bench:logits', window * vocab * 4, GPUBufferUsage.STORAGE));
      for (const part of parts) {
        steps.push(await prepareLinear(gpu, { m: part.count, k, n: vocab, weightDType: dtype }, part.hidden, weight, null, logits));
        steps.push(await prepareStatsForward(gpu, { dtype: 'f32', rows: part.count, vocab, logits, ids: part.ids, invTemperature: 1 }, outputs));
      }
    }
    const t = await timeOnGpu(gpu, fused ? 'lm_head_stats' : 'lm_head_then_stats', (pass) => steps.forEach((step) => step.encode(pass)), timing);
    return { timing: t, peakBytes: gpu.memory.peakBytes - before, windows: parts.length };
  } finally {
    for (const step of steps) step.destroy();
    for (const b of owned) b.destroy();
  }
}

export async function modelSuite(env: BenchEnv, kernels: ReadonlySet<string>, dtypes: DType[]): Promise<void> {
  const gpu = env.gpu;
  if (!gpu) return;
  const small = env.quick || gpu.adapter?.isFallbackAdapter === true;
  const timing = { samples: env.quick ? 3 : 10, warmupMs: env.quick ? 50 : 300 };
  const usage = GPUBufferUsage.STORAGE;
  if (kernels.has('linear')) {
    const m = small ? 256 : 2048;
    for (const [k, n] of [[896, 4864], [4864, 896]] as const) {
      for (const dtype of dtypes) {
        await runCase(env, `linear ${m}x${k}x${n} ${dtype}`, async () => {
          const { timing: t } = await timeLinear(gpu, 'linear', { m, k, n }, dtype, timing);
          const row = rowFromSamples({ kernel: 'linear', backend: 'webgpu', dtype, shape: [m, k, n], device: env.gpuDevice, method: t.method, note: 'y = x·Wᵀ, no bias' }, t.samples, 0, null);
          row.gflops = (2 * m * k * n) / (row.medianMs / 1000) / 1e9;
          env.rows.push(withMatmulCeiling(env, row));
        });
      }
    }
  }
  if (kernels.has('linear_decode')) {
    const shapes = small ? [[128, 352], [352, 128], [128, 2048]] : [[896, 4864], [4864, 896], [896, 151936]];
    for (const m of [1, 32]) {
      for (const [k, n] of shapes as [number, number][]) {
        for (const dtype of dtypes) {
          await runCase(env, `linear_decode ${m}x${k}x${n} ${dtype}`, async () => {
            const { timing: t, weightBytes } = await timeLinear(gpu, 'linear_decode', { m, k, n }, dtype, timing);
            const plan = linearPlan({ m, k, n }, gpu.maxBindingBytes);
            const moved = weightBytes + (m * k + m * n) * 4;
            const note = plan.kernel === 'rows' ? `linear_rows_main, ${plan.lanes} lanes a column` : `32-row tiles, k in ${plan.splits} ranges`;
            const row = rowFromSamples({ kernel: 'linear_decode', backend: 'webgpu', dtype, shape: [m, k, n], device: env.gpuDevice, method: t.method, note }, t.samples, moved, null);
            row.gflops = (2 * m * k * n) / (row.medianMs / 1000) / 1e9;
            env.rows.push(withBandwidthCeiling(row, env.ceilings.gpuCopy));
          });
        }
      }
    }
  }
  if (kernels.has('lm_head_stats')) {
    // The row: 8 × 512 rows of Qwen2.5-0.5B (hidden 896, V 151,936); a small shape on lavapipe.
    const shape = small ? { rows: 128, k: 128, vocab: 8192 } : { rows: 8 * 512, k: 896, vocab: 151936 };
    // W ~ N(0, 1/k), made once (136M values at full size) for every run.
    const weightValues = randomValues(shape.vocab * shape.k, 1).map((v) => v / Math.sqrt(shape.k));
    for (const dtype of dtypes) {
      for (const fused of [true, false]) {
        const backend = fused ? 'webgpu/fused' : 'webgpu/unfused';
        await runCase(env, `lm_head_stats ${backend} ${JSON.stringify(shape)} ${dtype}`, async () => {
          const { timing: t, peakBytes, windows } = await timeLmHeadStats(gpu, fused, shape, dtype, weightValues, timing);
          const mib = (peakBytes / 2 ** 20).toFixed(1);
          const note = fused
            ? `lm_head fused with the statistics: no logits; peak ${mib} MiB beyond inputs`
            : `linear into logits (${windows} window${windows === 1 ? '' : 's'} of rows), then token_stats; peak ${mib} MiB beyond inputs`;
          const row = rowFromSamples({ kernel: 'lm_head_stats', backend, dtype, shape: [shape.rows, shape.k, shape.vocab], device: env.gpuDevice, method: t.method, note }, t.samples, 0, shape.rows);
          row.gflops = (2 * shape.rows * shape.k * shape.vocab) / (row.medianMs / 1000) / 1e9;
          env.rows.push(withMatmulCeiling(env, row));
        });
      }
    }
  }
  if (kernels.has('attention')) {
    const d64: AttentionShape = small ? { batch: 1, seqLen: 256, heads: 14, kvHeads: 2, headDim: 64 } : { batch: 8, seqLen: 2048, heads: 14, kvHeads: 2, headDim: 64 };
    const d128: AttentionShape = small ? { batch: 1, seqLen: 256, heads: 16, kvHeads: 2, headDim: 128 } : { batch: 8, seqLen: 2048, heads: 16, kvHeads: 2, headDim: 128 };
    const runs: [AttentionShape, AttentionVariant][] = [
      [d64, DEFAULT_ATTENTION_VARIANT],
      ...ATTENTION_VARIANTS.filter((v) => v !== DEFAULT_ATTENTION_VARIANT).map((v): [AttentionShape, AttentionVariant] => [d64, v]),
      [d128, DEFAULT_ATTENTION_VARIANT],
    ];
    for (const [s, variant] of runs) {
      const backend = variant === DEFAULT_ATTENTION_VARIANT ? 'webgpu' : `webgpu/${variant}`;
      await runCase(env, `attention ${backend} ${JSON.stringify(s)}`, async () => {
        const qn = s.batch * s.seqLen * s.heads * s.headDim;
        const kvn = s.batch * s.seqLen * s.kvHeads * s.headDim;
        const buffers = {
          q: gpu.upload('bench:q', randomValues(qn, 1)), k: gpu.upload('bench:k', randomValues(kvn, 2)), v: gpu.upload('bench:v', randomValues(kvn, 3)),
          lengths: gpu.upload('bench:lengths', new Uint32Array(s.batch).fill(s.seqLen)),
          out: gpu.createBuffer('bench:out', qn * 4, usage), lse: gpu.createBuffer('bench:lse', s.batch * s.heads * s.seqLen * 4, usage),
        };
        try {
          const prepared = await prepareAttention(gpu, s, buffers, { variant });
          const t = await timeOnGpu(gpu, 'attention', (pass) => prepared.encode(pass), timing);
          prepared.destroy();
          const note = s.headDim <= 64 ? `causal prefill, GQA, variant ${variant}` : 'causal prefill, GQA';
          const row = rowFromSamples({ kernel: 'attention', backend, dtype: 'f32', shape: [s.batch, s.seqLen, s.heads, s.kvHeads, s.headDim], device: env.gpuDevice, method: t.method, note }, t.samples, 0, null);
          // Causal: half of the T×T score and value products, 2 FLOPs each, per head.
          row.gflops = (2 * 2 * s.batch * s.heads * s.headDim * (s.seqLen * (s.seqLen + 1)) / 2) / (row.medianMs / 1000) / 1e9;
          env.rows.push(withMatmulCeiling(env, row));
        } finally {
          for (const b of Object.values(buffers)) b.destroy();
        }
      });
    }
  }
}
