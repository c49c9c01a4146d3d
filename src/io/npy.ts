/**
 * Reads and writes NumPy .npy files: format versions 1.0, 2.0 and 3.0 are read, 1.0 is written
 * (2.0 when the header outgrows 1.0's 2-byte length field). Only little-endian, C-order arrays of
 * the dtypes in TensorDType are supported; 'bf16' is written as '<u2' since numpy has no bfloat16.
 *
 * Layout: magic "\x93NUMPY", major and minor version bytes, the header length (uint16 LE in 1.0,
 * uint32 LE in 2.0 and 3.0), then the header, a Python dict literal such as
 * {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }, padded with spaces and a newline,
 * and then the raw element bytes.
 */
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { FileFormatError, describe } from '../errors.js';
import {
  type HostTensor,
  type TensorDType,
  MAX_IO_BYTES,
  allocateData,
  bytesOf,
  checkHostTensor,
  dataFromBytes,
  fileAccessError,
  itemSize,
  numel,
  writeFileAtomic,
} from './tensor.js';

const MAGIC = Uint8Array.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // "\x93NUMPY"
/** numpy pads the preamble and header to this many bytes so the data starts aligned when mapped. */
const HEADER_ALIGNMENT = 64;
/** Deeper nesting than this is no .npy header, and refusing it keeps the parser off the stack limit. */
const MAX_LITERAL_DEPTH = 32;

const DESCR_OF_DTYPE: Record<TensorDType, string> = {
  f64: '<f8',
  f32: '<f4',
  f16: '<f2',
  bf16: '<u2',
  i64: '<i8',
  i32: '<i4',
  u32: '<u4',
  u16: '<u2',
  i16: '<i2',
  u8: '|u1',
  i8: '|i1',
  bool: '|b1',
};

/** numpy type codes (descr without its byte-order mark) and the dtype each reads as. */
const DTYPE_OF_TYPE_CODE: Record<string, TensorDType> = {
  f8: 'f64',
  f4: 'f32',
  f2: 'f16',
  i8: 'i64',
  i4: 'i32',
  u4: 'u32',
  u2: 'u16',
  i2: 'i16',
  u1: 'u8',
  i1: 'i8',
  b1: 'bool',
};

const SUPPORTED_DESCRS = `one of ${[...new Set(Object.values(DESCR_OF_DTYPE))]
  .map((descr) => `'${descr}'`)
  .join(', ')} (or with byte-order mark '=' or '|')`;

/** Where the header and the data of a .npy file lie, and what the data holds. */
interface NpyLayout {
  dtype: TensorDType;
  shape: number[];
  dataOffset: number;
}

/** Parses a whole .npy file held in memory; `source` names it in errors. */
export function parseNpy(bytes: Uint8Array, source = '<buffer>'): HostTensor {
  const { dtype, shape, dataOffset } = parseNpyLayout(bytes, bytes.byteLength, source);
  return { dtype, shape, data: dataFromBytes(dtype, numel(shape), bytes.subarray(dataOffset)) };
}

/** Reads a .npy file, copying its data straight from the file into the tensor's storage. */
export async function readNpy(path: string): Promise<HostTensor> {
  let file: FileHandle;
  try {
    file = await fsp.open(path, 'r');
  } catch (error) {
    throw fileAccessError(path, 'an existing .npy file', error);
  }
  try {
    const stats = await file.stat();
    if (!stats.isFile()) throw new FileFormatError(path, 'a regular .npy file', 'something that is not a regular file');
    const { dataOffset: headerEnd } = parsePreamble(await readAt(file, 0, Math.min(stats.size, 12)), path);
    const header = await readAt(file, 0, Math.min(stats.size, headerEnd));
    const { dtype, shape, dataOffset } = parseNpyLayout(header, stats.size, path);
    const data = allocateData(dtype, numel(shape));
    const target = bytesOf(data);
    if ((await readInto(file, target, dataOffset)) < target.byteLength) {
      throw new FileFormatError(path, `${target.byteLength} data bytes`, 'fewer: the file shrank while it was read');
    }
    return { dtype, shape, data };
  } finally {
    await file.close();
  }
}

/** Encodes a tensor as a .npy file: little-endian, C order. */
export function encodeNpy(tensor: HostTensor): Uint8Array {
  const [header, data] = npyChunks(tensor);
  const bytes = new Uint8Array(header.byteLength + data.byteLength);
  bytes.set(header, 0);
  bytes.set(data, header.byteLength);
  return bytes;
}

/** Writes a .npy file atomically: readers see the old file or the whole new one, never a part. */
export async function writeNpy(path: string, tensor: HostTensor): Promise<void> {
  await writeFileAtomic(path, npyChunks(tensor));
}

/** The preamble and header of a tensor's .npy encoding, and its data bytes (not copied). */
function npyChunks(tensor: HostTensor): [Uint8Array, Uint8Array] {
  const { dtype, shape, data } = checkHostTensor('tensor', tensor);
  const shapeLiteral = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '${DESCR_OF_DTYPE[dtype]}', 'fortran_order': False, 'shape': ${shapeLiteral}, }`;
  // The header is the dict, space padding and a newline, ending on an aligned offset.
  const paddedHeaderLength = (major: number) =>
    Math.ceil((preambleLength(major) + dict.length + 1) / HEADER_ALIGNMENT) * HEADER_ALIGNMENT - preambleLength(major);
  const major = paddedHeaderLength(1) <= 0xffff ? 1 : 2;
  const headerLength = paddedHeaderLength(major);
  const header = new Uint8Array(preambleLength(major) + headerLength);
  const view = new DataView(header.buffer);
  header.set(MAGIC, 0);
  header[6] = major;
  header[7] = 0;
  if (major === 1) view.setUint16(8, headerLength, true);
  else view.setUint32(8, headerLength, true);
  const text = dict.padEnd(headerLength - 1, ' ') + '\n';
  header.set(Buffer.from(text, 'latin1'), preambleLength(major));
  return [header, bytesOf(data)];
}

/** Bytes before the header: magic, two version bytes and the header length field. */
function preambleLength(major: number): number {
  return MAGIC.length + 2 + (major === 1 ? 2 : 4);
}

/**
 * Validates the magic and version and returns where the header ends, from the first 12 (or
 * fewer, for a short file) bytes of a file.
 */
function parsePreamble(bytes: Uint8Array, source: string): { major: number; headerOffset: number; dataOffset: number } {
  if (bytes.byteLength < MAGIC.length || MAGIC.some((byte, i) => bytes[i] !== byte)) {
    const start = Array.from(bytes.subarray(0, MAGIC.length), (byte) => byte.toString(16).padStart(2, '0')).join(' ');
    throw new FileFormatError(source, 'a file starting with the magic \\x93NUMPY', `bytes [${start}]: not a .npy file`);
  }
  const major = bytes[6];
  const minor = bytes[7];
  if (major === undefined || minor === undefined) {
    throw new FileFormatError(source, 'a version after the magic', `${bytes.byteLength} bytes: the file is truncated`);
  }
  if (minor !== 0 || major < 1 || major > 3) {
    throw new FileFormatError(source, 'format version 1.0, 2.0 or 3.0', `unsupported version ${major}.${minor}`);
  }
  const headerOffset = preambleLength(major);
  if (bytes.byteLength < headerOffset) {
    throw new FileFormatError(source, `a ${headerOffset}-byte preamble`, `${bytes.byteLength} bytes: the file is truncated`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, headerOffset);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  return { major, headerOffset, dataOffset: headerOffset + headerLength };
}

/**
 * Parses the preamble and header at the start of `bytes`, a prefix of a file `fileSize` bytes
 * long that holds at least its whole header, and checks the file holds all the data it declares.
 */
function parseNpyLayout(bytes: Uint8Array, fileSize: number, source: string): NpyLayout {
  const { major, headerOffset, dataOffset } = parsePreamble(bytes, source);
  if (bytes.byteLength < dataOffset) {
    throw new FileFormatError(
      source,
      `a header of ${dataOffset - headerOffset} bytes`,
      `${bytes.byteLength - headerOffset} bytes: the file is truncated`,
    );
  }
  const headerBytes = bytes.subarray(headerOffset, dataOffset);
  // Version 3.0 exists only to allow UTF-8 in the header (structured dtype field names).
  const headerText = major === 3 ? decodeUtf8(headerBytes, source) : Buffer.from(headerBytes).toString('latin1');
  const { descr, fortranOrder, shape } = parseHeader(headerText, source);
  if (fortranOrder) {
    throw new FileFormatError(source, "'fortran_order': False (C order)", "'fortran_order': True (Fortran order is not supported)");
  }
  const dtype = parseDescr(descr, source);
  const expectedBytes = numel(shape) * itemSize(dtype);
  const availableBytes = fileSize - dataOffset;
  if (availableBytes < expectedBytes) {
    throw new FileFormatError(
      source,
      `${expectedBytes} data bytes (${numel(shape)} elements of ${itemSize(dtype)} bytes for shape (${shape.join(', ')}))`,
      `${availableBytes} bytes: the file is truncated`,
    );
  }
  return { dtype, shape, dataOffset };
}

function decodeUtf8(bytes: Uint8Array, source: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new FileFormatError(source, 'a UTF-8 header (format version 3.0)', 'bytes that are not valid UTF-8');
  }
}

function parseDescr(descr: string, source: string): TensorDType {
  const byteOrder = descr[0];
  const dtype = DTYPE_OF_TYPE_CODE[descr.slice(1)];
  if (dtype === undefined || !(byteOrder === '<' || byteOrder === '>' || byteOrder === '=' || byteOrder === '|')) {
    throw new FileFormatError(source, `a descr ${SUPPORTED_DESCRS}`, `unsupported descr ${describe(descr)}`);
  }
  // Byte order means nothing for one-byte types, so numpy accepts any mark on them.
  if (byteOrder === '>' && itemSize(dtype) > 1) {
    throw new FileFormatError(source, 'a little-endian descr', `descr ${describe(descr)}: big-endian data is not supported`);
  }
  return dtype;
}

/** The three header fields, checked for type; descr is not yet mapped to a dtype. */
function parseHeader(text: string, source: string): { descr: string; fortranOrder: boolean; shape: number[] } {
  const invalid = (detail: string) =>
    new FileFormatError(
      source,
      "a header holding a Python dict literal with keys 'descr', 'fortran_order' and 'shape'",
      `${describe(text.trim())}: ${detail}`,
    );
  let literal: PyLiteral;
  try {
    literal = new PythonLiteralParser(text).parseAll();
  } catch (error) {
    if (error instanceof PythonLiteralSyntaxError) throw invalid(error.message);
    throw error;
  }
  if (!(literal instanceof Map)) throw invalid(`the header is a ${literalKind(literal)}, not a dict`);
  const keys = [...literal.keys()];
  for (const key of ['descr', 'fortran_order', 'shape']) {
    if (!literal.has(key)) throw invalid(`key '${key}' is missing`);
  }
  const extra = keys.filter((key) => key !== 'descr' && key !== 'fortran_order' && key !== 'shape');
  if (extra.length > 0) throw invalid(`unexpected key ${extra.map((key) => describe(key)).join(', ')}`);

  const descr = literal.get('descr');
  if (typeof descr !== 'string') {
    // A list here is a structured dtype; a descr is a numpy type string otherwise.
    throw new FileFormatError(source, `a descr ${SUPPORTED_DESCRS}`, `unsupported descr: a ${literalKind(descr)}`);
  }
  const fortranOrder = literal.get('fortran_order');
  if (typeof fortranOrder !== 'boolean') throw invalid(`'fortran_order' is a ${literalKind(fortranOrder)}, not True or False`);
  const shape = literal.get('shape');
  if (!(shape instanceof PyTuple)) throw invalid(`'shape' is a ${literalKind(shape)}, not a tuple`);
  const dims: number[] = [];
  for (const dim of shape.items) {
    if (typeof dim !== 'number' || dim < 0) throw invalid(`'shape' holds ${literalKind(dim)} ${String(dim)}, not a size`);
    dims.push(dim);
  }
  if (!Number.isSafeInteger(numel(dims))) throw invalid(`'shape' (${dims.join(', ')}) has too many elements`);
  return { descr, fortranOrder, shape: dims };
}

// ---------------------------------------------------------------------------------------------
// Python literals: the subset numpy's header parser (ast.literal_eval) accepts that a header can
// use — dicts, lists, tuples, strings, integers, True, False and None. Floats, sets and
// expressions are rejected, which only costs headers numpy itself would never write.

class PyTuple {
  constructor(readonly items: PyLiteral[]) {}
}
type PyLiteral = string | number | boolean | null | PyTuple | PyLiteral[] | Map<string, PyLiteral>;

function literalKind(value: PyLiteral | undefined): string {
  if (value === null) return 'None';
  if (value instanceof Map) return 'dict';
  if (value instanceof PyTuple) return 'tuple';
  if (Array.isArray(value)) return 'list';
  if (typeof value === 'number') return 'integer';
  if (typeof value === 'boolean') return 'bool';
  return typeof value;
}

class PythonLiteralSyntaxError extends Error {}

const SIMPLE_ESCAPES: Record<string, string> = {
  '\\': '\\',
  "'": "'",
  '"': '"',
  n: '\n',
  r: '\r',
  t: '\t',
  a: '\x07',
  b: '\b',
  f: '\f',
  v: '\v',
};

/** A recursive-descent parser for one Python literal; errors name the character offset. */
class PythonLiteralParser {
  private position = 0;
  private depth = 0;

  constructor(private readonly text: string) {}

  parseAll(): PyLiteral {
    const value = this.value();
    this.skipSpace();
    if (this.position < this.text.length) this.fail(`unexpected ${this.showNext()} after the literal`);
    return value;
  }

  private value(): PyLiteral {
    this.skipSpace();
    const next = this.text[this.position];
    if (next === '{' || next === '[' || next === '(') return this.nested(next);
    if (next === "'" || next === '"') return this.string(next);
    if (next !== undefined && /[-+0-9]/.test(next)) return this.integer();
    if (next !== undefined && /[A-Za-z_]/.test(next)) return this.name();
    return this.fail(`expected a value, found ${this.showNext()}`);
  }

  private nested(open: '{' | '[' | '('): PyLiteral {
    if (++this.depth > MAX_LITERAL_DEPTH) this.fail(`nesting deeper than ${MAX_LITERAL_DEPTH} levels`);
    this.position++;
    let result: PyLiteral;
    if (open === '{') {
      result = this.dictBody();
    } else {
      const { items, trailingComma } = this.sequenceBody(open === '[' ? ']' : ')');
      // "(x)" is just x in parentheses; a one-element tuple needs its comma: "(x,)".
      if (open === '[') result = items;
      else result = items.length === 1 && !trailingComma ? items[0]! : new PyTuple(items);
    }
    this.depth--;
    return result;
  }

  private sequenceBody(close: string): { items: PyLiteral[]; trailingComma: boolean } {
    const items: PyLiteral[] = [];
    for (;;) {
      this.skipSpace();
      if (this.consume(close)) return { items, trailingComma: items.length > 0 };
      items.push(this.value());
      this.skipSpace();
      if (this.consume(close)) return { items, trailingComma: false };
      if (!this.consume(',')) this.fail(`expected ',' or '${close}', found ${this.showNext()}`);
    }
  }

  private dictBody(): Map<string, PyLiteral> {
    const entries = new Map<string, PyLiteral>();
    for (;;) {
      this.skipSpace();
      if (this.consume('}')) return entries;
      const keyOffset = this.position;
      const key = this.value();
      if (typeof key !== 'string') this.fail(`dict key at character ${keyOffset} is a ${literalKind(key)}, not a string`);
      if (entries.has(key)) this.fail(`duplicate key ${describe(key)}`);
      this.skipSpace();
      if (!this.consume(':')) this.fail(`expected ':' after dict key ${describe(key)}, found ${this.showNext()}`);
      entries.set(key, this.value());
      this.skipSpace();
      if (this.consume('}')) return entries;
      if (!this.consume(',')) this.fail(`expected ',' or '}', found ${this.showNext()}`);
    }
  }

  private string(quote: string): string {
    this.position++;
    let result = '';
    for (;;) {
      const char = this.text[this.position++];
      if (char === undefined || char === '\n') this.fail('unterminated string');
      if (char === quote) return result;
      if (char !== '\\') {
        result += char;
        continue;
      }
      const escaped = this.text[this.position++];
      if (escaped === undefined) this.fail('unterminated string');
      if (escaped in SIMPLE_ESCAPES) result += SIMPLE_ESCAPES[escaped];
      else if (escaped === 'x' || escaped === 'u') result += this.hexEscape(escaped === 'x' ? 2 : 4);
      else if (/[0-7]/.test(escaped)) result += this.octalEscape(escaped);
      else result += '\\' + escaped; // Python keeps unknown escapes as written.
    }
  }

  private hexEscape(digits: number): string {
    const hex = this.text.slice(this.position, this.position + digits);
    if (!new RegExp(`^[0-9a-fA-F]{${digits}}$`).test(hex)) this.fail(`bad escape \\${digits === 2 ? 'x' : 'u'}${hex}`);
    this.position += digits;
    return String.fromCharCode(parseInt(hex, 16));
  }

  /** Python's \ooo: one to three octal digits, the first already consumed. */
  private octalEscape(first: string): string {
    const rest = /^[0-7]{0,2}/.exec(this.text.slice(this.position, this.position + 2))![0];
    this.position += rest.length;
    return String.fromCharCode(parseInt(first + rest, 8));
  }

  private integer(): number {
    // An 'L' suffix marks a long in headers written by Python 2.
    const match = /^[-+]?[0-9]+[lL]?/.exec(this.text.slice(this.position, this.position + 40));
    if (match === null) return this.fail(`expected an integer, found ${this.showNext()}`);
    const token = match[0];
    const following = this.text[this.position + token.length];
    if (following !== undefined && /[0-9A-Za-z_.]/.test(following)) this.fail(`unsupported number at character ${this.position}`);
    const value = Number(token.replace(/[lL]$/, ''));
    if (!Number.isSafeInteger(value)) this.fail(`integer ${token} is too large`);
    this.position += token.length;
    return value;
  }

  private name(): boolean | null {
    const token = /^[A-Za-z_][A-Za-z0-9_]*/.exec(this.text.slice(this.position))![0];
    this.position += token.length;
    if (token === 'True') return true;
    if (token === 'False') return false;
    if (token === 'None') return null;
    return this.fail(`unknown name '${token}'`);
  }

  private skipSpace(): void {
    while (/^[ \t\r\n]$/.test(this.text[this.position] ?? '')) this.position++;
  }

  private consume(char: string): boolean {
    if (this.text[this.position] !== char) return false;
    this.position++;
    return true;
  }

  private showNext(): string {
    const next = this.text[this.position];
    return next === undefined ? 'the end of the header' : `${JSON.stringify(next)} at character ${this.position}`;
  }

  private fail(detail: string): never {
    throw new PythonLiteralSyntaxError(detail);
  }
}

/** Reads `length` bytes at `position`, fewer if the file ends first. */
async function readAt(file: FileHandle, position: number, length: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(length);
  return bytes.subarray(0, await readInto(file, bytes, position));
}

/** Fills `target` from the file at `position`; returns how many bytes came before the file ended. */
async function readInto(file: FileHandle, target: Uint8Array, position: number): Promise<number> {
  let filled = 0;
  while (filled < target.byteLength) {
    const length = Math.min(target.byteLength - filled, MAX_IO_BYTES);
    const { bytesRead } = await file.read(target, filled, length, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled;
}
