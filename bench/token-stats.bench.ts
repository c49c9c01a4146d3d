/**
 * Suite `token-stats`: rows/s and GB/s of logits read for the token-statistics forward and
 * backward, per backend, at Qwen2.5's V = 151,936 with N = 8, 256 and 2048 where memory allows.
 *
 * - webgpu: device time from full-resolution timestamp queries around passes of ≥ 10 ms, each
 *   cycling over R distinct input buffers (R · bytes ≥ 256 MiB, so caches don't flatter), after
 *   ≥ 300 ms of warm-up (GPU clocks leave idle); compared with the GPU copy ceiling.
 * - native, js, gpu.js: benchmark.js (deferred), inputs rotated likewise; native compared with the
 *   CPU's single-pass read bandwidth. js and gpu.js run at N ≤ 256 only (seconds per call beyond).
 * - PyTorch (eager, log_softmax, torch.compile) rows come from bench/peers/torch_token_stats.py on
 *   the same card, merged by the runner (--peers).
 * A backward "GB/s" counts logits read plus f32 gradient written.
 */
import { encode, type DType, type HostArray } from '../src/dtype.js';
import { copyBandwidth, timeOnGpu } from '../src/gpu/timing.js';
import { tokenStats, tokenStatsBackward } from '../src/ops/token-stats.js';
import { allocateOutputs, prepareBackward, prepareForward, type PlanTuning, type PreparedDispatch } from '../src/ops/token-stats/webgpu.js';
import { gaussian, mulberry32 } from '../src/util/random.js';
import { benchmarkJs, rotate, rotations, runCase, withBandwidthCeiling, type BenchEnv } from './harness.js';
import { rowFromSamples } from './schema.js';

export const TOKEN_STATS_KERNELS = ['token_stats_forward', 'token_stats_backward'] as const;
const VOCAB = 151936;

export interface TokenStatsSuiteOptions {
  kernels: ReadonlySet<string>;
  rows: number[];
  dtypes: DType[];
  /** Extra webgpu rows with these chunk floors (tuning sweeps), labelled `webgpu/minChunk=…`. */
  minChunks: number[];
}

/** Logits N(0, 2) with one confident token per row, and ids. */
function makeInput(rows: number, dtype: DType): { logits: HostArray; ids: Int32Array } {
  const rand = mulberry32(rows);
  const values = new Float32Array(rows * VOCAB);
  for (let i = 0; i < values.length; i++) values[i] = 2 * gaussian(rand);
  const ids = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    values[r * VOCAB + Math.floor(rand() * VOCAB)] = 15;
    ids[r] = Math.floor(rand() * VOCAB);
  }
  return { logits: dtype === 'f32' ? values : encode(dtype, values), ids };
}

async function webgpuCases(env: BenchEnv, opts: TokenStatsSuiteOptions, rows: number, dtype: DType, logits: HostArray, ids: Int32Array): Promise<void> {
  const gpu = env.gpu!;
  const shape = [rows, VOCAB];
  const bytes = logits.byteLength;
  const gradBytes = rows * VOCAB * 4;
  const count = rotations(bytes + (opts.kernels.has('token_stats_backward') ? gradBytes : 0));
  const owned: GPUBuffer[] = [];
  const keep = <T extends GPUBuffer>(b: T): T => {
    owned.push(b);
    return b;
  };
  try {
    const logitsBuffers = rotate(logits, count).map((l, i) => keep(gpu.upload(`bench:logits${i}`, l)));
    const idsBuffer = keep(gpu.upload('bench:ids', ids));
    const outputs = allocateOutputs(gpu, rows, true);
    [outputs.logsumexp, outputs.selfCertainty, outputs.entropy, outputs.logprob!, outputs.validCount].forEach(keep);
    const grads = opts.kernels.has('token_stats_backward')
      ? Array.from({ length: count }, (_, i) => keep(gpu.createBuffer(`bench:grad${i}`, gradBytes, GPUBufferUsage.STORAGE))) : [];
    const gL = keep(gpu.upload('bench:gL', new Float32Array(rows).fill(1)));
    const gS = keep(gpu.upload('bench:gS', new Float32Array(rows).fill(0.5)));
    const inputs = (i: number) => ({ dtype, rows, vocab: VOCAB, logits: logitsBuffers[i]!, ids: idsBuffer, invTemperature: 1 });
    for (const minChunk of [undefined, ...opts.minChunks]) {
      const tuning: PlanTuning = minChunk === undefined ? {} : { minChunk };
      const backend = minChunk === undefined ? 'webgpu' : `webgpu/minChunk=${minChunk}`;
      for (const kernel of TOKEN_STATS_KERNELS) {
        if (!opts.kernels.has(kernel)) continue;
        const prepared: PreparedDispatch[] = [];
        for (let i = 0; i < count; i++) {
          prepared.push(kernel === 'token_stats_forward'
            ? await prepareForward(gpu, inputs(i), outputs, tuning)
            : await prepareBackward(gpu, { ...inputs(i), logsumexp: outputs.logsumexp, validCount: outputs.validCount, gLogprob: gL, gSelfCertainty: gS, grad: grads[i]! }, tuning));
        }
        try {
          const t = await timeOnGpu(gpu, kernel, (pass, r) => prepared[r % count]!.encode(pass), { cycle: count, samples: env.quick ? 5 : 20, warmupMs: env.quick ? 50 : 300 });
          const note = `${count} rotated inputs${gpu.variant.subgroups ? ', subgroup reduction' : ''}`;
          const moved = kernel === 'token_stats_forward' ? bytes : bytes + gradBytes;
          env.rows.push(withBandwidthCeiling(rowFromSamples({ kernel, backend, dtype, shape, device: env.gpuDevice, method: t.method, note }, t.samples, moved, rows), env.ceilings.gpuCopy));
          if (minChunk === undefined && moved / 2 > gpu.maxBindingBytes) {
            env.skipped.push(`token_stats ${kernel} ${dtype} N=${rows}: no same-traffic copy row (${(moved / 2 / 2 ** 20).toFixed(0)} MiB each way exceeds one ${(gpu.maxBindingBytes / 2 ** 20).toFixed(0)} MiB binding)`);
          } else if (minChunk === undefined) {
            // The copy kernel moving the same traffic (half read, half written): at small sizes its
            // launch latency bounds it too, so the ratio "webgpu-copy" (copy time / this time) is
            // the fraction of the copy's bandwidth at this size.
            const copy = await copyBandwidth(gpu, moved / 2, { samples: env.quick ? 5 : 20, warmupMs: env.quick ? 50 : 300 });
            env.rows.push(rowFromSamples({ kernel, backend: 'webgpu-copy', dtype, shape, device: env.gpuDevice, method: copy.timing.method, note: `WGSL copy of ${(moved / 2 / 2 ** 20).toFixed(1)} MiB: the same read + write traffic` }, copy.timing.samples, moved, rows));
          }
        } finally {
          for (const p of prepared) p.destroy();
        }
      }
    }
  } finally {
    for (const b of owned) b.destroy();
  }
}

async function hostCases(env: BenchEnv, opts: TokenStatsSuiteOptions, rows: number, dtype: DType, logits: HostArray, ids: Int32Array): Promise<void> {
  const shape = [rows, VOCAB];
  const bytes = logits.byteLength;
  const cpu = env.cpuDevice;
  if (env.native.loaded && env.backends.has('native')) {
    const inputs = rotate(logits, rotations(bytes));
    let i = 0;
    const next = () => inputs[i++ % inputs.length]!;
    const first = await tokenStats({ logits, shape, dtype, ids }, { backend: 'native' });
    if (opts.kernels.has('token_stats_forward')) {
      const samples = await benchmarkJs(`native forward N=${rows} ${dtype}`, () => tokenStats({ logits: next(), shape, dtype, ids }, { backend: 'native' }), env.quick);
      env.rows.push(withBandwidthCeiling(rowFromSamples({ kernel: 'token_stats_forward', backend: 'native', dtype, shape, device: cpu, method: 'benchmark.js' }, samples, bytes, rows), env.ceilings.cpuRead));
    }
    if (opts.kernels.has('token_stats_backward')) {
      const args = { shape, dtype, ids, logsumexp: first.logsumexp, validCount: first.validCount, gLogprob: new Float32Array(rows).fill(1), gSelfCertainty: new Float32Array(rows).fill(0.5) };
      const samples = await benchmarkJs(`native backward N=${rows} ${dtype}`, () => tokenStatsBackward({ ...args, logits: next() }, { backend: 'native' }), env.quick);
      env.rows.push(withBandwidthCeiling(rowFromSamples({ kernel: 'token_stats_backward', backend: 'native', dtype, shape, device: cpu, method: 'benchmark.js' }, samples, bytes + rows * VOCAB * 4, rows), env.ceilings.cpuRead));
    }
  }
  if (!opts.kernels.has('token_stats_forward') || rows > 256) return;
  if (env.backends.has('js')) {
    const samples = await benchmarkJs(`js forward N=${rows} ${dtype}`, () => tokenStats({ logits, shape, dtype, ids }, { backend: 'js' }), env.quick);
    env.rows.push(rowFromSamples({ kernel: 'token_stats_forward', backend: 'js', dtype, shape, device: `${process.arch} CPU, 1 thread (float64 reference)`, method: 'benchmark.js' }, samples, bytes, rows));
  }
  const gpujs = env.gpujs;
  if (gpujs && dtype === 'f32') {
    const samples = await benchmarkJs(`gpu.js forward N=${rows}`, () => gpujs.forward(logits as Float32Array, rows, VOCAB, ids, 1), env.quick);
    env.rows.push(rowFromSamples({ kernel: 'token_stats_forward', backend: 'gpu.js', dtype, shape, device: gpujs.device, method: 'benchmark.js', note: `gpu.js ${gpujs.version}, mode ${gpujs.mode}` }, samples, bytes, rows));
  }
}

export async function tokenStatsSuite(env: BenchEnv, opts: TokenStatsSuiteOptions): Promise<void> {
  // Building the inputs (up to 2048 × 151,936 random logits) is slow on 2 cores: none when unasked.
  if (!TOKEN_STATS_KERNELS.some((k) => opts.kernels.has(k))) return;
  for (const rows of opts.rows) {
    for (const dtype of opts.dtypes) {
      await runCase(env, `token_stats N=${rows} ${dtype}`, async () => {
        const { logits, ids } = makeInput(rows, dtype);
        if (env.gpu) await webgpuCases(env, opts, rows, dtype, logits, ids);
        await hostCases(env, opts, rows, dtype, logits, ids);
      });
      console.error(`bench: token_stats N=${rows} ${dtype} done`);
    }
  }
}
