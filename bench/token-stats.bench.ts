/**
 * bench/token-stats: rows/s and GB/s of logits read for the token-statistics forward and
 * backward, per backend, at Qwen2.5's V = 151,936 with N = 8, 256 and 2048 where memory allows.
 *
 * - webgpu: device time from full-resolution timestamp queries around passes of ≥ 10 ms, each
 *   cycling over R distinct input buffers (so caches don't flatter: R · bytes ≥ 256 MiB), after
 *   ≥ 300 ms of warm-up (GPU clocks leave idle), compared with a large copy on the same device
 *   (the bandwidth ceiling) timed the same way in the same run.
 * - native, js, gpu.js: benchmark.js (deferred), inputs rotated likewise; native compared with
 *   this machine's single-pass memory read bandwidth (measured by the addon in the same run).
 * - PyTorch (eager, torch.compile), when a results file of bench/peers/torch_token_stats.py from
 *   the same card is given with --peers: its rows join the table and the ratios.
 *
 *   node dist/bench/token-stats.bench.js [--quick] [--backends webgpu,native,js,gpujs]
 *     [--rows 8,256,2048] [--dtypes f32,bf16] [--peers torch.json] [--json FILE] [--markdown FILE]
 *     [--min-chunks 2048,8192]   (webgpu: also time these chunk floors, rows labelled `webgpu/minChunk=…`)
 */
import Benchmark from 'benchmark';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { encode, type DType, type HostArray } from '../src/dtype.js';
import { BackendUnavailableError } from '../src/errors.js';
import { GpuContext } from '../src/gpu/context.js';
import { copyBandwidth, median, timeOnGpu } from '../src/gpu/timing.js';
import { nativeReadBandwidth, nativeStatus } from '../src/native/addon.js';
import { tokenStats, tokenStatsBackward } from '../src/ops/token-stats.js';
import { allocateOutputs, prepareBackward, prepareForward, type PreparedDispatch } from '../src/ops/token-stats/webgpu.js';
import { gaussian, mulberry32 } from '../src/util/random.js';
import { loadGpuJsPeer } from './peers/gpujs.js';
import { addRatios, markdownTable, rowFromSamples, writeOutput, type BenchRow } from './schema.js';

const VOCAB = 151936;
const ROTATION_BYTES = 256 * 2 ** 20;
const MAX_ROTATIONS = 64;

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    backends: { type: 'string', default: 'webgpu,native,js,gpujs' },
    rows: { type: 'string' },
    dtypes: { type: 'string', default: 'f32,bf16' },
    peers: { type: 'string' },
    json: { type: 'string' },
    markdown: { type: 'string' },
    'min-chunks': { type: 'string' },
  },
});
const quick = flags.quick!;
const backends = new Set(flags.backends!.split(','));
const rowCounts = (flags.rows ?? (quick ? '8,256' : '8,256,2048')).split(',').map(Number);
const dtypes = flags.dtypes!.split(',') as DType[];
const minChunks = flags['min-chunks'] ? flags['min-chunks'].split(',').map(Number) : [];

/** Base logits of a shape, N(0, 2) with a few confident tokens, and ids. */
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

function rotations(bytes: number): number {
  return Math.max(2, Math.min(MAX_ROTATIONS, Math.ceil(ROTATION_BYTES / bytes)));
}

/** R distinct copies of `logits` (a value changed in each, so no two are identical). */
function rotate(logits: HostArray, count: number): HostArray[] {
  return Array.from({ length: count }, (_, i) => {
    const copy = logits.slice() as HostArray;
    copy[i % copy.length] = logits[(i * 7919) % logits.length]!;
    return copy;
  });
}

function benchmarkJs(name: string, fn: () => Promise<unknown>): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const bench = new Benchmark(name, {
      defer: true, minSamples: quick ? 3 : 8, maxTime: quick ? 1 : 4, initCount: 1,
      fn: (deferred: { resolve(): void }) => {
        fn().then(() => deferred.resolve(), reject);
      },
    });
    bench.on('complete', () => resolve(bench.stats.sample.map((s) => s * 1000)));
    bench.on('error', () => reject(bench.error));
    bench.run({ async: true });
  });
}

async function main(): Promise<void> {
  const results: BenchRow[] = [];
  const skipped: string[] = [];
  let gpu: GpuContext | null = null;
  if (backends.has('webgpu')) {
    try {
      gpu = await GpuContext.create({ preciseTimestamps: true });
    } catch (err) {
      if (!(err instanceof BackendUnavailableError)) throw err;
      skipped.push(`webgpu: ${err.message}`);
    }
  }
  const native = nativeStatus();
  if (backends.has('native') && !native.loaded) skipped.push(`native: ${native.reason}`);
  const gpujs = backends.has('gpujs') ? await loadGpuJsPeer() : null;
  if (gpujs && 'unavailable' in gpujs) skipped.push(`gpujs: ${gpujs.unavailable}`);
  const gpuDevice = gpu ? `${gpu.adapter!.description} (WebGPU/Dawn)` : '';
  const cpuDevice = `${process.arch} CPU, ${native.loaded ? native.threads : 1} threads`;

  // Ceilings, in the same run.
  let gpuCopy: { name: string; gbps: number } | null = null;
  if (gpu) {
    const copyBytes = Math.min(gpu.maxBindingBytes, quick ? 128 * 2 ** 20 : 1024 * 2 ** 20);
    const c = await copyBandwidth(gpu, copyBytes, { samples: quick ? 5 : 20, warmupMs: quick ? 50 : 300 });
    gpuCopy = { name: `WGSL copy of ${(copyBytes / 2 ** 20).toFixed(0)} MiB`, gbps: c.gbps };
    results.push({ ...rowFromSamples({ kernel: 'copy', backend: 'webgpu', dtype: 'u32', shape: [copyBytes / 4], device: gpuDevice, method: c.timing.method }, c.timing.samples, 2 * copyBytes, null) });
  }
  let cpuRead: { name: string; gbps: number } | null = null;
  if (native.loaded && backends.has('native')) {
    const bytes = 512 * 2 ** 20;
    const samples = await nativeReadBandwidth(bytes, quick ? 5 : 15);
    cpuRead = { name: `single-pass read of ${bytes / 2 ** 20} MiB`, gbps: bytes / (median(samples) / 1000) / 1e9 };
    results.push(rowFromSamples({ kernel: 'read', backend: 'native', dtype: 'f32', shape: [bytes / 4], device: cpuDevice, method: 'steady-clock' }, samples, bytes, null));
  }

  for (const rows of rowCounts) {
    for (const dtype of dtypes) {
      const shape = [rows, VOCAB];
      const { logits, ids } = makeInput(rows, dtype);
      const bytes = logits.byteLength;
      const gradBytes = rows * VOCAB * 4;
      const label = `N=${rows} ${dtype}`;
      const lse = new Float32Array(rows);
      let validCount: Uint32Array = new Uint32Array(rows).fill(VOCAB);
      const gLogprob = new Float32Array(rows).fill(1);
      const gSelfCertainty = new Float32Array(rows).fill(0.5);

      if (gpu) {
        const count = rotations(bytes + gradBytes);
        const logitsBuffers = rotate(logits, count).map((l, i) => gpu!.upload(`bench:logits${i}`, l));
        const idsBuffer = gpu.upload('bench:ids', ids);
        const outputs = allocateOutputs(gpu, rows, true);
        const grads = Array.from({ length: count }, (_, i) => gpu!.createBuffer(`bench:grad${i}`, gradBytes, GPUBufferUsage.STORAGE));
        const gBuffers = [gpu.upload('bench:gL', gLogprob), gpu.upload('bench:gS', gSelfCertainty)];
        const inputs = (i: number) => ({ dtype, rows, vocab: VOCAB, logits: logitsBuffers[i]!, ids: idsBuffer, invTemperature: 1 });
        const samples = quick ? 5 : 20;
        for (const minChunk of [undefined, ...minChunks]) {
          const tuning = minChunk === undefined ? {} : { minChunk };
          const backend = minChunk === undefined ? 'webgpu' : `webgpu/minChunk=${minChunk}`;
          const forward: PreparedDispatch[] = [];
          const backward: PreparedDispatch[] = [];
          for (let i = 0; i < count; i++) {
            forward.push(await prepareForward(gpu, inputs(i), outputs, tuning));
            backward.push(await prepareBackward(gpu, { ...inputs(i), logsumexp: outputs.logsumexp, validCount: outputs.validCount, gLogprob: gBuffers[0]!, gSelfCertainty: gBuffers[1]!, grad: grads[i]! }, tuning));
          }
          for (const [kernel, prepared, moved] of [['token_stats_forward', forward, bytes], ['token_stats_backward', backward, bytes + gradBytes]] as const) {
            const t = await timeOnGpu(gpu, kernel, (pass, r) => prepared[r % count]!.encode(pass), { cycle: count, samples, warmupMs: quick ? 50 : 300 });
            const row = rowFromSamples({ kernel, backend, dtype, shape, device: gpuDevice, method: t.method, note: `${count} rotated inputs${gpu.variant.subgroups ? ', subgroup reduction' : ''}` }, t.samples, moved, rows);
            if (gpuCopy) {
              row.ceiling = gpuCopy;
              row.fractionOfCeiling = row.gbps! / gpuCopy.gbps;
            }
            results.push(row);
            console.error(`${backend} ${kernel} ${label}: ${row.medianMs.toFixed(4)} ms, ${row.gbps!.toFixed(1)} GB/s`);
          }
          for (const p of [...forward, ...backward]) p.destroy();
        }
        for (const b of [...logitsBuffers, idsBuffer, ...grads, ...gBuffers, outputs.logsumexp, outputs.selfCertainty, outputs.entropy, outputs.logprob!, outputs.validCount]) b.destroy();
      }

      if (native.loaded && backends.has('native')) {
        const inputsRotated = rotate(logits, rotations(bytes));
        let i = 0;
        const fwd = await benchmarkJs(`native forward ${label}`, async () => {
          const r = await tokenStats({ logits: inputsRotated[i++ % inputsRotated.length]!, shape, dtype, ids }, { backend: 'native' });
          lse.set(r.logsumexp);
          validCount = r.validCount;
        });
        const row = rowFromSamples({ kernel: 'token_stats_forward', backend: 'native', dtype, shape, device: cpuDevice, method: 'benchmark.js' }, fwd, bytes, rows);
        if (cpuRead) {
          row.ceiling = cpuRead;
          row.fractionOfCeiling = row.gbps! / cpuRead.gbps;
        }
        results.push(row);
        const bwd = await benchmarkJs(`native backward ${label}`, () => tokenStatsBackward({ logits: inputsRotated[i++ % inputsRotated.length]!, shape, dtype, ids, logsumexp: lse, validCount, gLogprob, gSelfCertainty }, { backend: 'native' }));
        results.push(rowFromSamples({ kernel: 'token_stats_backward', backend: 'native', dtype, shape, device: cpuDevice, method: 'benchmark.js' }, bwd, bytes + gradBytes, rows));
        console.error(`native ${label}: forward ${median(fwd).toFixed(2)} ms, backward ${median(bwd).toFixed(2)} ms`);
      }

      // The pure-JS reference and gpu.js are orders of magnitude slower: smaller N only.
      if (backends.has('js') && rows <= 256) {
        const fwd = await benchmarkJs(`js forward ${label}`, () => tokenStats({ logits, shape, dtype, ids }, { backend: 'js' }));
        results.push(rowFromSamples({ kernel: 'token_stats_forward', backend: 'js', dtype, shape, device: `${process.arch} CPU, 1 thread (float64 reference)`, method: 'benchmark.js' }, fwd, bytes, rows));
        console.error(`js ${label}: forward ${median(fwd).toFixed(1)} ms`);
      }
      if (gpujs && !('unavailable' in gpujs) && dtype === 'f32' && rows <= 256) {
        const fwd = await benchmarkJs(`gpu.js forward ${label}`, async () => gpujs.forward(logits as Float32Array, rows, VOCAB, ids, 1));
        results.push(rowFromSamples({ kernel: 'token_stats_forward', backend: 'gpu.js', dtype, shape, device: gpujs.device, method: 'benchmark.js', note: `gpu.js mode ${gpujs.mode}` }, fwd, bytes, rows));
        console.error(`gpu.js (${gpujs.mode}) ${label}: forward ${median(fwd).toFixed(1)} ms`);
      }
    }
  }
  if (gpujs && !('unavailable' in gpujs)) gpujs.close();
  gpu?.close();

  if (flags.peers) results.push(...(JSON.parse(readFileSync(flags.peers, 'utf8')) as { rows: BenchRow[] }).rows);
  addRatios(results);
  const table = markdownTable(results);
  const report = { suite: 'token-stats', quick, skipped, rows: results };
  if (flags.json) await writeOutput(flags.json, JSON.stringify(report, null, 2) + '\n');
  if (flags.markdown) await writeOutput(flags.markdown, `${table}\n${skipped.map((s) => `\nskipped: ${s}`).join('')}\n`);
  console.log(table);
  for (const s of skipped) console.log(`skipped: ${s}`);
}

await main();
