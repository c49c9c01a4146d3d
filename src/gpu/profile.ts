/**
 * Where a recorded pass spends its GPU time, kernel by kernel. The dispatches `encode` records
 * into a compute pass (any prepared op or model step) are replayed each in a compute pass of its
 * own with timestamp writes around it, `repeats` times; each dispatch keeps its median, and the
 * times are summed per pipeline (kernel, entry point and overrides, from its label).
 * A pass of its own per dispatch adds a pass's start to every time and drains the GPU between
 * dispatches, so the total exceeds the time of the one pass; the shares still show where the time
 * goes, and the dispatch counts what a step is made of.
 */
import { BackendUnavailableError, InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from './context.js';

export interface DispatchProfileRow {
  /** The pipeline's label: kernel, entry point and override constants. */
  kernel: string;
  dispatches: number;
  ms: number;
  /** ms over the total of every row. */
  share: number;
}

export interface DispatchProfile {
  name: string;
  dispatches: number;
  totalMs: number;
  rows: DispatchProfileRow[];
}

interface RecordedDispatch {
  pipeline: GPUComputePipeline;
  bindGroups: Map<number, GPUBindGroup>;
  groups: [number, number?, number?];
}

/** Timestamps per query set (the WebGPU limit is 4096): 2 per dispatch. */
const DISPATCHES_PER_QUERY_SET = 2048;

/** Records what `encode` does to a pass: setPipeline, setBindGroup (no dynamic offsets) and dispatchWorkgroups only. */
function record(encode: (pass: GPUComputePassEncoder) => void): RecordedDispatch[] {
  const dispatches: RecordedDispatch[] = [];
  let pipeline: GPUComputePipeline | null = null;
  const bindGroups = new Map<number, GPUBindGroup>();
  const recorder = {
    label: 'profile',
    setPipeline(p: GPUComputePipeline) {
      pipeline = p;
    },
    setBindGroup(index: number, group: GPUBindGroup | null, offsets?: unknown) {
      if (offsets !== undefined && (offsets as ArrayLike<number>).length > 0) throw new InvalidArgumentError('encode', 'bind groups without dynamic offsets', 'dynamic offsets');
      if (group) bindGroups.set(index, group);
      else bindGroups.delete(index);
    },
    dispatchWorkgroups(x: number, y?: number, z?: number) {
      if (!pipeline) throw new InvalidArgumentError('encode', 'setPipeline before each dispatch', 'a dispatch with no pipeline');
      dispatches.push({ pipeline, bindGroups: new Map(bindGroups), groups: [x, y, z] });
    },
  };
  encode(new Proxy(recorder, {
    get(target, key) {
      if (key in target) return target[key as keyof typeof target];
      throw new InvalidArgumentError('encode', 'a pass of setPipeline, setBindGroup and dispatchWorkgroups calls', `a call to ${String(key)}, which the profile does not replay`);
    },
  }) as unknown as GPUComputePassEncoder);
  return dispatches;
}

/** Per-kernel GPU time of the dispatches `encode` records (see the file comment). Needs timestamp queries. */
export async function profileDispatches(ctx: GpuContext, name: string, encode: (pass: GPUComputePassEncoder) => void, { repeats = 3 } = {}): Promise<DispatchProfile> {
  if (typeof encode !== 'function') throw new InvalidArgumentError('encode', 'a function recording dispatches into a pass', describe(encode));
  if (!Number.isSafeInteger(repeats) || repeats < 1) throw new InvalidArgumentError('repeats', 'a positive integer', describe(repeats));
  if (!ctx.hasTimestamps) throw new BackendUnavailableError('webgpu', 'profiling needs the timestamp-query feature, which this adapter lacks');
  const dispatches = record(encode);
  const times = dispatches.map(() => [] as number[]);
  for (let r = 0; r < repeats; r++) {
    for (let first = 0; first < dispatches.length; first += DISPATCHES_PER_QUERY_SET) {
      const chunk = dispatches.slice(first, first + DISPATCHES_PER_QUERY_SET);
      const querySet = ctx.device.createQuerySet({ label: `profile:${name}`, type: 'timestamp', count: 2 * chunk.length });
      const resolve = ctx.createBuffer(`profile:${name}`, 16 * chunk.length, GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC);
      try {
        await ctx.scoped(`profile:${name}`, () => {
          const encoder = ctx.device.createCommandEncoder({ label: `profile:${name}` });
          chunk.forEach((d, i) => {
            const pass = encoder.beginComputePass({ label: `profile:${name}`, timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
            pass.setPipeline(d.pipeline);
            for (const [index, group] of d.bindGroups) pass.setBindGroup(index, group);
            pass.dispatchWorkgroups(...d.groups);
            pass.end();
          });
          encoder.resolveQuerySet(querySet, 0, 2 * chunk.length, resolve, 0);
          ctx.device.queue.submit([encoder.finish()]);
        });
        const stamps = new BigUint64Array(await ctx.read(`profile:${name}`, resolve, 16 * chunk.length));
        chunk.forEach((_, i) => times[first + i]!.push(Number(stamps[2 * i + 1]! - stamps[2 * i]!) / 1e6));
      } finally {
        querySet.destroy();
        resolve.destroy();
      }
    }
  }
  const perKernel = new Map<string, { dispatches: number; ms: number }>();
  dispatches.forEach((d, i) => {
    const sorted = times[i]!.sort((a, b) => a - b);
    const kernel = d.pipeline.label || '(unlabelled pipeline)';
    const entry = perKernel.get(kernel) ?? { dispatches: 0, ms: 0 };
    entry.dispatches++;
    entry.ms += sorted[Math.floor(sorted.length / 2)]!;
    perKernel.set(kernel, entry);
  });
  const totalMs = [...perKernel.values()].reduce((sum, e) => sum + e.ms, 0);
  const rows = [...perKernel].map(([kernel, e]) => ({ kernel, dispatches: e.dispatches, ms: e.ms, share: totalMs > 0 ? e.ms / totalMs : 0 }))
    .sort((a, b) => b.ms - a.ms);
  return { name, dispatches: dispatches.length, totalMs, rows };
}

/** A profile as a Markdown table, the costliest kernel first. */
export function profileTable(profile: DispatchProfile): string {
  const lines = [
    `${profile.name}: ${profile.dispatches} dispatches, ${profile.totalMs.toFixed(3)} ms summed over one pass per dispatch`, '',
    '| kernel | dispatches | ms | share |', '| --- | --- | --- | --- |',
  ];
  for (const r of profile.rows) lines.push(`| ${r.kernel} | ${r.dispatches} | ${r.ms.toFixed(3)} | ${(100 * r.share).toFixed(1)}% |`);
  return lines.join('\n');
}
