/**
 * Reads and writes safetensors files: an 8-byte little-endian header length N, N bytes of JSON
 * mapping each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (plus an optional
 * "__metadata__" object of strings), then the tensor bytes, little-endian and C order, with
 * offsets counted from the end of the header.
 *
 * Opening a file reads only its header; each tensor is read when asked for, since model files
 * may be many gigabytes.
 */
import fs from 'node:fs';
import { promisify } from 'node:util';
import { FileFormatError, IntuitorError, InvalidArgumentError, describe } from '../errors.js';
import {
  type HostTensor,
  type TensorDType,
  MAX_IO_BYTES,
  allocateData,
  bytesOf,
  checkHostTensor,
  fileAccessError,
  isValidShape,
  itemSize,
  numel,
  writeFileAtomic,
} from './tensor.js';

const NAME_OF_DTYPE: Record<TensorDType, string> = {
  f64: 'F64',
  f32: 'F32',
  f16: 'F16',
  bf16: 'BF16',
  i64: 'I64',
  i32: 'I32',
  u32: 'U32',
  u16: 'U16',
  i16: 'I16',
  u8: 'U8',
  i8: 'I8',
  bool: 'BOOL',
};
const DTYPE_OF_NAME = new Map(Object.entries(NAME_OF_DTYPE).map(([dtype, name]) => [name, dtype as TensorDType]));

const HEADER_LENGTH_BYTES = 8;
/** The reference implementation refuses larger headers; so do we, rather than allocate one. */
const MAX_HEADER_BYTES = 100_000_000;
const METADATA_KEY = '__metadata__';
/** How many tensor names an unknown-name error lists. */
const LISTED_NAMES = 10;

export interface SafetensorsEntry {
  name: string;
  dtype: TensorDType;
  shape: number[];
  /** Where the tensor's bytes start, counted from the start of the file (not of the data section). */
  byteOffset: number;
  byteLength: number;
}

export interface SafetensorsFile {
  path: string;
  metadata: Record<string, string>;
  /** Entries in header order. */
  entries: Map<string, SafetensorsEntry>;
  /** Reads one tensor's bytes from the file into fresh, aligned storage. */
  tensor(name: string): HostTensor;
  /** Closes the file; later tensor() calls throw. */
  close(): void;
}

const openFile = promisify(fs.open);
const fstat = promisify(fs.fstat);

/** Opens a safetensors file and reads its header; the caller must close() it. */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  let fd: number;
  try {
    fd = await openFile(path, 'r');
  } catch (error) {
    throw fileAccessError(path, 'an existing safetensors file', error);
  }
  try {
    const stats = await fstat(fd);
    if (!stats.isFile()) throw new FileFormatError(path, 'a regular safetensors file', 'something that is not a regular file');
    const { metadata, entries } = readHeader(fd, stats.size, path);
    return new OpenSafetensorsFile(path, fd, metadata, entries);
  } catch (error) {
    fs.closeSync(fd);
    throw error;
  }
}

/**
 * Writes tensors, sorted by name and packed back to back, atomically: readers see the old file or
 * the whole new one, never a part.
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, HostTensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  if (typeof tensors !== 'object' || tensors === null || Array.isArray(tensors)) {
    throw new InvalidArgumentError('tensors', 'an object mapping names to HostTensors', describe(tensors));
  }
  // The header is assembled by hand because a JavaScript object would move names like "0" first.
  const headerFields: string[] = [];
  if (metadata !== undefined) headerFields.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(checkMetadata(metadata))}`);
  const dataChunks: Uint8Array[] = [];
  let offset = 0;
  for (const name of Object.keys(tensors).sort()) {
    if (name === METADATA_KEY) {
      throw new InvalidArgumentError('tensors', `tensor names other than ${METADATA_KEY} (reserved for metadata)`, JSON.stringify(name));
    }
    const { dtype, shape, data } = checkHostTensor(`tensors[${JSON.stringify(name)}]`, tensors[name]);
    const bytes = bytesOf(data);
    const entry = { dtype: NAME_OF_DTYPE[dtype], shape, data_offsets: [offset, offset + bytes.byteLength] };
    headerFields.push(`${JSON.stringify(name)}:${JSON.stringify(entry)}`);
    dataChunks.push(bytes);
    offset += bytes.byteLength;
  }
  const json = Buffer.from(`{${headerFields.join(',')}}`, 'utf8');
  // Padding with spaces (valid JSON whitespace) to a multiple of 8 keeps the data 8-byte aligned.
  const paddedLength = Math.ceil(json.byteLength / 8) * 8;
  const header = Buffer.alloc(HEADER_LENGTH_BYTES + paddedLength, ' ');
  header.writeBigUInt64LE(BigInt(paddedLength), 0);
  json.copy(header, HEADER_LENGTH_BYTES);
  await writeFileAtomic(path, [header, ...dataChunks]);
}

function checkMetadata(metadata: unknown): Record<string, string> {
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
    throw new InvalidArgumentError('metadata', 'an object of string values', describe(metadata));
  }
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value !== 'string') throw new InvalidArgumentError(`metadata[${JSON.stringify(key)}]`, 'a string', describe(value));
  }
  return metadata as Record<string, string>;
}

class OpenSafetensorsFile implements SafetensorsFile {
  private fd: number | undefined;

  constructor(
    readonly path: string,
    fd: number,
    readonly metadata: Record<string, string>,
    readonly entries: Map<string, SafetensorsEntry>,
  ) {
    this.fd = fd;
  }

  tensor(name: string): HostTensor {
    const entry = this.entries.get(name);
    if (entry === undefined) {
      const names = [...this.entries.keys()];
      const listed = names.slice(0, LISTED_NAMES).map((known) => JSON.stringify(known));
      if (names.length > LISTED_NAMES) listed.push(`... (${names.length} in all)`);
      const available = names.length === 0 ? 'it holds none' : `available: ${listed.join(', ')}`;
      throw new InvalidArgumentError('name', `the name of a tensor in ${this.path} (${available})`, JSON.stringify(name));
    }
    // A closed descriptor number may already belong to another file, so never read through it.
    if (this.fd === undefined) throw new IntuitorError('FILE_CLOSED', `${this.path}: tensor(${JSON.stringify(name)}) called after close()`);
    const data = allocateData(entry.dtype, numel(entry.shape));
    const target = bytesOf(data);
    if (readFullySync(this.fd, target, entry.byteOffset) < target.byteLength) {
      throw new FileFormatError(
        this.path,
        `${entry.byteLength} bytes of tensor ${JSON.stringify(name)} at byte ${entry.byteOffset}`,
        'fewer: the file shrank after it was opened',
      );
    }
    return { dtype: entry.dtype, shape: [...entry.shape], data };
  }

  close(): void {
    if (this.fd === undefined) return;
    fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Reads and checks the header: every entry must be well formed and lie inside the file. */
function readHeader(fd: number, fileSize: number, path: string): Pick<SafetensorsFile, 'metadata' | 'entries'> {
  if (fileSize < HEADER_LENGTH_BYTES) {
    throw new FileFormatError(path, `a safetensors file of at least ${HEADER_LENGTH_BYTES} bytes (the header length)`, `${fileSize} bytes`);
  }
  const lengthBytes = Buffer.alloc(HEADER_LENGTH_BYTES);
  readFullySync(fd, lengthBytes, 0);
  const headerLength = lengthBytes.readBigUInt64LE(0);
  if (headerLength > BigInt(fileSize - HEADER_LENGTH_BYTES)) {
    throw new FileFormatError(
      path,
      `a header length of at most ${fileSize - HEADER_LENGTH_BYTES} bytes (the file is ${fileSize} bytes)`,
      `${headerLength}: the header length is larger than the file`,
    );
  }
  if (headerLength > BigInt(MAX_HEADER_BYTES)) {
    throw new FileFormatError(path, `a header of at most ${MAX_HEADER_BYTES} bytes`, `${headerLength} bytes`);
  }
  const dataStart = HEADER_LENGTH_BYTES + Number(headerLength);
  const headerBytes = Buffer.alloc(Number(headerLength));
  readFullySync(fd, headerBytes, HEADER_LENGTH_BYTES);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (error) {
    throw new FileFormatError(path, 'a JSON header', `${describe(headerBytes.toString('latin1'))}: ${(error as Error).message}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new FileFormatError(path, 'a JSON object as the header', showJson(header));
  }

  let metadata: Record<string, string> = {};
  const entries = new Map<string, SafetensorsEntry>();
  for (const [name, value] of Object.entries(header)) {
    if (name === METADATA_KEY) metadata = parseMetadata(value, path);
    else entries.set(name, parseEntry(name, value, dataStart, fileSize, path));
  }
  return { metadata, entries };
}

function parseMetadata(value: unknown, path: string): Record<string, string> {
  const isStringMap =
    typeof value === 'object' && value !== null && !Array.isArray(value) && Object.values(value).every((item) => typeof item === 'string');
  if (!isStringMap) throw new FileFormatError(path, `"${METADATA_KEY}" as an object of strings`, showJson(value));
  return value as Record<string, string>;
}

function parseEntry(name: string, value: unknown, dataStart: number, fileSize: number, path: string): SafetensorsEntry {
  const tensor = `tensor ${JSON.stringify(name)}`;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new FileFormatError(path, `${tensor} as an object {dtype, shape, data_offsets}`, showJson(value));
  }
  const { dtype: dtypeName, shape, data_offsets: offsets } = value as Record<string, unknown>;
  const dtype = typeof dtypeName === 'string' ? DTYPE_OF_NAME.get(dtypeName) : undefined;
  if (dtype === undefined) {
    throw new FileFormatError(path, `a dtype among ${[...DTYPE_OF_NAME.keys()].join(', ')} for ${tensor}`, showJson(dtypeName));
  }
  if (!isValidShape(shape)) throw new FileFormatError(path, `a shape of non-negative integers for ${tensor}`, showJson(shape));
  const isOffsetPair =
    Array.isArray(offsets) &&
    offsets.length === 2 &&
    offsets.every((offset) => Number.isSafeInteger(offset) && offset >= 0) &&
    offsets[0] <= offsets[1];
  if (!isOffsetPair) throw new FileFormatError(path, `data_offsets [begin, end] with 0 <= begin <= end for ${tensor}`, showJson(offsets));
  const [begin, end] = offsets as [number, number];
  const byteLength = numel(shape) * itemSize(dtype);
  if (end - begin !== byteLength) {
    throw new FileFormatError(
      path,
      `${byteLength} bytes for ${tensor} (${numel(shape)} elements of ${dtypeName} for shape [${shape.join(', ')}])`,
      `data_offsets [${begin}, ${end}] spanning ${end - begin} bytes`,
    );
  }
  if (dataStart + end > fileSize) {
    throw new FileFormatError(path, `${tensor} to end by byte ${dataStart + end} of the file`, `a file of ${fileSize} bytes: the file is truncated`);
  }
  return { name, dtype, shape, byteOffset: dataStart + begin, byteLength };
}

/** A JSON value, shortened for an error message. */
function showJson(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** Fills `target` from the file at `position`; returns how many bytes came before the file ended. */
function readFullySync(fd: number, target: Uint8Array, position: number): number {
  let filled = 0;
  while (filled < target.byteLength) {
    const bytesRead = fs.readSync(fd, target, filled, Math.min(target.byteLength - filled, MAX_IO_BYTES), position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled;
}
