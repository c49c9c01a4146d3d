/**
 * JSON Lines files: one JSON object per non-blank line (CRLF accepted). Every problem is a
 * FileFormatError naming the file and the 1-based line, so a user can fix the data directly.
 */
import { readFile } from 'node:fs/promises';
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
