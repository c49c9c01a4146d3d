/** Checks a caller's GPU buffer for an op's binding: a GPUBuffer, big enough, within the context's binding limit. */
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';

/** The binding of the first `bytes` (rounded up to whole words) of `buffer`, named `name` in errors. */
export function bindingOf(ctx: GpuContext, name: string, buffer: GPUBuffer, bytes: number): GPUBufferBinding {
  const size = Math.ceil(bytes / 4) * 4;
  if (buffer === null || typeof buffer !== 'object' || typeof buffer.size !== 'number') throw new InvalidArgumentError(name, 'a GPUBuffer', describe(buffer));
  if (buffer.size < size) throw new InvalidArgumentError(name, `a GPUBuffer of at least ${size} bytes`, `${buffer.size} bytes`);
  if (size > ctx.maxBindingBytes) throw new InvalidArgumentError(name, `at most ${ctx.maxBindingBytes} bytes (the context's maxBindingBytes)`, `${size} bytes`);
  return { buffer, size };
}
