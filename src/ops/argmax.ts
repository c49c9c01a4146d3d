/** Row-wise argmax on WebGPU (kernels/argmax.wgsl): greedy decoding reads back token ids only. */
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { boundDispatch } from './bindings.js';
import { grid } from './token-stats/plan.js';

export interface ArgmaxShape {
  rows: number;
  cols: number;
}

/** Lowest index of each row's maximum, as torch.argmax. */
export function referenceArgmax(x: ArrayLike<number>, { rows, cols }: ArgmaxShape): Uint32Array {
  const out = new Uint32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let c = 1; c < cols; c++) if (x[r * cols + c]! > x[r * cols + best]!) best = c;
    out[r] = best;
  }
  return out;
}

export async function prepareArgmax(ctx: GpuContext, shape: ArgmaxShape, x: GPUBuffer, out: GPUBuffer): Promise<{ encode(pass: GPUComputePassEncoder): void; destroy(): void }> {
  const { rows, cols } = shape;
  for (const [k, v] of [['rows', rows], ['cols', cols]] as const) if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(k, 'a positive integer', describe(v));
  if (x.size < rows * cols * 4) throw new InvalidArgumentError('x', `a GPUBuffer of at least ${rows * cols * 4} bytes`, `${x.size} bytes`);
  if (out.size < rows * 4) throw new InvalidArgumentError('out', `a GPUBuffer of at least ${rows * 4} bytes`, `${out.size} bytes`);
  const pipeline = await ctx.pipeline('argmax', 'argmax_main');
  return ctx.scoped('argmax:prepare', () => {
    const groups = grid(rows, ctx.limits.maxComputeWorkgroupsPerDimension);
    const uniform = ctx.uniform('argmax:params', new Uint32Array([rows, cols, groups[0], 0]).buffer);
    return boundDispatch(ctx, pipeline, `argmax ${rows}x${cols}`, uniform, [{ buffer: x }, { buffer: out }], groups);
  });
}

/** Argmax of host rows (tests and small uses). */
export async function argmax(ctx: GpuContext, x: Float32Array, shape: ArgmaxShape): Promise<Uint32Array> {
  if (!(x instanceof Float32Array) || x.length !== shape.rows * shape.cols) throw new InvalidArgumentError('x', `Float32Array of ${shape.rows * shape.cols} elements`, describe(x));
  const input = ctx.upload('argmax:x', x);
  const out = ctx.createBuffer('argmax:out', shape.rows * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST);
  try {
    ctx.writeBuffer(out, 0, new Uint32Array(shape.rows).fill(0xffffffff));
    const prepared = await prepareArgmax(ctx, shape, input, out);
    await ctx.runPass('argmax', (pass) => prepared.encode(pass));
    prepared.destroy();
    return new Uint32Array(await ctx.read('argmax', out, shape.rows * 4));
  } finally {
    input.destroy();
    out.destroy();
  }
}
