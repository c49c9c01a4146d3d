/**
 * The `webgpu` backend of token statistics: kernels/token_stats_forward.wgsl and
 * kernels/token_stats_backward.wgsl over GPU buffers. Inputs are assumed validated (see
 * ../token-stats.ts); this file plans windows, caches pipelines and encodes dispatches.
 *
 * `prepare*` returns an object whose `encode(pass)` records the dispatches into a caller's
 * compute pass, so a trainer or benchmark can batch them with other work (GpuContext.runPass
 * submits one on its own).
 */
import type { DType } from '../../dtype.js';
import { BYTES_PER_ELEMENT } from '../../dtype.js';
import type { GpuContext } from '../../gpu/context.js';
import { grid, planItems, type Plan } from './plan.js';

const KERNEL_FORWARD = 'token_stats_forward';
const KERNEL_BACKWARD = 'token_stats_backward';
const WORKGROUP_SIZE = 256;
const DTYPE_CODE: Record<DType, number> = { f32: 0, f16: 1, bf16: 2 };
const PARTIAL_BYTES = 24;
const FLAG_IDS = 1;
const FLAG_G_LOGPROB = 2;
const FLAG_G_SELF_CERTAINTY = 4;

export interface GpuStatsInputs {
  dtype: DType;
  rows: number;
  vocab: number;
  logits: GPUBuffer;
  ids: GPUBuffer | null;
  invTemperature: number;
}

/** Per-row outputs, f32 (validCount u32), each `rows` long. */
export interface GpuStatsOutputs {
  logsumexp: GPUBuffer;
  selfCertainty: GPUBuffer;
  entropy: GPUBuffer;
  logprob: GPUBuffer | null;
  validCount: GPUBuffer;
}

export interface GpuBackwardInputs extends GpuStatsInputs {
  logsumexp: GPUBuffer;
  validCount: GPUBuffer;
  gLogprob: GPUBuffer | null;
  gSelfCertainty: GPUBuffer | null;
  /** f32 (rows · vocab) destination; its size a multiple of 16 bytes. */
  grad: GPUBuffer;
}

/** Work-split tuning (defaults in ./plan.ts); benchmarks sweep it, callers rarely need to. */
export interface PlanTuning {
  targetWorkgroups?: number;
  minChunk?: number;
}

export interface PreparedDispatch {
  encode(pass: GPUComputePassEncoder): void;
  /** Releases the buffers the preparation made (uniforms, partials), not inputs or outputs. */
  destroy(): void;
}

const placeholders = new WeakMap<GpuContext, { input: GPUBuffer; output: GPUBuffer }>();

/**
 * A 16-byte storage buffer bound where an optional input or output is absent. Inputs and outputs
 * get different ones: one buffer may not be both read-only and writable in a dispatch.
 */
function placeholder(ctx: GpuContext, role: 'input' | 'output'): GPUBuffer {
  let pair = placeholders.get(ctx);
  if (!pair) {
    pair = {
      input: ctx.createBuffer('token_stats:absent_input', 16, GPUBufferUsage.STORAGE),
      output: ctx.createBuffer('token_stats:absent_output', 16, GPUBufferUsage.STORAGE),
    };
    placeholders.set(ctx, pair);
  }
  return pair[role];
}

function windowParams(plan: Plan, w: Plan['windows'][number], flags: number, invTemperature: number, groupsX: number): ArrayBuffer {
  const data = new ArrayBuffer(48);
  const u32 = new Uint32Array(data);
  u32.set([plan.vocab, plan.chunkLen, plan.chunksPerRow, w.firstItem, w.itemCount, w.firstItemOffset, groupsX, flags]);
  new Float32Array(data)[8] = invTemperature;
  return data;
}

function makePlan(ctx: GpuContext, inputs: GpuStatsInputs, tuning: PlanTuning): Plan {
  return planItems(inputs.rows, inputs.vocab, BYTES_PER_ELEMENT[inputs.dtype], ctx.maxBindingBytes, tuning.targetWorkgroups, tuning.minChunk);
}

function logitsWindow(inputs: GpuStatsInputs, w: Plan['windows'][number]): { offset: number; size: number } {
  const bpe = BYTES_PER_ELEMENT[inputs.dtype];
  const offset = w.firstElement * bpe;
  // Whole 16-byte units: the vec4 view needs at least one, and the buffer is padded to 16.
  const size = Math.min(Math.ceil((w.elementCount * bpe) / 16) * 16, inputs.logits.size - offset);
  return { offset, size };
}

export function allocateOutputs(ctx: GpuContext, rows: number, withLogprob: boolean): GpuStatsOutputs {
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  return {
    logsumexp: ctx.createBuffer('token_stats:logsumexp', rows * 4, usage),
    selfCertainty: ctx.createBuffer('token_stats:self_certainty', rows * 4, usage),
    entropy: ctx.createBuffer('token_stats:entropy', rows * 4, usage),
    logprob: withLogprob ? ctx.createBuffer('token_stats:logprob', rows * 4, usage) : null,
    validCount: ctx.createBuffer('token_stats:valid_count', rows * 4, usage),
  };
}

export async function prepareForward(ctx: GpuContext, inputs: GpuStatsInputs, outputs: GpuStatsOutputs, tuning: PlanTuning = {}): Promise<PreparedDispatch> {
  const constants = { DTYPE: DTYPE_CODE[inputs.dtype], WG: WORKGROUP_SIZE };
  const [partialsPipeline, finalizePipeline] = await Promise.all([
    ctx.pipeline(KERNEL_FORWARD, 'partials_main', constants),
    ctx.pipeline(KERNEL_FORWARD, 'finalize_main', constants),
  ]);
  return ctx.scoped('token_stats:prepare', () => encodeForward(ctx, inputs, outputs, makePlan(ctx, inputs, tuning), partialsPipeline, finalizePipeline));
}

function encodeForward(ctx: GpuContext, inputs: GpuStatsInputs, outputs: GpuStatsOutputs, plan: Plan,
  partialsPipeline: GPUComputePipeline, finalizePipeline: GPUComputePipeline): PreparedDispatch {
  const device = ctx.device;
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;
  const flags = inputs.ids ? FLAG_IDS : 0;
  const ids = inputs.ids ?? placeholder(ctx, 'input');
  const owned: GPUBuffer[] = [];
  const partials = ctx.createBuffer('token_stats:partials', plan.items * PARTIAL_BYTES, GPUBufferUsage.STORAGE);
  const chosen = ctx.createBuffer('token_stats:chosen', inputs.rows * 4, GPUBufferUsage.STORAGE);
  owned.push(partials, chosen);

  const steps: { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup; groups: [number, number] }[] = [];
  for (const w of plan.windows) {
    const groups = grid(w.itemCount, maxGroups);
    const uniform = ctx.uniform('token_stats:forward_params', windowParams(plan, w, flags, inputs.invTemperature, groups[0]));
    owned.push(uniform);
    const win = logitsWindow(inputs, w);
    const bindGroup = device.createBindGroup({
      label: `token_stats:partials[${w.firstItem}+${w.itemCount}]`,
      layout: partialsPipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: uniform } },
        { binding: 1, resource: { buffer: inputs.logits, offset: win.offset, size: win.size } },
        { binding: 2, resource: { buffer: inputs.logits, offset: win.offset, size: win.size } },
        { binding: 3, resource: { buffer: ids } },
        { binding: 4, resource: { buffer: partials } },
        { binding: 5, resource: { buffer: chosen } },
      ],
    });
    steps.push({ pipeline: partialsPipeline, bindGroup, groups });
  }

  const finParams = new Uint32Array([inputs.rows, plan.chunksPerRow, inputs.vocab, flags]);
  const finUniform = ctx.uniform('token_stats:finalize_params', finParams.buffer);
  owned.push(finUniform);
  const finEntries: GPUBindGroupEntry[] = [
    { binding: 10, resource: { buffer: finUniform } },
    { binding: 11, resource: { buffer: partials } },
    { binding: 12, resource: { buffer: ids } },
    { binding: 13, resource: { buffer: chosen } },
    { binding: 14, resource: { buffer: outputs.logsumexp } },
    { binding: 15, resource: { buffer: outputs.selfCertainty } },
    { binding: 16, resource: { buffer: outputs.entropy } },
    { binding: 17, resource: { buffer: outputs.logprob ?? placeholder(ctx, 'output') } },
    { binding: 18, resource: { buffer: outputs.validCount } },
  ];
  steps.push({
    pipeline: finalizePipeline,
    bindGroup: device.createBindGroup({ label: 'token_stats:finalize', layout: finalizePipeline.getBindGroupLayout(0), entries: finEntries }),
    groups: grid(inputs.rows, maxGroups),
  });

  return {
    encode(pass) {
      for (const s of steps) {
        pass.setPipeline(s.pipeline);
        pass.setBindGroup(0, s.bindGroup);
        pass.dispatchWorkgroups(s.groups[0], s.groups[1]);
      }
    },
    destroy() {
      for (const b of owned) b.destroy();
    },
  };
}

export async function prepareBackward(ctx: GpuContext, inputs: GpuBackwardInputs, tuning: PlanTuning = {}): Promise<PreparedDispatch> {
  const pipeline = await ctx.pipeline(KERNEL_BACKWARD, 'backward_main', { DTYPE: DTYPE_CODE[inputs.dtype], WG: WORKGROUP_SIZE });
  return ctx.scoped('token_stats_backward:prepare', () => encodeBackward(ctx, inputs, makePlan(ctx, inputs, tuning), pipeline));
}

function encodeBackward(ctx: GpuContext, inputs: GpuBackwardInputs, plan: Plan, pipeline: GPUComputePipeline): PreparedDispatch {
  const device = ctx.device;
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;
  const flags = (inputs.ids ? FLAG_IDS : 0) | (inputs.gLogprob ? FLAG_G_LOGPROB : 0) | (inputs.gSelfCertainty ? FLAG_G_SELF_CERTAINTY : 0);
  const owned: GPUBuffer[] = [];
  const steps: { bindGroup: GPUBindGroup; groups: [number, number] }[] = [];
  for (const w of plan.windows) {
    const groups = grid(w.itemCount, maxGroups);
    const uniform = ctx.uniform('token_stats:backward_params', windowParams(plan, w, flags, inputs.invTemperature, groups[0]));
    owned.push(uniform);
    const win = logitsWindow(inputs, w);
    const gradOffset = w.firstElement * 4;
    const gradSize = Math.min(Math.ceil(w.elementCount / 4) * 16, inputs.grad.size - gradOffset);
    const bindGroup = device.createBindGroup({
      label: `token_stats:backward[${w.firstItem}+${w.itemCount}]`,
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: uniform } },
        { binding: 1, resource: { buffer: inputs.logits, offset: win.offset, size: win.size } },
        { binding: 2, resource: { buffer: inputs.logits, offset: win.offset, size: win.size } },
        { binding: 3, resource: { buffer: inputs.ids ?? placeholder(ctx, 'input') } },
        { binding: 4, resource: { buffer: inputs.logsumexp } },
        { binding: 5, resource: { buffer: inputs.validCount } },
        { binding: 6, resource: { buffer: inputs.gLogprob ?? placeholder(ctx, 'input') } },
        { binding: 7, resource: { buffer: inputs.gSelfCertainty ?? placeholder(ctx, 'input') } },
        { binding: 8, resource: { buffer: inputs.grad, offset: gradOffset, size: gradSize } },
      ],
    });
    steps.push({ bindGroup, groups });
  }
  return {
    encode(pass) {
      pass.setPipeline(pipeline);
      for (const s of steps) {
        pass.setBindGroup(0, s.bindGroup);
        pass.dispatchWorkgroups(s.groups[0], s.groups[1]);
      }
    },
    destroy() {
      for (const b of owned) b.destroy();
    },
  };
}
