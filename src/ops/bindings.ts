/**
 * Shared by the ops: checking a caller's GPU buffer for a binding, and running an op once on
 * host arrays (upload, optional poisoned output, one pass, read back).
 */
import { POISON_BITS } from '../dtype.js';
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';

/** The binding of `bytes` (rounded up to whole words) of `buffer` from `offset` (default 0), named `name` in errors. */
export function bindingOf(ctx: GpuContext, name: string, buffer: GPUBuffer, bytes: number, offset = 0): GPUBufferBinding {
  const size = Math.ceil(bytes / 4) * 4;
  if (buffer === null || typeof buffer !== 'object' || typeof buffer.size !== 'number') throw new InvalidArgumentError(name, 'a GPUBuffer', describe(buffer));
  if (buffer.size < offset + size) throw new InvalidArgumentError(name, `a GPUBuffer of at least ${offset + size} bytes`, `${buffer.size} bytes`);
  if (size > ctx.maxBindingBytes) throw new InvalidArgumentError(name, `at most ${ctx.maxBindingBytes} bytes (the context's maxBindingBytes)`, `${size} bytes`);
  return offset === 0 ? { buffer, size } : { buffer, offset, size };
}

interface PreparedOp {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

/**
 * Runs an op once on host data: uploads each input (null stays null), makes a float32 output of
 * `out` elements (filled with POISON_BITS first when `poison`), or holding `out`'s values for an
 * op that adds into its output, records `prepare`'s dispatch in one pass and returns the output.
 * Every buffer it made is destroyed, whatever happens.
 */
export async function runOnHost<K extends string>(ctx: GpuContext, op: string, inputs: Record<K, ArrayBufferView | null>, out: number | Float32Array, poison: boolean,
  prepare: (buffers: Record<K, GPUBuffer | null>, out: GPUBuffer) => Promise<PreparedOp>): Promise<Float32Array> {
  const owned: GPUBuffer[] = [];
  try {
    const buffers = {} as Record<K, GPUBuffer | null>;
    for (const name of Object.keys(inputs) as K[]) {
      const data = inputs[name];
      buffers[name] = data === null ? null : ctx.upload(`${op}:${name}`, data);
      if (buffers[name]) owned.push(buffers[name]!);
    }
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
    const outElements = typeof out === 'number' ? out : out.length;
    const outBuffer = typeof out !== 'number' ? ctx.upload(`${op}:out`, out, usage)
      : poison ? ctx.upload(`${op}:out`, new Uint32Array(outElements).fill(POISON_BITS), usage) : ctx.createBuffer(`${op}:out`, outElements * 4, usage);
    owned.push(outBuffer);
    const prepared = await prepare(buffers, outBuffer);
    try {
      await ctx.runPass(op, (pass) => prepared.encode(pass));
    } finally {
      prepared.destroy();
    }
    return new Float32Array(await ctx.read(op, outBuffer, outElements * 4));
  } finally {
    for (const buffer of owned) buffer.destroy();
  }
}

/**
 * The bind group of [uniform, ...resources] in binding order for `pipeline`, and the prepared
 * single dispatch over it; destroy() frees the uniform (and `owned`). Call inside ctx.scoped.
 */
export function boundDispatch(ctx: GpuContext, pipeline: GPUComputePipeline, label: string, uniform: GPUBuffer, resources: GPUBindingResource[],
  groups: readonly [number, number?, number?], owned: GPUBuffer[] = []): PreparedOp {
  const bindGroup = ctx.device.createBindGroup({
    label,
    layout: pipeline.getBindGroupLayout(0),
    entries: [{ buffer: uniform }, ...resources].map((resource, binding) => ({ binding, resource })),
  });
  return {
    encode(pass: GPUComputePassEncoder) {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(...groups);
    },
    destroy() {
      uniform.destroy();
      for (const buffer of owned) buffer.destroy();
    },
  };
}

/**
 * A prepared op of several dispatches sharing one uniform (binding 0; a dispatch may bring its
 * own, e.g. one per row window): add() binds and records a dispatch, prepared() encodes them in
 * order and frees `owned` on destroy. Call inside ctx.scoped.
 */
export class DispatchList {
  private readonly steps: { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup; groups: readonly [number, number, number] }[] = [];

  constructor(private readonly ctx: GpuContext, private readonly label: string, private readonly uniform: GPUBuffer, private readonly owned: GPUBuffer[]) {}

  add(pipeline: GPUComputePipeline, name: string, entries: [number, GPUBufferBinding][], groups: readonly [number, number, number], uniform = this.uniform): void {
    const bindGroup = this.ctx.device.createBindGroup({
      label: `${this.label} ${name}`,
      layout: pipeline.getBindGroupLayout(0),
      entries: [[0, { buffer: uniform }] as [number, GPUBufferBinding], ...entries].map(([binding, resource]) => ({ binding, resource })),
    });
    this.steps.push({ pipeline, bindGroup, groups });
  }

  prepared(): PreparedOp {
    const { steps, owned } = this;
    return {
      encode(pass: GPUComputePassEncoder) {
        for (const s of steps) {
          pass.setPipeline(s.pipeline);
          pass.setBindGroup(0, s.bindGroup);
          pass.dispatchWorkgroups(...s.groups);
        }
      },
      destroy() {
        for (const buffer of owned) buffer.destroy();
      },
    };
  }
}
