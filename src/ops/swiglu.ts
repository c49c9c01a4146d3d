/**
 * SwiGLU, the gated activation of the Llama / Qwen2 MLP: out = silu(gate) ⊙ up with
 * silu(x) = x / (1 + e^{−x}), elementwise over (rows, intermediate) f32, on WebGPU
 * (kernels/swiglu.wgsl), with a float64 reference. Finite for every finite input.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { grid } from './token-stats/plan.js';
import { bindingOf, boundDispatch, runOnHost } from './bindings.js';

export interface SwigluShape {
  rows: number;
  /** The MLP's intermediate size: columns of gate, up and out. */
  intermediate: number;
}

const WORKGROUP_SIZE = 256;

/** Checks a shape; n = rows · intermediate elements. Shared with the backward. */
export function checkSwigluShape(shape: SwigluShape): { rows: number; intermediate: number; n: number } {
  if (shape === null || typeof shape !== 'object') throw new InvalidArgumentError('shape', 'an object { rows, intermediate }', describe(shape));
  for (const key of ['rows', 'intermediate'] as const) {
    const v = shape[key];
    if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(key, 'a positive integer', describe(v));
  }
  const n = shape.rows * shape.intermediate;
  if (n > 0xffffffff) throw new InvalidArgumentError('shape', 'rows·intermediate < 2^32', String(n));
  return { rows: shape.rows, intermediate: shape.intermediate, n };
}

/** The float64 reference, over any number of elements (gate and up of equal length). */
export function referenceSwiglu(gate: ArrayLike<number>, up: ArrayLike<number>): Float64Array {
  const out = new Float64Array(gate.length);
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i]!;
    const e = Math.exp(-Math.abs(g));
    out[i] = ((g >= 0 ? g : g * e) / (1 + e)) * up[i]!;
  }
  return out;
}

export interface PreparedSwiglu {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

/** Records out = silu(gate) ⊙ up over GPU buffers (rows·intermediate f32; out distinct) into a caller's pass. */
export async function prepareSwiglu(ctx: GpuContext, shape: SwigluShape, gate: GPUBuffer, up: GPUBuffer, out: GPUBuffer): Promise<PreparedSwiglu> {
  const { rows, intermediate, n } = checkSwigluShape(shape);
  const entries = [bindingOf(ctx, 'gate', gate, n * 4), bindingOf(ctx, 'up', up, n * 4), bindingOf(ctx, 'out', out, n * 4)];
  const [groupsX, groupsY] = grid(Math.ceil(n / WORKGROUP_SIZE), ctx.limits.maxComputeWorkgroupsPerDimension);
  const pipeline = await ctx.pipeline('swiglu', 'swiglu_main');
  return ctx.scoped('swiglu:prepare', () => {
    const uniform = ctx.uniform('swiglu:params', new Uint32Array([n, groupsX, 0, 0]).buffer);
    return boundDispatch(ctx, pipeline, `swiglu ${rows}x${intermediate}`, uniform, entries, [groupsX, groupsY]);
  });
}

/** SwiGLU for host arrays (Float32Array, rows·intermediate each). `poison` fills out with NaN first. */
export async function swiglu(ctx: GpuContext, gate: Float32Array, up: Float32Array, shape: SwigluShape, options: { poison?: boolean } = {}): Promise<Float32Array> {
  const { n } = checkSwigluShape(shape);
  if (!(gate instanceof Float32Array) || gate.length !== n) throw new InvalidArgumentError('gate', `Float32Array of ${n} elements (rows·intermediate)`, describe(gate));
  if (!(up instanceof Float32Array) || up.length !== n) throw new InvalidArgumentError('up', `Float32Array of ${n} elements (rows·intermediate)`, describe(up));
  return runOnHost(ctx, 'swiglu', { gate, up }, n, options.poison ?? false, (bufs, out) => prepareSwiglu(ctx, shape, bufs.gate!, bufs.up!, out));
}
