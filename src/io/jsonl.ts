/**
 * JSON Lines files: one JSON object per non-blank line (CRLF accepted). Every problem is a
 * FileFormatError naming the file and the 1-based line, so a user can fix the data directly.
 * Small files are read whole (readJsonlLines); files of any size stream line by line
 * (streamLines), and an output written line by line is resumed after its last whole line
 * (lastWholeLine).
 */
import { open, readFile } from 'node:fs/promises';
import { FileFormatError, InvalidArgumentError, describe } from '../errors.js';
import { fileAccessError } from './tensor.js';

export interface JsonlLine {
  /** 1-based line number in the file. */
  line: number;
  value: Record<string, unknown>;
}

/** The objects of JSONL `text` read from `source` (named in errors); at least one. */
export function parseJsonlLines(text: string, source: string): JsonlLine[] {
  const out: JsonlLine[] = [];
  text.split(/\r?\n/).forEach((lineText, index) => {
    const line = index + 1;
    if (lineText.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(lineText);
    } catch (error) {
      throw new FileFormatError(source, `line ${line}: a JSON object`, `text that is not JSON (${(error as Error).message})`);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new FileFormatError(source, `line ${line}: a JSON object`, describe(value));
    out.push({ line, value: value as Record<string, unknown> });
  });
  if (out.length === 0) throw new FileFormatError(source, 'at least one JSON line', 'none');
  return out;
}

export async function readJsonlLines(path: string): Promise<JsonlLine[]> {
  if (typeof path !== 'string' || path === '') throw new InvalidArgumentError('path', 'a file path', describe(path));
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw fileAccessError(path, 'a readable JSON Lines file', error);
  }
  return parseJsonlLines(text, path);
}

export interface FieldOptions {
  /** Whitespace alone is refused. */
  nonEmpty?: boolean;
  /** A missing or null field gives undefined instead of an error. */
  optional?: boolean;
  /** A finite number is accepted and turned into its string. */
  numbers?: boolean;
}

/** Field `field` of a line as a string, checked as `options` say; errors name the file and the line. */
export function stringField(source: string, { line, value }: JsonlLine, field: string, options: FieldOptions = {}): string | undefined {
  const v = value[field];
  if (v === undefined || v === null) {
    if (options.optional) return undefined;
    const have = Object.keys(value).map((k) => `"${k}"`).join(', ');
    throw new FileFormatError(source, `line ${line}: a "${field}" field`, have ? `an object with ${have}` : 'an empty object');
  }
  if (typeof v === 'number' && options.numbers && Number.isFinite(v)) return String(v);
  if (typeof v !== 'string') throw new FileFormatError(source, `line ${line}: "${field}" as a string${options.numbers ? ' or a finite number' : ''}`, describe(v));
  if (options.nonEmpty && v.trim() === '') throw new FileFormatError(source, `line ${line}: a non-empty "${field}"`, JSON.stringify(v));
  return v;
}

/** One line of a streamed file: its 1-based number, its text (without the line break) and the byte offset just past it. */
export interface StreamedLine {
  line: number;
  text: string;
  end: number;
}

const NEWLINE = 0x0a;
/** Bytes read per system call when streaming. */
const STREAM_READ_BYTES = 1 << 20;

/**
 * The lines of a file, read a megabyte at a time: memory holds the current block and one line,
 * whatever the file's size. Splitting is on bytes (a UTF-8 multi-byte character never contains
 * a newline byte), so `end` is an exact byte offset; a CR before the newline and a byte-order mark
 * before the first line are dropped, and a last line without a newline is still a line.
 */
export async function* streamLines(path: string): AsyncGenerator<StreamedLine> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw fileAccessError(path, 'a readable JSON Lines file', error);
  }
  const stream = handle.createReadStream({ highWaterMark: STREAM_READ_BYTES });
  let line = 0;
  let offset = 0;
  let pending: Buffer[] = [];
  const text = (parts: Buffer[]) => {
    let s = (parts.length === 1 ? parts[0]! : Buffer.concat(parts)).toString('utf8');
    // A byte-order mark (editors on Windows write one) is not part of the first line's JSON.
    if (line === 1 && s.startsWith('\uFEFF')) s = s.slice(1);
    return s.endsWith('\r') ? s.slice(0, -1) : s;
  };
  for await (const block of stream as AsyncIterable<Buffer>) {
    let start = 0;
    for (let at = block.indexOf(NEWLINE); at >= 0; at = block.indexOf(NEWLINE, start)) {
      pending.push(block.subarray(start, at));
      offset += at + 1 - start;
      line++;
      yield { line, text: text(pending), end: offset };
      pending = [];
      start = at + 1;
    }
    if (start < block.length) {
      // A copy, so that a line's start does not keep its whole megabyte block alive.
      pending.push(Buffer.from(block.subarray(start)));
      offset += block.length - start;
    }
  }
  if (pending.length > 0) {
    line++;
    yield { line, text: text(pending), end: offset };
  }
}

/**
 * The last whole line of a file written line by line, and where it ends: a line without its newline
 * (a write cut short by a kill) is not whole, and `end` is the length to cut the file to. Reads
 * backwards from the end in growing blocks, so a long file costs only its tail. `text` is null
 * when the file holds no whole line.
 */
export async function lastWholeLine(path: string): Promise<{ text: string | null; end: number; size: number }> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    const readBack = async (from: number, length: number): Promise<Buffer> => {
      const buffer = Buffer.alloc(length);
      for (let got = 0; got < length;) {
        const { bytesRead } = await handle.read(buffer, got, length - got, from + got);
        if (bytesRead === 0) throw new FileFormatError(path, `${size} bytes`, 'a file that shrank while being read');
        got += bytesRead;
      }
      return buffer;
    };
    // The last newline ends the last whole line; the one before it starts that line.
    const lastNewline = async (before: number): Promise<number> => {
      for (let block = 64 * 1024, stop = before; stop > 0; block *= 2) {
        const from = Math.max(0, stop - block);
        const at = (await readBack(from, stop - from)).lastIndexOf(NEWLINE);
        if (at >= 0) return from + at;
        stop = from;
      }
      return -1;
    };
    const last = await lastNewline(size);
    if (last < 0) return { text: null, end: 0, size };
    const start = (await lastNewline(last)) + 1;
    const line = (await readBack(start, last - start)).toString('utf8');
    return { text: line.endsWith('\r') ? line.slice(0, -1) : line, end: last + 1, size };
  } finally {
    await handle.close();
  }
}
