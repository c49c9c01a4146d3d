/**
 * Tests for the safetensors reader and writer: round trips of every dtype and rank, the
 * tiny-qwen2 fixture weights (F32, BF16) and reference gradients (F64), the header layout the
 * writer produces, and an error test per way a file can be wrong.
 */
import { FIXTURES } from '../helpers.js';
import { SHAPES, expectSameTensor, sampleTensor } from './tensors.js';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { floatToBf16Bits } from '../../src/dtype.js';
import { FileFormatError, IntuitorError, InvalidArgumentError } from '../../src/errors.js';
import { openSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { type HostTensor, TENSOR_DTYPES } from '../../src/io/tensor.js';

const fixture = (name: string) => path.join(FIXTURES, 'tiny-qwen2', name);

/** A safetensors file from a header (a JSON value, or raw text) and the data section. */
function safetensorsBytes(header: unknown, data: Uint8Array = new Uint8Array(0)): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.byteLength));
  return Buffer.concat([length, json, data]);
}

let directory: string;
let fileCount = 0;
beforeAll(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), 'intuitor-safetensors-'));
});
afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

async function writeTemporary(bytes: Uint8Array): Promise<string> {
  const file = path.join(directory, `case-${fileCount++}.safetensors`);
  await writeFile(file, bytes);
  return file;
}

async function openError(file: string): Promise<Error> {
  const error = await openSafetensors(file).then(
    (opened) => {
      opened.close();
      throw new Error(`expected opening ${file} to fail`);
    },
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(FileFormatError);
  expect((error as FileFormatError).path).toBe(file);
  expect((error as Error).message.startsWith(`${file}: `)).toBe(true);
  return error as Error;
}

describe('round trips', () => {
  const tensors: Record<string, HostTensor> = {};
  for (const dtype of TENSOR_DTYPES) {
    for (const shape of SHAPES) tensors[`${dtype}.${shape.length === 0 ? 'scalar' : shape.join('x')}`] = sampleTensor(dtype, shape);
  }

  test('every dtype with shapes (), (1,), (3,5) and (2,3,4), with metadata', async () => {
    const file = path.join(directory, 'all.safetensors');
    await writeSafetensors(file, tensors, { format: 'pt', note: 'round trip' });
    const opened = await openSafetensors(file);
    try {
      expect(opened.path).toBe(file);
      expect(opened.metadata).toEqual({ format: 'pt', note: 'round trip' });
      expect([...opened.entries.keys()].sort()).toEqual(Object.keys(tensors).sort());
      for (const [name, tensor] of Object.entries(tensors)) {
        const entry = opened.entries.get(name)!;
        expect(entry).toMatchObject({ name, dtype: tensor.dtype, shape: tensor.shape, byteLength: tensor.data.byteLength });
        expectSameTensor(opened.tensor(name), tensor);
      }
    } finally {
      opened.close();
    }
  });

  test('lays tensors out by sorted name after a header padded with spaces to a multiple of 8', async () => {
    const file = path.join(directory, 'layout.safetensors');
    await writeSafetensors(file, { a: sampleTensor('u8', [3]), '2': sampleTensor('f64', [2]), '10': sampleTensor('i16', [1]) });
    const bytes = await readFile(file);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    const header = bytes.subarray(8, 8 + headerLength).toString('utf8');
    expect(headerLength % 8).toBe(0);
    expect(header).toMatch(/^\{.*\} *$/);
    // Names keep their sorted order in the header too, though a JS object would put "2" before "10".
    expect(header.trimEnd()).toBe(
      '{"10":{"dtype":"I16","shape":[1],"data_offsets":[0,2]},' +
        '"2":{"dtype":"F64","shape":[2],"data_offsets":[2,18]},' +
        '"a":{"dtype":"U8","shape":[3],"data_offsets":[18,21]}}',
    );
    expect(bytes.byteLength).toBe(8 + headerLength + 21);
    const opened = await openSafetensors(file);
    expect(opened.metadata).toEqual({});
    expect(opened.entries.get('2')!.byteOffset).toBe(8 + headerLength + 2);
    opened.close();
  });

  test('an empty set of tensors', async () => {
    const file = path.join(directory, 'empty.safetensors');
    await writeSafetensors(file, {});
    const opened = await openSafetensors(file);
    expect(opened.entries.size).toBe(0);
    expect(() => opened.tensor('x')).toThrow(/it holds none/);
    opened.close();
  });

  test('rejects invalid arguments before touching the file', async () => {
    const own = await mkdtemp(path.join(directory, 'invalid-'));
    const target = path.join(own, 'out.safetensors');
    await expect(writeSafetensors(target, { __metadata__: sampleTensor('f32', [1]) })).rejects.toThrow(
      /tensors: expected tensor names other than __metadata__/,
    );
    await expect(writeSafetensors(target, { x: { dtype: 'f32', shape: [2], data: new Float32Array(3) } })).rejects.toThrow(
      /tensors\["x"\]\.data: expected 2 elements for shape \[2\], got 3 elements/,
    );
    await expect(writeSafetensors(target, { x: { dtype: 'c64', shape: [], data: new Float32Array(1) } as unknown as HostTensor })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    await expect(writeSafetensors(target, {}, { step: 3 } as unknown as Record<string, string>)).rejects.toThrow(
      /metadata\["step"\]: expected a string, got 3/,
    );
    expect(await readdir(own)).toEqual([]);
  });

  test('atomic writes leave no temporary file behind', async () => {
    const own = await mkdtemp(path.join(directory, 'atomic-'));
    await writeSafetensors(path.join(own, 'model.safetensors'), tensors);
    await writeSafetensors(path.join(own, 'model.safetensors'), { only: sampleTensor('f32', [2]) });
    expect(await readdir(own)).toEqual(['model.safetensors']);
  });
});

describe('tiny-qwen2 fixtures', () => {
  test('model.safetensors: lists its F32 entries and reads the embedding', async () => {
    const model = await openSafetensors(fixture('model.safetensors'));
    try {
      expect(model.metadata).toEqual({ format: 'pt' });
      expect(model.entries.size).toBe(26);
      expect(model.entries.get('model.layers.0.input_layernorm.weight')).toMatchObject({ dtype: 'f32', shape: [64], byteLength: 256 });
      for (const entry of model.entries.values()) expect(entry.dtype).toBe('f32');
      const embedding = model.tensor('model.embed_tokens.weight');
      expect(embedding.dtype).toBe('f32');
      expect(embedding.shape).toEqual([384, 64]);
      expect(embedding.data).toBeInstanceOf(Float32Array);
      expect(embedding.data.length).toBe(384 * 64);
      expect((embedding.data as Float32Array)[0]).toBeCloseTo(-0.01915151, 7);
    } finally {
      model.close();
    }
  });

  test('model.bf16.safetensors holds the F32 weights rounded to BF16', async () => {
    const model = await openSafetensors(fixture('model.safetensors'));
    const bf16Model = await openSafetensors(fixture('model.bf16.safetensors'));
    try {
      expect([...bf16Model.entries.keys()].sort()).toEqual([...model.entries.keys()].sort());
      for (const [name, entry] of bf16Model.entries) {
        expect(entry.dtype).toBe('bf16');
        const bf16 = bf16Model.tensor(name);
        const f32 = model.tensor(name).data as Float32Array;
        expect(bf16.data).toBeInstanceOf(Uint16Array);
        expect(bf16.shape).toEqual(model.entries.get(name)!.shape);
        expect(Array.from(bf16.data as Uint16Array)).toEqual(Array.from(f32, floatToBf16Bits));
      }
    } finally {
      model.close();
      bf16Model.close();
    }
  });

  test('ref_grads_f64.safetensors holds an F64 gradient per parameter', async () => {
    const model = await openSafetensors(fixture('model.safetensors'));
    const grads = await openSafetensors(fixture('ref_grads_f64.safetensors'));
    try {
      expect(grads.entries.size).toBe(model.entries.size);
      for (const [name, entry] of grads.entries) {
        expect(entry.dtype).toBe('f64');
        expect(entry.shape).toEqual(model.entries.get(name)!.shape);
      }
      const gradient = grads.tensor('model.embed_tokens.weight');
      expect(gradient.data).toBeInstanceOf(Float64Array);
      expect(Array.from(gradient.data as Float64Array).every(Number.isFinite)).toBe(true);
    } finally {
      model.close();
      grads.close();
    }
  });
});

describe('errors', () => {
  const f32Entry = { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] };

  test('a missing file', async () => {
    const missing = path.join(directory, 'missing.safetensors');
    const error = await openError(missing);
    expect(error.message).toBe(`${missing}: expected an existing safetensors file, got nothing: the file does not exist`);
  });

  test('a file shorter than 8 bytes', async () => {
    const error = await openError(await writeTemporary(Uint8Array.of(1, 2, 3)));
    expect(error.message).toMatch(/expected a safetensors file of at least 8 bytes \(the header length\), got 3 bytes/);
  });

  test('a header length larger than the file', async () => {
    const bytes = safetensorsBytes({ x: f32Entry }, new Uint8Array(24));
    bytes.writeBigUInt64LE(10_000n, 0);
    const error = await openError(await writeTemporary(bytes));
    expect(error.message).toMatch(/got 10000: the header length is larger than the file/);
    expect(error.message).toContain(`(the file is ${bytes.byteLength} bytes)`);
  });

  test.each([
    ['not JSON', '{"x": {"dtype": "F32",', /expected a JSON header, got .*JSON/],
    ['not UTF-8', '\udc00', /expected a JSON header/],
    ['a JSON array', '[1, 2]', /expected a JSON object as the header, got \[1,2\]/],
  ])('a header that is %s', async (_, header, pattern) => {
    const bytes = header === '\udc00' ? Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]), Buffer.from([0xff, 0xfe])]) : safetensorsBytes(header);
    expect((await openError(await writeTemporary(bytes))).message).toMatch(pattern);
  });

  test.each([
    ['an unknown dtype', { ...f32Entry, dtype: 'F8_E4M3' }, /expected a dtype among F64, F32, .*BOOL for tensor "x", got "F8_E4M3"/],
    ['a missing dtype', { shape: [2, 3], data_offsets: [0, 24] }, /expected a dtype among .* for tensor "x", got undefined/],
    ['a negative dimension', { ...f32Entry, shape: [-2, 3] }, /expected a shape of non-negative integers for tensor "x", got \[-2,3\]/],
    ['a fractional dimension', { ...f32Entry, shape: [2.5] }, /expected a shape of non-negative integers for tensor "x", got \[2\.5\]/],
    ['a shape that is not a list', { ...f32Entry, shape: '2x3' }, /expected a shape of non-negative integers for tensor "x", got "2x3"/],
    [
      'reversed data_offsets',
      { ...f32Entry, data_offsets: [24, 0] },
      /expected data_offsets \[begin, end\] with 0 <= begin <= end for tensor "x", got \[24,0\]/,
    ],
    ['three data_offsets', { ...f32Entry, data_offsets: [0, 12, 24] }, /for tensor "x", got \[0,12,24\]/],
    ['string data_offsets', { ...f32Entry, data_offsets: ['0', '24'] }, /for tensor "x", got \["0","24"\]/],
    ['an entry that is not an object', 'F32', /expected tensor "x" as an object \{dtype, shape, data_offsets\}, got "F32"/],
    [
      'a byte length that is not numel × itemsize',
      { ...f32Entry, data_offsets: [0, 20] },
      /expected 24 bytes for tensor "x" \(6 elements of F32 for shape \[2, 3\]\), got data_offsets \[0, 20\] spanning 20 bytes/,
    ],
    ['metadata that is not strings', { __metadata__: { step: 3 } }, /expected "__metadata__" as an object of strings, got \{"step":3\}/],
  ])('an entry with %s', async (_, entry, pattern) => {
    const header = typeof entry === 'object' && '__metadata__' in entry ? entry : { x: entry };
    const error = await openError(await writeTemporary(safetensorsBytes(header, new Uint8Array(24))));
    expect(error.message).toMatch(pattern);
  });

  test('offsets beyond the end of the file', async () => {
    const bytes = safetensorsBytes({ x: f32Entry, y: { dtype: 'I64', shape: [2], data_offsets: [24, 40] } }, new Uint8Array(30));
    const error = await openError(await writeTemporary(bytes));
    const headerEnd = bytes.byteLength - 30;
    expect(error.message).toContain(
      `expected tensor "y" to end by byte ${headerEnd + 40} of the file, got a file of ${bytes.byteLength} bytes: the file is truncated`,
    );
  });

  test('an unknown tensor name, listing up to 10 available names', async () => {
    const model = await openSafetensors(fixture('model.safetensors'));
    try {
      const error = (() => {
        try {
          model.tensor('model.embed_tokens.weights');
        } catch (caught) {
          return caught as Error;
        }
        throw new Error('expected tensor() to throw');
      })();
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect(error.message).toMatch(/^name: expected the name of a tensor in .*model\.safetensors \(available: "model\.embed_tokens\.weight", /);
      expect(error.message).toMatch(/\.\.\. \(26 in all\)\), got "model\.embed_tokens\.weights"$/);
      expect(error.message.match(/"model\.[^"]*"/g)).toHaveLength(11); // ten listed, plus the name asked for
    } finally {
      model.close();
    }
  });

  test('tensor() after close()', async () => {
    const model = await openSafetensors(fixture('model.safetensors'));
    model.close();
    model.close();
    expect(() => model.tensor('model.embed_tokens.weight')).toThrow(IntuitorError);
    expect(() => model.tensor('model.embed_tokens.weight')).toThrow(/called after close\(\)/);
  });
});
