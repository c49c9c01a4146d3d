/**
 * Tests for the .npy reader and writer: round trips of every dtype and rank, the numpy-written
 * reference arrays of the tiny-qwen2 fixture, hand-made headers of every format version, and an
 * error test per way a file can be wrong.
 */
import { FIXTURES } from '../helpers.js';
import { SHAPES, expectSameTensor, sampleTensor } from './tensors.js';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FileFormatError, InvalidArgumentError } from '../../src/errors.js';
import { encodeNpy, parseNpy, readNpy, writeNpy } from '../../src/io/npy.js';
import { type HostTensor, TENSOR_DTYPES } from '../../src/io/tensor.js';

const fixture = (name: string) => path.join(FIXTURES, 'tiny-qwen2', name);

/** A .npy file with a literal header, unpadded, for headers numpy would not write itself. */
function npyBytes(header: string, data: Uint8Array = new Uint8Array(0), version: [number, number] = [1, 0]): Uint8Array {
  const text = Buffer.from(header + '\n', version[0] === 3 ? 'utf8' : 'latin1');
  const lengthFieldBytes = version[0] === 1 ? 2 : 4;
  const preamble = Buffer.alloc(8 + lengthFieldBytes);
  preamble.set([0x93, ...Buffer.from('NUMPY'), version[0], version[1]]);
  if (lengthFieldBytes === 2) preamble.writeUInt16LE(text.length, 8);
  else preamble.writeUInt32LE(text.length, 8);
  return Buffer.concat([preamble, text, data]);
}

function catchError(action: () => unknown): unknown {
  try {
    action();
  } catch (error) {
    return error;
  }
  throw new Error('expected the action to throw');
}

let directory: string;
beforeAll(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), 'intuitor-npy-'));
});
afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

describe('round trips', () => {
  const cases = TENSOR_DTYPES.flatMap((dtype) => SHAPES.map((shape) => [dtype, shape] as const));

  test.each(cases)('%s with shape %j through encodeNpy and parseNpy', (dtype, shape) => {
    const tensor = sampleTensor(dtype, [...shape]);
    const decoded = parseNpy(encodeNpy(tensor));
    // numpy has no bfloat16, so bf16 comes back as the same bits under u16.
    expectSameTensor(decoded, dtype === 'bf16' ? { ...tensor, dtype: 'u16' } : tensor);
  });

  test.each(cases)('%s with shape %j through writeNpy and readNpy', async (dtype, shape) => {
    const tensor = sampleTensor(dtype, [...shape]);
    const file = path.join(directory, `${dtype}-${shape.join('x')}.npy`);
    await writeNpy(file, tensor);
    expectSameTensor(await readNpy(file), dtype === 'bf16' ? { ...tensor, dtype: 'u16' } : tensor);
  });

  test('writes the header numpy writes, padded so the data starts 64-byte aligned', () => {
    const bytes = encodeNpy(sampleTensor('f32', [2, 3]));
    const headerLength = Buffer.from(bytes).readUInt16LE(8);
    const header = Buffer.from(bytes.subarray(10, 10 + headerLength)).toString('latin1');
    expect([bytes[6], bytes[7]]).toEqual([1, 0]);
    expect(header).toMatch(/^\{'descr': '<f4', 'fortran_order': False, 'shape': \(2, 3\), \} +\n$/);
    expect((10 + headerLength) % 64).toBe(0);
    expect(bytes.byteLength).toBe(10 + headerLength + 24);
    expect(Buffer.from(encodeNpy(sampleTensor('u8', [3]))).toString('latin1')).toContain("'descr': '|u1', 'fortran_order': False, 'shape': (3,), }");
    expect(Buffer.from(encodeNpy(sampleTensor('bool', []))).toString('latin1')).toContain("'descr': '|b1', 'fortran_order': False, 'shape': (), }");
  });

  test('switches to format 2.0 when the header outgrows a 2-byte length', () => {
    const shape = new Array<number>(30000).fill(1);
    const tensor = sampleTensor('f64', shape);
    const bytes = encodeNpy(tensor);
    expect([bytes[6], bytes[7]]).toEqual([2, 0]);
    expect((12 + Buffer.from(bytes).readUInt32LE(8)) % 64).toBe(0);
    expectSameTensor(parseNpy(bytes), tensor);
  });

  test('copies data at an unaligned offset into aligned typed arrays', () => {
    const tensor = sampleTensor('f64', [3, 5]);
    const encoded = encodeNpy(tensor);
    const shifted = new Uint8Array(encoded.byteLength + 3);
    shifted.set(encoded, 3);
    const decoded = parseNpy(shifted.subarray(3));
    expect(decoded.data.byteOffset % 8).toBe(0);
    expectSameTensor(decoded, tensor);
  });

  test('rejects a tensor whose data does not match its dtype or shape', () => {
    const wrongClass = { dtype: 'f32', shape: [2], data: new Float64Array(2) } as HostTensor;
    const wrongLength = { dtype: 'i32', shape: [2, 2], data: new Int32Array(3) } as HostTensor;
    expect(catchError(() => encodeNpy(wrongClass))).toBeInstanceOf(InvalidArgumentError);
    expect(() => encodeNpy(wrongClass)).toThrow(/tensor\.data: expected Float32Array for dtype f32, got Float64Array/);
    expect(() => encodeNpy(wrongLength)).toThrow(/expected 4 elements for shape \[2, 2\], got 3 elements/);
  });
});

describe('numpy-written fixtures', () => {
  test('ref_input_ids.npy is i32 (4, 24) and holds the reference token ids', async () => {
    const ids = await readNpy(fixture('ref_input_ids.npy'));
    const reference = JSON.parse(await readFile(fixture('reference.json'), 'utf8')) as { input_ids: number[][] };
    expect(ids.dtype).toBe('i32');
    expect(ids.shape).toEqual([4, 24]);
    expect(Array.from(ids.data as Int32Array)).toEqual(reference.input_ids.flat());
  });

  test('ref_logits_f64.npy and ref_next_logprob.npy are f64 and agree with each other', async () => {
    const ids = (await readNpy(fixture('ref_input_ids.npy'))).data as Int32Array;
    const logits = await readNpy(fixture('ref_logits_f64.npy'));
    const logprob = await readNpy(fixture('ref_next_logprob.npy'));
    expect([logits.dtype, logits.shape]).toEqual(['f64', [4, 24, 384]]);
    expect([logprob.dtype, logprob.shape]).toEqual(['f64', [4, 23]]);
    // logprob[b, t] = log softmax(logits[b, t])[ids[b, t + 1]]: only holds if every byte was read in place.
    const z = logits.data as Float64Array;
    const vocab = 384;
    for (const [b, t] of [[0, 0], [1, 11], [3, 22]] as const) {
      const row = z.subarray((b * 24 + t) * vocab, (b * 24 + t + 1) * vocab);
      const max = Math.max(...row);
      const logSumExp = max + Math.log(row.reduce((sum, value) => sum + Math.exp(value - max), 0));
      expect((logprob.data as Float64Array)[b * 23 + t]).toBeCloseTo(row[ids[b * 24 + t + 1]!]! - logSumExp, 9);
    }
  });
});

describe('headers numpy may write', () => {
  const f32Pair = new Uint8Array(new Float32Array([1.5, -2]).buffer);

  test.each([
    ['version 2.0', "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", [2, 0]],
    ['version 3.0 (UTF-8)', "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", [3, 0]],
    ['double quotes, other key order, no trailing comma', '{"shape": (2,), "fortran_order": False, "descr": "<f4"}', [1, 0]],
    ['Python 2 long sizes', "{'descr': '<f4', 'fortran_order': False, 'shape': (2L,), }", [1, 0]],
    ['native byte order', "{'descr': '=f4', 'fortran_order': False, 'shape': (2,), }", [1, 0]],
    ['extra whitespace', "  {  'descr' : '<f4' ,\t'fortran_order' : False , 'shape' : ( 2 , ) }   ", [1, 0]],
  ] as const)('%s', (_, header, version) => {
    const tensor = parseNpy(npyBytes(header, f32Pair, [...version]));
    expect(tensor.dtype).toBe('f32');
    expect(tensor.shape).toEqual([2]);
    expect(Array.from(tensor.data as Float32Array)).toEqual([1.5, -2]);
  });

  test("single-byte types with any byte-order mark, and a scalar shape '()'", () => {
    expect(parseNpy(npyBytes("{'descr': '<u1', 'fortran_order': False, 'shape': (), }", Uint8Array.of(7)))).toEqual({
      dtype: 'u8',
      shape: [],
      data: Uint8Array.of(7),
    });
    expect(parseNpy(npyBytes("{'descr': '>i1', 'fortran_order': False, 'shape': (1,), }", Uint8Array.of(0xff))).data).toEqual(Int8Array.of(-1));
  });

  test('ignores bytes after the data, as numpy does', () => {
    const tensor = parseNpy(npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", f32Pair));
    expect(Array.from(tensor.data as Float32Array)).toEqual([1.5]);
  });
});

describe('errors', () => {
  const validHeader = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";

  function expectFormatError(action: () => unknown, pattern: RegExp): FileFormatError {
    const error = catchError(action);
    expect(error).toBeInstanceOf(FileFormatError);
    expect((error as Error).message).toMatch(pattern);
    return error as FileFormatError;
  }

  test('a missing file', async () => {
    const missing = path.join(directory, 'missing.npy');
    const error = await readNpy(missing).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(FileFormatError);
    expect((error as FileFormatError).path).toBe(missing);
    expect((error as Error).message).toBe(`${missing}: expected an existing .npy file, got nothing: the file does not exist`);
  });

  test('wrong magic, naming the file', async () => {
    const file = path.join(directory, 'zip.npy');
    await writeFile(file, Buffer.from('PK\x03\x04 not numpy at all'));
    const error = await readNpy(file).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(FileFormatError);
    expect((error as Error).message).toMatch(new RegExp(`^${file.replace(/[.\\]/g, '\\$&')}: .*not a \\.npy file`));
    expectFormatError(() => parseNpy(new Uint8Array(3)), /<buffer>: expected a file starting with the magic \\x93NUMPY, got .*not a \.npy file/);
  });

  test('an unsupported version', () => {
    expectFormatError(
      () => parseNpy(npyBytes(validHeader, new Uint8Array(24), [4, 0])),
      /expected format version 1\.0, 2\.0 or 3\.0, got unsupported version 4\.0/,
    );
    expectFormatError(() => parseNpy(npyBytes(validHeader, new Uint8Array(24), [1, 1])), /unsupported version 1\.1/);
  });

  test('a file cut inside the preamble or the header', () => {
    const bytes = npyBytes(validHeader, new Uint8Array(24));
    expectFormatError(() => parseNpy(bytes.subarray(0, 7)), /expected a version after the magic, got 7 bytes: the file is truncated/);
    expectFormatError(() => parseNpy(bytes.subarray(0, 9)), /expected a 10-byte preamble, got 9 bytes: the file is truncated/);
    expectFormatError(() => parseNpy(bytes.subarray(0, 30)), /expected a header of \d+ bytes, got 20 bytes: the file is truncated/);
  });

  test.each([
    ['not a dict', "['descr', '<f4']", /the header is a list, not a dict/],
    ['unterminated dict', "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)", /expected ',' or '}', found the end of the header/],
    ['unterminated string', "{'descr: '<f4', 'fortran_order': False, 'shape': (2, 3)}", /expected ':' after dict key|unterminated string/],
    ['missing key', "{'descr': '<f4', 'fortran_order': False}", /key 'shape' is missing/],
    ['extra key', "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", /unexpected key "x"/],
    ['duplicate key', "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'shape': (6,)}", /duplicate key "shape"/],
    ['non-string key', "{'descr': '<f4', 'fortran_order': False, 3: (2, 3)}", /dict key at character \d+ is a integer, not a string/],
    ['shape as a list', "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}", /'shape' is a list, not a tuple/],
    ['shape without its comma', "{'descr': '<f4', 'fortran_order': False, 'shape': (6)}", /'shape' is a integer, not a tuple/],
    ['negative size', "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3)}", /'shape' holds integer -2, not a size/],
    ['float size', "{'descr': '<f4', 'fortran_order': False, 'shape': (2.5, 3)}", /unsupported number/],
    ['huge size', "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", /integer 99999999999999999999 is too large/],
    ['too many elements', "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}", /has too many elements/],
    ['fortran_order not a bool', "{'descr': '<f4', 'fortran_order': 'no', 'shape': (2, 3)}", /'fortran_order' is a string, not True or False/],
    ['a call', "{'descr': '<f4', 'fortran_order': False, 'shape': __import__('os')}", /unknown name '__import__'/],
    ['trailing text', `${validHeader} x`, /unexpected "x" at character \d+ after the literal/],
    ['deep nesting', `{'descr': '<f4', 'fortran_order': False, 'shape': ${'('.repeat(100)}`, /nesting deeper than 32 levels/],
  ])('a header that is not a valid dict literal: %s', (_, header, detail) => {
    const error = expectFormatError(
      () => parseNpy(npyBytes(header, new Uint8Array(24))),
      /expected a header holding a Python dict literal with keys 'descr', 'fortran_order' and 'shape'/,
    );
    expect(error.message).toMatch(detail);
  });

  test('fortran_order True', () => {
    expectFormatError(
      () => parseNpy(npyBytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", new Uint8Array(24))),
      /expected 'fortran_order': False \(C order\), got 'fortran_order': True \(Fortran order is not supported\)/,
    );
  });

  test('a big-endian descr', () => {
    expectFormatError(
      () => parseNpy(npyBytes("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", new Uint8Array(24))),
      /expected a little-endian descr, got descr ">f4": big-endian data is not supported/,
    );
  });

  test.each([
    ["'<c16'", /unsupported descr "<c16"/],
    ["'<M8[ns]'", /unsupported descr "<M8\[ns\]"/],
    ["'f4'", /unsupported descr "f4"/],
    ["[('x', '<f4')]", /unsupported descr: a list/],
  ])(
    'an unsupported descr %s',
    (descr, detail) => {
      const error = expectFormatError(
        () => parseNpy(npyBytes(`{'descr': ${descr}, 'fortran_order': False, 'shape': (2, 3), }`, new Uint8Array(48))),
        /expected a descr one of '<f8', '<f4'/,
      );
      expect(error.message).toMatch(detail);
    },
  );

  test('truncated data, saying how many bytes were expected and how many came', async () => {
    const bytes = npyBytes(validHeader, new Uint8Array(20));
    expectFormatError(() => parseNpy(bytes), /expected 24 data bytes \(6 elements of 4 bytes for shape \(2, 3\)\), got 20 bytes: the file is truncated/);
    const file = path.join(directory, 'truncated.npy');
    await writeFile(file, bytes);
    const error = await readNpy(file).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(FileFormatError);
    expect((error as Error).message).toContain(`${file}: expected 24 data bytes`);
  });

  test('a directory instead of a file', async () => {
    const error = await readNpy(directory).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(FileFormatError);
    expect((error as Error).message).toMatch(/expected .*\.npy file, got .*directory|not a regular file/);
  });
});

describe('atomic writes', () => {
  test('leave no temporary file behind, and replace an existing file whole', async () => {
    const own = await mkdtemp(path.join(directory, 'atomic-'));
    const file = path.join(own, 'tensor.npy');
    await writeNpy(file, sampleTensor('f32', [3, 5]));
    const replacement = sampleTensor('i64', [2, 3, 4]);
    await writeNpy(file, replacement);
    expect(await readdir(own)).toEqual(['tensor.npy']);
    expectSameTensor(await readNpy(file), replacement);
  });

  test('leave no temporary file behind when the tensor is invalid', async () => {
    const own = await mkdtemp(path.join(directory, 'atomic-'));
    const invalid = { dtype: 'f32', shape: [2], data: new Float32Array(5) } as HostTensor;
    await expect(writeNpy(path.join(own, 'bad.npy'), invalid)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(await readdir(own)).toEqual([]);
  });
});
