/**
 * Logit dtypes. 16-bit values travel as raw bit patterns in a Uint16Array (JavaScript has no
 * bfloat16, and Float16Array is not in Node 20); kernels decode them from packed 32-bit words.
 */
import { getFloat16, setFloat16 } from '@petamoriken/float16';
import { InvalidArgumentError, describe } from './errors.js';

export const DTYPES = ['f32', 'f16', 'bf16'] as const;
export type DType = (typeof DTYPES)[number];

/** Host storage of a dtype: float32 values, or 16-bit patterns. */
export type HostArrayOf<D extends DType> = D extends 'f32' ? Float32Array : Uint16Array;
export type HostArray = Float32Array | Uint16Array;

/**
 * Outputs are filled with this NaN bit pattern before a run when tests ask (`poison`), so an
 * element a kernel never wrote shows, distinct from any NaN a kernel writes (0x7fc00000).
 */
export const POISON_BITS = 0x7fbadbad;

export const BYTES_PER_ELEMENT: Record<DType, number> = { f32: 4, f16: 2, bf16: 2 };

export function parseDType(value: unknown, argument = 'dtype'): DType {
  if (typeof value === 'string' && (DTYPES as readonly string[]).includes(value)) return value as DType;
  throw new InvalidArgumentError(argument, `one of ${DTYPES.join(', ')}`, describe(value));
}

const scratch = new DataView(new ArrayBuffer(4));

export function bf16BitsToFloat(bits: number): number {
  scratch.setUint32(0, (bits & 0xffff) << 16);
  return scratch.getFloat32(0);
}

/** Rounds a float to the nearest bfloat16 (ties to even), keeping NaN a NaN. */
export function floatToBf16Bits(value: number): number {
  scratch.setFloat32(0, value);
  const bits = scratch.getUint32(0);
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) return ((bits >>> 16) | 0x40) & 0xffff;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Every float16 bit pattern's value, built on first use: a lookup is ~20× faster than decoding. */
let f16Values: Float32Array | null = null;

function f16Table(): Float32Array {
  const view = new DataView(new ArrayBuffer(2));
  return Float32Array.from({ length: 0x10000 }, (_, bits) => {
    view.setUint16(0, bits);
    return getFloat16(view, 0);
  });
}

export function f16BitsToFloat(bits: number): number {
  return (f16Values ??= f16Table())[bits & 0xffff]!;
}

export function floatToF16Bits(value: number): number {
  setFloat16(scratch, 0, value);
  return scratch.getUint16(0);
}

/** Decoder from a host array element to a JavaScript number (float64). */
export function elementReader(dtype: DType, data: HostArray): (index: number) => number {
  switch (dtype) {
    case 'f32':
      return (i) => (data as Float32Array)[i]!;
    case 'f16':
      return (i) => f16BitsToFloat((data as Uint16Array)[i]!);
    case 'bf16':
      return (i) => bf16BitsToFloat((data as Uint16Array)[i]!);
  }
}

/** Encodes float values into the host storage of a dtype (rounding to nearest). */
export function encode(dtype: DType, values: ArrayLike<number>): HostArray {
  if (dtype === 'f32') return Float32Array.from(values);
  const out = new Uint16Array(values.length);
  const enc = dtype === 'f16' ? floatToF16Bits : floatToBf16Bits;
  for (let i = 0; i < values.length; i++) out[i] = enc(values[i]!);
  return out;
}

/** Checks that a host array is the storage of `dtype`. */
export function checkHostArray(argument: string, dtype: DType, data: unknown): HostArray {
  const expected = dtype === 'f32' ? Float32Array : Uint16Array;
  if (!(data instanceof expected)) {
    throw new InvalidArgumentError(argument, `${expected.name} for dtype ${dtype}`, describe(data));
  }
  return data;
}
