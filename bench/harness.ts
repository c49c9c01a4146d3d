/** The shared machinery of benchmark suites: the environment, ceilings, benchmark.js timing, rotated inputs. */
import Benchmark from 'benchmark';
import type { HostArray } from '../src/dtype.js';
import { BackendUnavailableError, GpuError } from '../src/errors.js';
import { GpuContext } from '../src/gpu/context.js';
import type { DispatchProfile } from '../src/gpu/profile.js';
import { copyBandwidth, median, timeOnGpu } from '../src/gpu/timing.js';
import { nativeReadBandwidth, nativeStatus, type NativeStatus } from '../src/native/addon.js';
import { prepareMatmul } from '../src/ops/matmul.js';
import { prepareLinear } from '../src/ops/linear.js';
import { loadGpuJsPeer, type GpuJsPeer } from './peers/gpujs.js';
import { rowFromSamples, type BenchRow } from './schema.js';

export const BENCH_BACKENDS = ['webgpu', 'native', 'js', 'gpujs'] as const;
export type BenchBackend = (typeof BENCH_BACKENDS)[number];

/** Inputs are rotated over at least this many bytes, so caches don't flatter a result. */
const ROTATION_BYTES = 256 * 2 ** 20;
const MAX_ROTATIONS = 64;

export interface Ceiling {
  name: string;
  gbps?: number;
  gflops?: number;
}

export interface BenchEnv {
  quick: boolean;
  backends: ReadonlySet<BenchBackend>;
  gpu: GpuContext | null;
  native: NativeStatus;
  gpujs: GpuJsPeer | null;
  gpuDevice: string;
  cpuDevice: string;
  ceilings: { gpuCopy: Ceiling | null; gpuMatmul: Ceiling | null; cpuRead: Ceiling | null };
  rows: BenchRow[];
  /** Backends or sizes that did not run, each with the reason. */
  skipped: string[];
  /** With --profile: per-kernel GPU time of the policy's steps (src/gpu/profile.ts). */
  profile: boolean;
  profiles: DispatchProfile[];
}

export async function openEnvironment(quick: boolean, backends: ReadonlySet<BenchBackend>, profile = false): Promise<BenchEnv> {
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
  let gpujs: GpuJsPeer | null = null;
  if (backends.has('gpujs')) {
    const peer = await loadGpuJsPeer();
    if ('unavailable' in peer) skipped.push(`gpujs: ${peer.unavailable}`);
    else gpujs = peer;
  }
  return {
    quick, backends, gpu, native, gpujs, skipped, rows: [], profile, profiles: [],
    gpuDevice: gpu ? `${gpu.adapter?.description ?? 'caller device'} (WebGPU/Dawn)` : '',
    cpuDevice: `${process.arch} CPU, ${native.loaded ? native.threads : 1} threads`,
    ceilings: { gpuCopy: null, gpuMatmul: null, cpuRead: null },
  };
}

export function closeEnvironment(env: BenchEnv): void {
  env.gpujs?.close();
  env.gpu?.close();
}

/** The machine's ceilings, measured in this run: GPU copy bandwidth and f32 matmul FLOP/s, CPU read bandwidth. */
export async function measureCeilings(env: BenchEnv): Promise<void> {
  const { gpu, quick } = env;
  if (gpu) {
    const copyBytes = Math.min(gpu.maxBindingBytes, quick ? 128 * 2 ** 20 : 1024 * 2 ** 20);
    const c = await copyBandwidth(gpu, copyBytes, { samples: quick ? 5 : 20, warmupMs: quick ? 50 : 300 });
    env.ceilings.gpuCopy = { name: `WGSL copy of ${(copyBytes / 2 ** 20).toFixed(0)} MiB`, gbps: c.gbps };
    env.rows.push(rowFromSamples({ kernel: 'copy', backend: 'webgpu', dtype: 'u32', shape: [copyBytes / 4], device: env.gpuDevice, method: c.timing.method }, c.timing.samples, 2 * copyBytes, null));

    // 4096³ takes ~50 s on a software adapter (lavapipe); 1024³ measures the same rate there.
    // Without a peer's matmul (cuBLAS, merged in by runBench), the FLOP/s yardstick is the faster
    // of intuitor's two f32 GEMMs at size³: the generic matmul (a·b) and the transformer's linear
    // (x·Wᵀ, tuned further), so no kernel shows above 100% of a slower sibling.
    const size = quick ? 512 : gpu.adapter?.isFallbackAdapter ? 1024 : 4096;
    const a = gpu.upload('ceiling:a', new Float32Array(size * size).fill(0.5));
    const b = gpu.upload('ceiling:b', new Float32Array(size * size).fill(0.25));
    const out = gpu.createBuffer('ceiling:c', size * size * 4, GPUBufferUsage.STORAGE);
    const timing = { samples: quick ? 3 : 10, warmupMs: quick ? 50 : 300 };
    try {
      const gemms = [
        { kernel: 'matmul', note: "intuitor's tiled WGSL matmul (64×64 tiles, 4×4 per thread)", prepare: () => prepareMatmul(gpu, { m: size, k: size, n: size }, a, b, out) },
        { kernel: 'linear', note: "intuitor's WGSL linear, y = x·Wᵀ (the ceiling's other candidate)", prepare: () => prepareLinear(gpu, { m: size, k: size, n: size, weightDType: 'f32' }, a, b, null, out) },
      ];
      for (const gemm of gemms) {
        const prepared = await gemm.prepare();
        const t = await timeOnGpu(gpu, gemm.kernel, (pass) => prepared.encode(pass), timing);
        prepared.destroy();
        const row = rowFromSamples({ kernel: 'matmul', backend: gemm.kernel === 'matmul' ? 'webgpu' : 'webgpu/linear', dtype: 'f32', shape: [size, size, size], device: env.gpuDevice, method: t.method, note: gemm.note }, t.samples, 0, null);
        row.gflops = (2 * size ** 3) / (row.medianMs / 1000) / 1e9;
        env.rows.push(row);
        if (row.gflops > (env.ceilings.gpuMatmul?.gflops ?? 0)) env.ceilings.gpuMatmul = { name: `WGSL f32 ${gemm.kernel} ${size}³`, gflops: row.gflops };
      }
    } finally {
      for (const buffer of [a, b, out]) buffer.destroy();
    }
  }
  if (env.native.loaded && env.backends.has('native')) {
    const bytes = quick ? 128 * 2 ** 20 : 512 * 2 ** 20;
    const samples = await nativeReadBandwidth(bytes, quick ? 5 : 15);
    env.ceilings.cpuRead = { name: `single-pass read of ${bytes / 2 ** 20} MiB`, gbps: bytes / (median(samples) / 1000) / 1e9 };
    env.rows.push(rowFromSamples({ kernel: 'read', backend: 'native', dtype: 'f32', shape: [bytes / 4], device: env.cpuDevice, method: 'steady-clock' }, samples, bytes, null));
  }
}

/** Samples (ms) of a deferred benchmark.js run of `fn`. */
export function benchmarkJs(name: string, fn: () => Promise<unknown>, quick: boolean): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const bench = new Benchmark(name, {
      defer: true, minSamples: quick ? 3 : 8, maxTime: quick ? 0.5 : 4, initCount: 1,
      fn: (deferred: { resolve(): void }) => {
        fn().then(() => deferred.resolve(), reject);
      },
    });
    bench.on('complete', () => resolve(bench.stats.sample.map((s) => s * 1000)));
    bench.on('error', () => reject(bench.error));
    bench.run({ async: true });
  });
}

export function rotations(bytes: number): number {
  return Math.max(2, Math.min(MAX_ROTATIONS, Math.ceil(ROTATION_BYTES / bytes)));
}

/** `count` distinct copies of `data` (one value changed in each, so no two are identical). */
export function rotate<T extends HostArray>(data: T, count: number): T[] {
  return Array.from({ length: count }, (_, i) => {
    const copy = data.slice() as T;
    copy[i % copy.length] = data[(i * 7919) % data.length]!;
    return copy;
  });
}

/** Runs one benchmark case; a size that does not fit in memory is recorded as skipped and the run goes on. */
export async function runCase(env: BenchEnv, label: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    const outOfMemory = (err instanceof GpuError && err.kind === 'out-of-memory') || err instanceof RangeError;
    if (!outOfMemory) throw err;
    env.skipped.push(`${label}: out of memory (${(err as Error).message.split('\n')[0]})`);
  }
}

/** GB/s against a bandwidth ceiling of the run (the GPU copy's read + write bytes, or the CPU's read). */
export function withBandwidthCeiling(row: BenchRow, ceiling: { name: string; gbps?: number } | null): BenchRow {
  if (ceiling?.gbps && row.gbps !== null) {
    row.ceiling = { name: ceiling.name, gbps: ceiling.gbps };
    row.fractionOfCeiling = row.gbps / ceiling.gbps;
  }
  return row;
}

/** Sets a row's ceiling to the run's f32 matmul FLOP/s (when measured) and its fraction of it. */
export function withMatmulCeiling(env: BenchEnv, row: BenchRow): BenchRow {
  const ceiling = env.ceilings.gpuMatmul;
  if (ceiling?.gflops && row.gflops !== null) {
    row.ceiling = { name: ceiling.name, gflops: ceiling.gflops };
    row.fractionOfCeiling = row.gflops / ceiling.gflops;
  }
  return row;
}
