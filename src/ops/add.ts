/**
 * out = a + b elementwise in f32 (residual connections), on WebGPU (kernels/add.wgsl), with a
 * float64 reference. In place is supported: pass out === a (or out === b) and the kernel's
 * in-place entry point binds that buffer once, read-write.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { grid } from './token-stats/plan.js';
import { bindingOf, runOnHost } from './bindings.js';

export interface AddShape {
  /** Elements of a, b and out. */
  n: number;
}

const WORKGROUP_SIZE = 256;

function checkShape(shape: AddShape): number {
  if (shape === null || typeof shape !== 'object') throw new InvalidArgumentError('shape', 'an object { n }', describe(shape));
  if (!Number.isSafeInteger(shape.n) || shape.n < 1 || shape.n > 0xffffffff) throw new InvalidArgumentError('n', 'a positive integer below 2^32', describe(shape.n));
  return shape.n;
}

/** The float64 reference. */
export function referenceAdd(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  return Float64Array.from({ length: a.length }, (_, i) => a[i]! + b[i]!);
}

export interface PreparedAdd {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

/**
 * Records out = a + b over GPU buffers (n f32 each) into a caller's pass. out may be a or b (in
 * place); otherwise it must be a third buffer.
 */
export async function prepareAdd(ctx: GpuContext, shape: AddShape, a: GPUBuffer, b: GPUBuffer, out: GPUBuffer): Promise<PreparedAdd> {
  const n = checkShape(shape);
  const bytes = n * 4;
  const inPlace = out === a || out === b;
  if (inPlace && a === b) throw new InvalidArgumentError('out', 'a buffer other than a when a and b are the same buffer', 'out === a === b');
  const entries: GPUBindGroupEntry[] = inPlace
    ? [{ binding: 4, resource: bindingOf(ctx, 'out', out, bytes) }, { binding: 2, resource: bindingOf(ctx, out === a ? 'b' : 'a', out === a ? b : a, bytes) }]
    : [{ binding: 1, resource: bindingOf(ctx, 'a', a, bytes) }, { binding: 2, resource: bindingOf(ctx, 'b', b, bytes) }, { binding: 3, resource: bindingOf(ctx, 'out', out, bytes) }];
  const [groupsX, groupsY] = grid(Math.ceil(n / WORKGROUP_SIZE), ctx.limits.maxComputeWorkgroupsPerDimension);
  const pipeline = await ctx.pipeline('add', inPlace ? 'add_inplace_main' : 'add_main');
  return ctx.scoped('add:prepare', () => {
    const uniform = ctx.uniform('add:params', new Uint32Array([n, groupsX, 0, 0]).buffer);
    const bindGroup = ctx.device.createBindGroup({
      label: `add ${n}${inPlace ? ' in place' : ''}`,
      layout: pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: uniform } }, ...entries],
    });
    return {
      encode(pass: GPUComputePassEncoder) {
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bindGroup);
        pass.dispatchWorkgroups(groupsX, groupsY);
      },
      destroy() {
        uniform.destroy();
      },
    };
  });
}

/** a + b for host arrays (Float32Array of equal length). `poison` fills out with NaN first. */
export async function add(ctx: GpuContext, a: Float32Array, b: Float32Array, options: { poison?: boolean } = {}): Promise<Float32Array> {
  if (!(a instanceof Float32Array) || a.length === 0) throw new InvalidArgumentError('a', 'a non-empty Float32Array', describe(a));
  const n = a.length;
  if (!(b instanceof Float32Array) || b.length !== n) throw new InvalidArgumentError('b', `Float32Array of ${n} elements (a's length)`, describe(b));
  return runOnHost(ctx, 'add', { a, b }, n, options.poison ?? false, (bufs, out) => prepareAdd(ctx, { n }, bufs.a!, bufs.b!, out));
}
