/**
 * The global gradient norm for clipping (PyTorch's clip_grad_norm_ with the 2-norm): per-tensor
 * sums of squares of many f32 gradient buffers on WebGPU (kernels/sum_squares.wgsl), in a fixed
 * order so that equal gradients give equal bits, into one small buffer that the host reads once
 * per step; the total norm, the clipping factor and the non-finite check are then host arithmetic
 * in float64.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { grid } from '../ops/token-stats/plan.js';

export interface GradTensor {
  /** Names the tensor in errors and in firstNonFinite. Unique. */
  name: string;
  /** At least numel·4 bytes of f32. */
  buffer: GPUBuffer;
  numel: number;
}

export interface BindingWindow {
  /** First element of the window. */
  offset: number;
  /** Elements in the window. */
  count: number;
}

/**
 * Cuts `numel` f32 elements into binding windows of at most maxBindingBytes each, every window
 * but the last a multiple of `multiple` elements long (so every offset is one too). One window
 * when the whole tensor fits. `argument` names the tensor in the error when it cannot be cut.
 */
export function bindingWindows(argument: string, numel: number, maxBindingBytes: number, multiple: number): BindingWindow[] {
  if (numel * 4 <= maxBindingBytes) return [{ offset: 0, count: numel }];
  const windowElements = Math.floor(maxBindingBytes / 4 / multiple) * multiple;
  if (windowElements === 0) {
    throw new InvalidArgumentError(argument, `a tensor that fits one binding of maxBindingBytes (${maxBindingBytes}), or a context whose maxBindingBytes is at least ${multiple * 4}`, `${numel} elements`);
  }
  const windows: BindingWindow[] = [];
  for (let offset = 0; offset < numel; offset += windowElements) windows.push({ offset, count: Math.min(windowElements, numel - offset) });
  return windows;
}

/** Checks a list of { name, buffer, numel } (f32 buffers) handed to an optimiser-side op. */
export function checkTensorList<T extends { name: string; numel: number }>(argument: string, list: readonly T[], buffers: readonly (keyof T & string)[]): T[] {
  if (!Array.isArray(list) || list.length === 0) throw new InvalidArgumentError(argument, 'a non-empty array', describe(list));
  const names = new Set<string>();
  list.forEach((item, i) => {
    const at = `${argument}[${i}]`;
    if (item === null || typeof item !== 'object') throw new InvalidArgumentError(at, 'an object', describe(item));
    if (typeof item.name !== 'string' || item.name === '') throw new InvalidArgumentError(`${at}.name`, 'a non-empty string', describe(item.name));
    if (names.has(item.name)) throw new InvalidArgumentError(`${at}.name`, 'a name not used by an earlier entry', JSON.stringify(item.name));
    names.add(item.name);
    if (!Number.isSafeInteger(item.numel) || item.numel < 1 || item.numel > 0xffffffff) throw new InvalidArgumentError(`${at}.numel`, 'a positive integer below 2^32', describe(item.numel));
    for (const key of buffers) {
      const buffer = item[key] as unknown as GPUBuffer;
      if (buffer === null || typeof buffer !== 'object' || typeof buffer.size !== 'number') throw new InvalidArgumentError(`${at}.${key}`, 'a GPUBuffer', describe(buffer));
      if (buffer.size < item.numel * 4) throw new InvalidArgumentError(`${at}.${key}`, `a GPUBuffer of at least ${item.numel * 4} bytes (numel f32)`, `${buffer.size} bytes (${JSON.stringify(item.name)})`);
    }
  });
  return [...list];
}

/** Elements one workgroup of block_main reduces; windows are multiples of it (see the kernel). */
const BLOCK = 4096;

export interface PreparedGradSquares {
  /** One f32 per tensor, in the order given: its Σ g². STORAGE | COPY_SRC | COPY_DST. */
  readonly out: GPUBuffer;
  /** The tensors' names, in the order of `out`. */
  readonly names: readonly string[];
  /** Records both stages into a caller's pass. */
  encode(pass: GPUComputePassEncoder): void;
  /** Reads `out` (after the pass was submitted) as float64 values. */
  read(): Promise<Float64Array>;
  destroy(): void;
}

function bindGroup(ctx: GpuContext, pipeline: GPUComputePipeline, label: string, entries: [number, GPUBufferBinding][]): GPUBindGroup {
  return ctx.device.createBindGroup({ label, layout: pipeline.getBindGroupLayout(0), entries: entries.map(([binding, resource]) => ({ binding, resource })) });
}

/** Prepares the sums of squares of `tensors` (f32 gradient buffers), one value per tensor in `out`. */
export async function prepareGradSquares(ctx: GpuContext, tensors: readonly GradTensor[]): Promise<PreparedGradSquares> {
  const list = checkTensorList('tensors', tensors, ['buffer']);
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;
  // The plan: every window of every tensor, with the index of its first partial.
  const windows = list.map((tensor, t) => bindingWindows(`tensors[${t}].numel`, tensor.numel, ctx.maxBindingBytes, BLOCK));
  const ranges = new Uint32Array(list.length * 2);
  let partialCount = 0;
  const plan = windows.flatMap((tensorWindows, t) => {
    ranges[2 * t] = partialCount;
    return tensorWindows.map((window) => {
      const blocks = Math.ceil(window.count / BLOCK);
      const partialOffset = partialCount;
      partialCount += blocks;
      ranges[2 * t + 1] = partialCount - ranges[2 * t]!;
      return { tensor: list[t]!, window, blocks, partialOffset };
    });
  });
  const [blockPipeline, tensorPipeline] = await Promise.all([ctx.pipeline('sum_squares', 'block_main'), ctx.pipeline('sum_squares', 'tensor_main')]);
  return ctx.scoped('sum_squares:prepare', () => {
    const owned: GPUBuffer[] = [];
    const make = (buffer: GPUBuffer): GPUBuffer => {
      owned.push(buffer);
      return buffer;
    };
    const partials = make(ctx.createBuffer('sum_squares:partials', partialCount * 4, GPUBufferUsage.STORAGE));
    const out = make(ctx.createBuffer('sum_squares:out', list.length * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST));
    const rangesBuffer = make(ctx.upload('sum_squares:ranges', ranges));
    const dispatches: { pipeline: GPUComputePipeline; group: GPUBindGroup; groups: [number, number] }[] = [];
    for (const { tensor, window, blocks, partialOffset } of plan) {
      const [groupsX, groupsY] = grid(blocks, maxGroups);
      const uniform = make(ctx.uniform('sum_squares:block-params', new Uint32Array([window.count, partialOffset, groupsX, 0]).buffer));
      const group = bindGroup(ctx, blockPipeline, `sum_squares ${tensor.name} [${window.offset}, +${window.count})`, [
        [0, { buffer: uniform }],
        [1, { buffer: partials, size: partialCount * 4 }],
        [2, { buffer: tensor.buffer, offset: window.offset * 4, size: window.count * 4 }],
      ]);
      dispatches.push({ pipeline: blockPipeline, group, groups: [groupsX, groupsY] });
    }
    const [groupsX, groupsY] = grid(list.length, maxGroups);
    const uniform = make(ctx.uniform('sum_squares:tensor-params', new Uint32Array([list.length, 0, groupsX, 0]).buffer));
    const group = bindGroup(ctx, tensorPipeline, `sum_squares ${list.length} tensors`, [
      [0, { buffer: uniform }],
      [1, { buffer: partials, size: partialCount * 4 }],
      [3, { buffer: rangesBuffer, size: ranges.byteLength }],
      [4, { buffer: out, size: list.length * 4 }],
    ]);
    dispatches.push({ pipeline: tensorPipeline, group, groups: [groupsX, groupsY] });
    return {
      out,
      names: list.map((tensor) => tensor.name),
      encode(pass: GPUComputePassEncoder) {
        for (const { pipeline, group: bound, groups } of dispatches) {
          pass.setPipeline(pipeline);
          pass.setBindGroup(0, bound);
          pass.dispatchWorkgroups(...groups);
        }
      },
      async read() {
        return Float64Array.from(new Float32Array(await ctx.read('sum_squares', out, list.length * 4)));
      },
      destroy() {
        for (const buffer of owned) buffer.destroy();
      },
    };
  });
}

/** The float64 reference: Σ x². */
export function referenceSumSquares(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  return s;
}

/** The global 2-norm from per-tensor sums of squares: sqrt(Σ sums), added in order in float64. */
export function globalNorm(sums: ArrayLike<number>): number {
  let total = 0;
  for (let i = 0; i < sums.length; i++) total += sums[i]!;
  return Math.sqrt(total);
}

/**
 * The factor clip_grad_norm_ multiplies gradients by: min(1, maxNorm / (totalNorm + 1e-6)).
 * Pass it to AdamW as gradScale. A non-finite totalNorm is refused: find the culprit with
 * firstNonFinite (PyTorch would silently scale by NaN).
 */
export function clipScale(totalNorm: number, maxNorm: number): number {
  if (typeof totalNorm !== 'number' || !Number.isFinite(totalNorm) || totalNorm < 0) throw new InvalidArgumentError('totalNorm', 'a finite number ≥ 0 (see firstNonFinite)', describe(totalNorm));
  if (typeof maxNorm !== 'number' || !Number.isFinite(maxNorm) || maxNorm <= 0) throw new InvalidArgumentError('maxNorm', 'a finite number > 0', describe(maxNorm));
  return Math.min(1, maxNorm / (totalNorm + 1e-6));
}

/** The name of the first tensor whose sum of squares is NaN or ±inf, or null when all are finite. */
export function firstNonFinite(names: readonly string[], sums: ArrayLike<number>): string | null {
  if (names.length !== sums.length) throw new InvalidArgumentError('sums', `${names.length} values (one per name)`, `${sums.length}`);
  for (let i = 0; i < sums.length; i++) if (!Number.isFinite(sums[i])) return names[i]!;
  return null;
}
