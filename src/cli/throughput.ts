/**
 * `intuitor throughput`: token statistics for a built-in batch (Qwen2.5-sized logits) on every
 * backend available here, checked against each other, with results and throughput.
 */
import { BackendUnavailableError } from '../errors.js';
import { GpuContext } from '../gpu/context.js';
import { positiveIntOption } from './inputs.js';
import { nativeStatus } from '../native/addon.js';
import { tokenStats, tokenStatsGpu, type ResolvedBackend, type TokenStats } from '../ops/token-stats.js';
import { gaussian, mulberry32 } from '../util/random.js';

export interface ThroughputOptions {
  rows: string;
  vocab: string;
  repeats: string;
}

/** Logits shaped like a language model's: a broad N(0, 2) floor and a few confident tokens per row. */
export function builtInBatch(rows: number, vocab: number, seed = 2025): { logits: Float32Array; ids: Int32Array } {
  const rand = mulberry32(seed);
  const logits = new Float32Array(rows * vocab);
  for (let i = 0; i < logits.length; i++) logits[i] = 2 * gaussian(rand);
  const ids = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    const peaks = 1 + Math.floor(rand() * 4);
    for (let k = 0; k < peaks; k++) logits[r * vocab + Math.floor(rand() * vocab)] = 12 + 6 * rand();
    ids[r] = Math.floor(rand() * vocab);
  }
  return { logits, ids };
}

function mean(values: Float32Array): number {
  let s = 0;
  for (const v of values) s += v;
  return s / values.length;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

export async function throughputCommand(options: ThroughputOptions): Promise<void> {
  const rows = positiveIntOption('--rows', options.rows);
  const vocab = positiveIntOption('--vocab', options.vocab);
  const repeats = positiveIntOption('--repeats', options.repeats);
  const { logits, ids } = builtInBatch(rows, vocab);
  const bytes = logits.byteLength;
  const args = { logits, shape: [rows, vocab], ids };
  console.log(`intuitor throughput: token statistics for a built-in batch of ${rows} rows × V = ${vocab} (float32, ${(bytes / 2 ** 20).toFixed(0)} MiB)\n`);

  let gpu: GpuContext | null = null;
  try {
    gpu = await GpuContext.create();
  } catch (err) {
    if (!(err instanceof BackendUnavailableError)) throw err;
    console.log(`webgpu: skipped (${err.message})`);
  }
  const native = nativeStatus();
  if (!native.loaded) console.log(`native: skipped (${native.reason})`);
  const backends: ResolvedBackend[] = [...(gpu ? ['webgpu' as const] : []), ...(native.loaded ? ['native' as const] : []), 'js'];

  const rowsOut: { backend: string; ms: number; result: TokenStats; note: string }[] = [];
  try {
    for (const backend of backends) {
      const runs = backend === 'js' ? 1 : repeats;
      const call = () => tokenStats(args, { backend, context: gpu ?? undefined });
      let result = await call(); // warm-up: pipelines, thread pool, JIT
      const start = performance.now();
      for (let i = 0; i < runs; i++) result = await call();
      rowsOut.push({ backend, ms: (performance.now() - start) / runs, result, note: 'host arrays in and out' });
    }
    if (gpu) {
      // The same op with logits already on the GPU and results left there, as a trainer uses it.
      const logitsBuffer = gpu.upload('throughput:logits', logits);
      const idsBuffer = gpu.upload('throughput:ids', ids);
      const once = async () => {
        const s = await tokenStatsGpu(gpu!, { logits: logitsBuffer, shape: [rows, vocab], ids: idsBuffer });
        await gpu!.sync();
        for (const b of [s.logsumexp, s.selfCertainty, s.entropy, s.logprob!, s.validCount]) b.destroy();
      };
      await once();
      const start = performance.now();
      for (let i = 0; i < repeats; i++) await once();
      const ms = (performance.now() - start) / repeats;
      rowsOut.push({ backend: 'webgpu', ms, result: rowsOut[0]!.result, note: 'GPU-resident logits and results' });
      logitsBuffer.destroy();
      idsBuffer.destroy();
    }
  } finally {
    gpu?.close();
  }

  const reference = rowsOut.find((r) => r.backend === 'js')!.result;
  console.log('backend   time/batch    rows/s        GB/s   mean SC   mean H    max|Δ| vs js   ');
  for (const r of rowsOut) {
    const diff = Math.max(maxAbsDiff(r.result.selfCertainty, reference.selfCertainty), maxAbsDiff(r.result.logprob!, reference.logprob!));
    console.log(
      `${r.backend.padEnd(8)} ${r.ms.toFixed(2).padStart(9)} ms ${(rows / (r.ms / 1000)).toExponential(2).padStart(10)} ${(bytes / (r.ms / 1000) / 1e9).toFixed(2).padStart(9)}` +
      `   ${mean(r.result.selfCertainty).toFixed(4)}   ${mean(r.result.entropy).toFixed(4)}   ${diff.toExponential(1).padStart(8)}   ${r.note}`,
    );
  }
  console.log(`\nSelf-certainty = KL(U‖p) = logsumexp(z) − mean(z) − log V, INTUITOR's reward (nats); H = entropy.`);
}
