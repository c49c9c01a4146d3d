/** Tensors for the file-format round-trip suites. */
import { type HostTensor, type TensorDType, allocateData, bytesOf, numel } from '../../src/io/tensor.js';

export const SHAPES = [[], [1], [3, 5], [2, 3, 4]];

/** A tensor of deterministic pseudo-random bytes (0 or 1 for bool), so round trips are bit-exact checks. */
export function sampleTensor(dtype: TensorDType, shape: number[], seed = 12345): HostTensor {
  const data = allocateData(dtype, numel(shape));
  const bytes = bytesOf(data);
  let state = seed + bytes.byteLength;
  for (let i = 0; i < bytes.byteLength; i++) {
    state = (state * 1103515245 + 12345) >>> 0;
    bytes[i] = dtype === 'bool' ? (state >>> 16) & 1 : state >>> 24;
  }
  return { dtype, shape, data };
}

export function expectSameTensor(actual: HostTensor, expected: HostTensor): void {
  expect(actual.dtype).toBe(expected.dtype);
  expect(actual.shape).toEqual(expected.shape);
  expect(actual.data.constructor).toBe(expected.data.constructor);
  expect(Buffer.from(bytesOf(actual.data))).toEqual(Buffer.from(bytesOf(expected.data)));
}
