/**
 * The host tensor that the .npy and safetensors readers return and the writers take, with the
 * helpers both formats share: element sizes, copying file bytes into aligned typed arrays,
 * validating a tensor before it is written, and atomic file writes.
 *
 * Tensor bytes are little-endian in both formats and typed arrays use the host's byte order, so
 * the copies below assume a little-endian host (every platform Node 20 ships for but s390x).
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { FileFormatError, InvalidArgumentError, describe } from '../errors.js';

export const TENSOR_DTYPES = ['f64', 'f32', 'f16', 'bf16', 'i64', 'i32', 'u32', 'u16', 'i16', 'u8', 'i8', 'bool'] as const;
export type TensorDType = (typeof TENSOR_DTYPES)[number];

export type TensorData =
  | Float64Array
  | Float32Array
  | Uint16Array
  | BigInt64Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Uint8Array
  | Int8Array;

/** f16 and bf16 data are Uint16Array of raw bit patterns; i64 is BigInt64Array; bool is Uint8Array. */
export interface HostTensor {
  dtype: TensorDType;
  shape: number[];
  data: TensorData;
}

type TensorDataConstructor = { new (length: number): TensorData; readonly BYTES_PER_ELEMENT: number; readonly name: string };

const STORAGE: Record<TensorDType, TensorDataConstructor> = {
  f64: Float64Array,
  f32: Float32Array,
  f16: Uint16Array,
  bf16: Uint16Array,
  i64: BigInt64Array,
  i32: Int32Array,
  u32: Uint32Array,
  u16: Uint16Array,
  i16: Int16Array,
  u8: Uint8Array,
  i8: Int8Array,
  bool: Uint8Array,
};

export function itemSize(dtype: TensorDType): number {
  return STORAGE[dtype].BYTES_PER_ELEMENT;
}

/** Number of elements of a shape; the empty shape () is a scalar with one element. */
export function numel(shape: readonly number[]): number {
  let count = 1;
  for (const dim of shape) count *= dim;
  return count;
}

/** Whether `shape` is a list of non-negative safe integers; the readers use it to reject bad files. */
export function isValidShape(shape: unknown): shape is number[] {
  return Array.isArray(shape) && shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0) && Number.isSafeInteger(numel(shape));
}

/** Allocates zeroed, aligned storage for `count` elements of `dtype`. */
export function allocateData(dtype: TensorDType, count: number): TensorData {
  return new STORAGE[dtype](count);
}

/** The bytes of a typed array, without copying. */
export function bytesOf(data: TensorData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Copies little-endian element bytes into fresh storage: the bytes may sit at any offset of a
 * file buffer, and typed arrays need an offset that is a multiple of their element size.
 */
export function dataFromBytes(dtype: TensorDType, count: number, bytes: Uint8Array): TensorData {
  const data = allocateData(dtype, count);
  bytesOf(data).set(bytes.subarray(0, data.byteLength));
  return data;
}

/** Checks a tensor handed to a writer, so a bad one fails before any file is touched. */
export function checkHostTensor(argument: string, tensor: unknown): HostTensor {
  if (typeof tensor !== 'object' || tensor === null) {
    throw new InvalidArgumentError(argument, 'a HostTensor { dtype, shape, data }', describe(tensor));
  }
  const { dtype, shape, data } = tensor as Partial<HostTensor>;
  if (typeof dtype !== 'string' || !(TENSOR_DTYPES as readonly string[]).includes(dtype)) {
    throw new InvalidArgumentError(`${argument}.dtype`, `one of ${TENSOR_DTYPES.join(', ')}`, describe(dtype));
  }
  if (!isValidShape(shape)) {
    throw new InvalidArgumentError(`${argument}.shape`, 'an array of non-negative integers', describe(shape));
  }
  const storage = STORAGE[dtype as TensorDType];
  if (!(data instanceof storage)) {
    throw new InvalidArgumentError(`${argument}.data`, `${storage.name} for dtype ${dtype}`, describe(data));
  }
  if (data.length !== numel(shape)) {
    throw new InvalidArgumentError(
      `${argument}.data`,
      `${numel(shape)} elements for shape [${shape.join(', ')}]`,
      `${data.length} elements`,
    );
  }
  return tensor as HostTensor;
}

/**
 * Turns the error of opening or reading `path` into a FileFormatError when the path names no
 * readable file; other errors (permissions, I/O) pass through unchanged.
 */
export function fileAccessError(path: string, expected: string, error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return new FileFormatError(path, expected, 'nothing: the file does not exist');
  if (code === 'EISDIR') return new FileFormatError(path, expected, 'a directory');
  return error;
}

/** The most bytes one read or write system call is asked to move (the kernel caps it near 2 GiB). */
export const MAX_IO_BYTES = 1 << 30;

/**
 * Writes `chunks` to `path` so that readers never see a partial file: the bytes go to a temporary
 * file beside it, are flushed to disk, and then the temporary file is renamed over `path`.
 */
export async function writeFileAtomic(path: string, chunks: Iterable<Uint8Array>): Promise<void> {
  const temporaryPath = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  const handle = await fsp.open(temporaryPath, 'wx');
  try {
    try {
      for (const chunk of chunks) {
        // A write may take fewer bytes than offered, and one call cannot take 2 GiB or more.
        for (let written = 0; written < chunk.byteLength; ) {
          const length = Math.min(chunk.byteLength - written, MAX_IO_BYTES);
          const { bytesWritten } = await handle.write(chunk, written, length);
          written += bytesWritten;
        }
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(temporaryPath, path);
  } catch (error) {
    await fsp.rm(temporaryPath, { force: true });
    throw error;
  }
}
