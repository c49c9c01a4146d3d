/**
 * The backward of SwiGLU (src/ops/swiglu.ts), act = silu(gate) ⊙ up, on WebGPU
 * (kernels/swiglu_backward.wgsl), with a float64 reference:
 *   dUp = dAct ⊙ silu(gate),  dGate = dAct ⊙ up ⊙ silu'(gate),  silu'(g) = σ(g)·(1 + g·(1 − σ(g))).
 * dGate and dUp are activation gradients: overwritten. Finite for every finite input.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { POISON_BITS } from '../dtype.js';
import { grid } from './token-stats/plan.js';
import { bindingOf, boundDispatch } from './bindings.js';
import { checkSwigluShape, type SwigluShape } from './swiglu.js';

export interface SwigluBackwardBuffers {
  /** The forward's inputs (rows·intermediate f32 each). */
  gate: GPUBuffer;
  up: GPUBuffer;
  /** Gradient of the forward's output (rows·intermediate f32). */
  dAct: GPUBuffer;
  /** Gradients of gate and up (rows·intermediate f32 each), overwritten; they alias no input. */
  dGate: GPUBuffer;
  dUp: GPUBuffer;
}

export interface PreparedSwigluBackward {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

const WORKGROUP_SIZE = 256;

/** The float64 reference, over any number of elements (gate, up and dAct of equal length). */
export function referenceSwigluBackward(gate: ArrayLike<number>, up: ArrayLike<number>, dAct: ArrayLike<number>): { dGate: Float64Array; dUp: Float64Array } {
  const dGate = new Float64Array(gate.length);
  const dUp = new Float64Array(gate.length);
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i]!;
    const e = Math.exp(-Math.abs(g));
    const sigmoid = (g >= 0 ? 1 : e) / (1 + e);
    dUp[i] = dAct[i]! * g * sigmoid;
    dGate[i] = dAct[i]! * up[i]! * (sigmoid + (g * e) / (1 + e) ** 2);
  }
  return { dGate, dUp };
}

/** Records dGate and dUp of SwiGLU over GPU buffers into a caller's pass. */
export async function prepareSwigluBackward(ctx: GpuContext, shape: SwigluShape, buffers: SwigluBackwardBuffers): Promise<PreparedSwigluBackward> {
  const { rows, intermediate, n } = checkSwigluShape(shape);
  if (buffers === null || typeof buffers !== 'object') throw new InvalidArgumentError('buffers', 'an object { gate, up, dAct, dGate, dUp }', describe(buffers));
  const entries = (['gate', 'up', 'dAct', 'dGate', 'dUp'] as const).map((name) => bindingOf(ctx, name, buffers[name], n * 4));
  const [groupsX, groupsY] = grid(Math.ceil(n / WORKGROUP_SIZE), ctx.limits.maxComputeWorkgroupsPerDimension);
  const pipeline = await ctx.pipeline('swiglu_backward', 'swiglu_backward_main');
  return ctx.scoped('swiglu_backward:prepare', () => {
    const uniform = ctx.uniform('swiglu_backward:params', new Uint32Array([n, groupsX, 0, 0]).buffer);
    return boundDispatch(ctx, pipeline, `swiglu_backward ${rows}x${intermediate}`, uniform, entries, [groupsX, groupsY]);
  });
}

/** The backward for host arrays (Float32Array, rows·intermediate each). `poison` fills dGate and dUp with NaN first. */
export async function swigluBackward(ctx: GpuContext, gate: Float32Array, up: Float32Array, dAct: Float32Array, shape: SwigluShape,
  options: { poison?: boolean } = {}): Promise<{ dGate: Float32Array; dUp: Float32Array }> {
  const { n } = checkSwigluShape(shape);
  for (const [name, value] of [['gate', gate], ['up', up], ['dAct', dAct]] as const) {
    if (!(value instanceof Float32Array) || value.length !== n) throw new InvalidArgumentError(name, `Float32Array of ${n} elements (rows·intermediate)`, describe(value));
  }
  const owned: GPUBuffer[] = [];
  const keep = (buffer: GPUBuffer): GPUBuffer => {
    owned.push(buffer);
    return buffer;
  };
  try {
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
    const output = (name: string): GPUBuffer => keep(options.poison ? ctx.upload(`swiglu_backward:${name}`, new Uint32Array(n).fill(POISON_BITS), usage) : ctx.createBuffer(`swiglu_backward:${name}`, n * 4, usage));
    const buffers = {
      gate: keep(ctx.upload('swiglu_backward:gate', gate)),
      up: keep(ctx.upload('swiglu_backward:up', up)),
      dAct: keep(ctx.upload('swiglu_backward:dAct', dAct)),
      dGate: output('dGate'),
      dUp: output('dUp'),
    };
    const prepared = await prepareSwigluBackward(ctx, shape, buffers);
    try {
      await ctx.runPass('swiglu_backward', (pass) => prepared.encode(pass));
    } finally {
      prepared.destroy();
    }
    return {
      dGate: new Float32Array(await ctx.read('swiglu_backward', buffers.dGate, n * 4)),
      dUp: new Float32Array(await ctx.read('swiglu_backward', buffers.dUp, n * 4)),
    };
  } finally {
    for (const buffer of owned) buffer.destroy();
  }
}
