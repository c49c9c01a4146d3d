/**
 * JSON Lines datasets: one JSON object per line, with required string fields. Every problem is a
 * FileFormatError naming the file and the 1-based line number.
 */
import { readFile } from 'node:fs/promises';
import { FileFormatError } from '../errors.js';
import { fileAccessError } from './tensor.js';

export interface JsonlRecord<F extends string> {
  /** 1-based line number in the file. */
  line: number;
  fields: Record<F, string>;
  /** The whole parsed object (extra fields included). */
  raw: Record<string, unknown>;
}

/**
 * Reads `path`, requiring each non-blank line to be an object whose `fields` are strings;
 * `nonEmpty` fields must also hold more than whitespace.
 */
export async function readJsonl<F extends string>(path: string, fields: readonly F[], nonEmpty: readonly F[] = fields): Promise<JsonlRecord<F>[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw fileAccessError(path, 'a readable JSON Lines file', error);
  }
  const records: JsonlRecord<F>[] = [];
  text.split('\n').forEach((lineText, index) => {
    const line = index + 1;
    if (lineText.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(lineText);
    } catch (error) {
      throw new FileFormatError(path, `line ${line}: a JSON object`, `text that is not JSON (${(error as Error).message})`);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new FileFormatError(path, `line ${line}: a JSON object with ${fields.map((f) => `"${f}"`).join(', ')}`, Array.isArray(value) ? 'an array' : JSON.stringify(value));
    const raw = value as Record<string, unknown>;
    const out = {} as Record<F, string>;
    for (const field of fields) {
      const v = raw[field];
      if (v === undefined) throw new FileFormatError(path, `line ${line}: a "${field}" field`, `an object with ${Object.keys(raw).map((k) => `"${k}"`).join(', ') || 'no fields'}`);
      if (typeof v !== 'string') throw new FileFormatError(path, `line ${line}: "${field}" as a string`, JSON.stringify(v));
      if (nonEmpty.includes(field) && v.trim() === '') throw new FileFormatError(path, `line ${line}: a non-empty "${field}"`, JSON.stringify(v));
      out[field] = v;
    }
    records.push({ line, fields: out, raw });
  });
  if (records.length === 0) throw new FileFormatError(path, 'at least one JSON line', 'an empty file');
  return records;
}
