/**
 * GPU-side timing for benchmarks: a compute pass of `repeats` encodings bracketed by timestamp
 * queries gives the device time per repeat; without timestamp-query, wall time around
 * onSubmittedWorkDone of the same pass (which then includes submission latency, reported as such).
 */
import type { GpuContext } from './context.js';

export interface GpuTiming {
  /** Milliseconds per repeat, one per sample. */
  samples: number[];
  method: 'timestamp-query' | 'wall-clock';
}

export interface TimingOptions {
  /** Timed samples. */
  samples: number;
  /** Repeats per pass come in whole cycles of this many (the rotated inputs). Default 1. */
  cycle?: number;
  /** Each timed pass lasts at least this long, so timer resolution and launch gaps don't dominate. Default 10 ms. */
  minPassMs?: number;
  /** GPU work before timing, so clocks have left their idle state. Default 300 ms. */
  warmupMs?: number;
  /** Fewer samples (at least 3) when they would take longer than this in all. Default 5 s. */
  maxTimeMs?: number;
}

export async function timeOnGpu(ctx: GpuContext, label: string, encode: (pass: GPUComputePassEncoder, repeat: number) => void,
  options: TimingOptions): Promise<GpuTiming> {
  const device = ctx.device;
  const useTimestamps = ctx.hasTimestamps;
  const querySet = useTimestamps ? device.createQuerySet({ label: `${label}:timestamps`, type: 'timestamp', count: 2 }) : null;
  const resolve = useTimestamps ? ctx.createBuffer(`${label}:timestamps`, 16, GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC) : null;
  const pass = async (repeats: number): Promise<number> => {
    const start = performance.now();
    await ctx.scoped(label, () => {
      const encoder = device.createCommandEncoder({ label });
      const p = encoder.beginComputePass({
        label,
        ...(querySet ? { timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : {}),
      });
      for (let r = 0; r < repeats; r++) encode(p, r);
      p.end();
      if (querySet && resolve) encoder.resolveQuerySet(querySet, 0, 2, resolve, 0);
      device.queue.submit([encoder.finish()]);
    });
    if (resolve) {
      const [begin, end] = new BigUint64Array(await ctx.read(label, resolve, 16));
      return Number(end! - begin!) / 1e6;
    }
    await ctx.sync(label);
    return performance.now() - start;
  };
  try {
    const cycle = options.cycle ?? 1;
    const minPassMs = options.minPassMs ?? 10;
    const repeatsFor = (perCycleMs: number): number => cycle * Math.max(1, Math.ceil(minPassMs / Math.max(perCycleMs, 1e-4)));
    let perCycle = await pass(cycle);
    for (let warmed = perCycle; warmed < (options.warmupMs ?? 300);) {
      const repeats = repeatsFor(perCycle);
      const ms = await pass(repeats);
      warmed += ms;
      perCycle = (ms / repeats) * cycle;
    }
    const repeats = repeatsFor(perCycle);
    const count = Math.max(3, Math.min(options.samples, Math.floor((options.maxTimeMs ?? 5000) / (perCycle * (repeats / cycle)))));
    const samples: number[] = [];
    for (let s = 0; s < count; s++) samples.push((await pass(repeats)) / repeats);
    return { samples, method: useTimestamps ? 'timestamp-query' : 'wall-clock' };
  } finally {
    querySet?.destroy();
    resolve?.destroy();
  }
}

/** Device copy bandwidth in GB/s of (read + write) bytes, over a buffer of `bytes`. */
export async function copyBandwidth(ctx: GpuContext, bytes: number, options: TimingOptions = { samples: 10 }): Promise<{ gbps: number; timing: GpuTiming }> {
  const units = Math.floor(Math.min(bytes, ctx.maxBindingBytes) / 16);
  const src = ctx.createBuffer('copy:src', units * 16, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
  const dst = ctx.createBuffer('copy:dst', units * 16, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
  const pipeline = await ctx.pipeline('copy', 'copy_main');
  const threads = Math.min(units, 65535 * 256, 1 << 22);
  const groups = Math.ceil(threads / 256);
  const uniform = ctx.uniform('copy:params', new Uint32Array([units, groups * 256, 0, 0]).buffer);
  try {
    const probe = new Uint32Array(4096).map((_, i) => i * 2654435761);
    ctx.writeBuffer(src, 0, probe);
    const bindGroup = ctx.device.createBindGroup({
      label: 'copy', layout: pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: uniform } }, { binding: 1, resource: { buffer: src } }, { binding: 2, resource: { buffer: dst } }],
    });
    const timing = await timeOnGpu(ctx, 'copy', (pass) => {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(groups);
    }, options);
    const copied = new Uint32Array(await ctx.read('copy', dst, probe.byteLength));
    if (copied.some((v, i) => v !== probe[i])) throw new Error('copy kernel produced wrong bytes');
    const ms = median(timing.samples);
    return { gbps: (2 * units * 16) / (ms / 1000) / 1e9, timing };
  } finally {
    src.destroy();
    dst.destroy();
    uniform.destroy();
  }
}

export function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function median(values: number[]): number {
  return quantile(values, 0.5);
}
