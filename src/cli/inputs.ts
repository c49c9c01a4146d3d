/**
 * Reads the CLI's tensor inputs: logits from .npy (f32, f16, f64; uint16 bit patterns with
 * --dtype bf16 or f16) or a named tensor of a .safetensors file (F32/F16/BF16/F64), and ids from
 * .npy (int32, int64, uint32). Everything is checked before any work starts.
 */
import { existsSync } from 'node:fs';
import { extname } from 'node:path';
import { parseDType, type DType, type HostArray } from '../dtype.js';
import { FileFormatError, InvalidArgumentError } from '../errors.js';
import { readNpy } from '../io/npy.js';
import { openSafetensors } from '../io/safetensors.js';
import type { HostTensor } from '../io/tensor.js';
import { loadModelConfig } from '../model/config.js';

export interface LogitsInput {
  dtype: DType;
  data: HostArray;
  shape: number[];
}

async function readTensor(flag: string, path: string, tensorName: string | undefined): Promise<HostTensor> {
  if (!existsSync(path)) throw new FileFormatError(path, `an existing .npy or .safetensors file for ${flag}`, 'no such file');
  const ext = extname(path).toLowerCase();
  if (ext === '.npy') {
    if (tensorName !== undefined) throw new InvalidArgumentError('--tensor', 'no value for a .npy file', JSON.stringify(tensorName));
    return readNpy(path);
  }
  if (ext === '.safetensors') {
    const file = await openSafetensors(path);
    try {
      const names = [...file.entries.keys()];
      if (tensorName === undefined) {
        if (names.length !== 1) throw new InvalidArgumentError('--tensor', `the name of one of ${names.length} tensors in ${path} (${names.slice(0, 10).join(', ')})`, 'none');
        return file.tensor(names[0]!);
      }
      if (!file.entries.has(tensorName)) {
        throw new InvalidArgumentError('--tensor', `the name of one of ${names.length} tensors in ${path} (${names.slice(0, 10).join(', ')})`, JSON.stringify(tensorName));
      }
      return file.tensor(tensorName);
    } finally {
      file.close();
    }
  }
  throw new FileFormatError(path, 'a file ending in .npy or .safetensors', ext ? `'${ext}'` : 'no extension');
}

export async function readLogits(path: string, options: { dtype?: string; tensor?: string }): Promise<LogitsInput> {
  const requested = options.dtype === undefined ? undefined : parseDType(options.dtype, '--dtype');
  const t = await readTensor('--logits', path, options.tensor);
  if (t.shape.length === 0) throw new FileFormatError(path, 'logits with at least one axis (..., V)', 'a scalar');
  if (t.shape.at(-1) === 0) throw new FileFormatError(path, 'logits with a vocabulary axis (last) of at least 1', `shape [${t.shape.join(', ')}]`);
  const from = (dtype: DType, data: HostArray): LogitsInput => {
    if (requested !== undefined && requested !== dtype) {
      throw new InvalidArgumentError('--dtype', `${dtype} (the file holds ${t.dtype})`, requested);
    }
    return { dtype, data, shape: t.shape };
  };
  switch (t.dtype) {
    case 'f32':
      return from('f32', t.data as Float32Array);
    case 'f64':
      return from('f32', Float32Array.from(t.data as Float64Array));
    case 'f16':
      return from('f16', t.data as Uint16Array);
    case 'bf16':
      return from('bf16', t.data as Uint16Array);
    case 'u16':
      if (requested === 'bf16' || requested === 'f16') return { dtype: requested, data: t.data as Uint16Array, shape: t.shape };
      throw new InvalidArgumentError('--dtype', 'bf16 or f16 to read uint16 logits as 16-bit float bit patterns', requested ?? 'none');
    default:
      throw new FileFormatError(path, 'logits of dtype float32, float16, bfloat16 (uint16 with --dtype bf16) or float64', t.dtype);
  }
}

export async function readIds(path: string, rowShape: readonly number[], vocab: number): Promise<Int32Array | BigInt64Array | Uint32Array> {
  const t = await readTensor('--ids', path, undefined);
  if (t.dtype !== 'i32' && t.dtype !== 'i64' && t.dtype !== 'u32') {
    throw new FileFormatError(path, 'ids of dtype int32, int64 or uint32', t.dtype);
  }
  if (t.shape.join(',') !== rowShape.join(',')) {
    throw new InvalidArgumentError('--ids', `shape [${rowShape.join(', ')}] (the logits' shape without the vocabulary axis)`, `[${t.shape.join(', ')}]`);
  }
  const ids = t.data as Int32Array | BigInt64Array | Uint32Array;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (id < 0 || id >= vocab) {
      throw new InvalidArgumentError('--ids', `token ids in [0, ${vocab}) (V, the logits' last axis) in ${path}`, `${id} at flat index ${i}`);
    }
  }
  return ids;
}

/** A flag's value as a positive integer. */
export function positiveIntOption(flag: string, value: string): number {
  return numberOption(flag, value, { min: 1, integer: true });
}

/**
 * A flag's value as a finite number, optionally an integer, at least `min` (or, with `above`,
 * strictly greater) and at most `max`.
 */
export function numberOption(flag: string, value: string, { min = -Infinity, above = -Infinity, max = Infinity, integer = false }: { min?: number; above?: number; max?: number; integer?: boolean } = {}): number {
  // Decimal notation only: Number() would also take "0x10", "0b1" and "Infinity".
  const n = typeof value === 'string' && /^\s*[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?\s*$/i.test(value) ? Number(value) : NaN;
  const ok = Number.isFinite(n) && n >= min && n > above && n <= max && (!integer || Number.isSafeInteger(n));
  if (!ok) {
    const kind = integer ? (min === 1 ? 'a positive integer' : `an integer`) : 'a number';
    const bounds = [min > -Infinity && !(min === 1 && integer) ? ` ≥ ${min}` : '', above > -Infinity ? ` > ${above}` : '', max < Infinity ? ` ≤ ${max}` : ''];
    throw new InvalidArgumentError(flag, `${kind}${bounds.filter((b) => b !== '').join(',')}`, JSON.stringify(value));
  }
  return n;
}

/** A flag's value as one of `choices`. */
export function choiceOption<T extends string>(flag: string, value: string, choices: readonly T[]): T {
  if (!choices.includes(value as T)) throw new InvalidArgumentError(flag, `one of ${choices.join(', ')}`, JSON.stringify(value));
  return value as T;
}

/**
 * --max-new-tokens: the value given (it must fit after the longest prompt), or by default the
 * positions the model has left after that prompt, at most `cap`.
 */
export function maxNewTokensOption(value: string | undefined, longestPrompt: number, maxPositions: number, cap: number): number {
  const room = maxPositions - longestPrompt;
  if (room < 1) {
    throw new InvalidArgumentError('prompt', `fewer than ${maxPositions} tokens (max_position_embeddings), room left for a new token`, `${longestPrompt} tokens`);
  }
  if (value === undefined) return Math.min(cap, room);
  const n = positiveIntOption('--max-new-tokens', value);
  if (n > room) throw new InvalidArgumentError('--max-new-tokens', `at most ${room} after a ${longestPrompt}-token prompt (max_position_embeddings ${maxPositions})`, String(n));
  return n;
}

/**
 * Token ids (B, T) of a model, from an int32/int64 .npy (logits, grad): every id in the model's
 * vocabulary and T within its positions, a bad id named by (b, t). Checked before any work.
 */
export async function readModelIds(path: string, model: string, { minLength = 1 } = {}): Promise<{ tokens: number[]; batch: number; seqLen: number }> {
  const ids = await readNpy(path);
  if (ids.dtype !== 'i32' && ids.dtype !== 'i64') throw new FileFormatError(path, 'token ids of dtype int32 or int64', ids.dtype);
  if (ids.shape.length !== 2 || ids.shape[1]! < minLength) {
    throw new FileFormatError(path, `ids of shape (B, T)${minLength > 1 ? ` with T ≥ ${minLength}` : ''}`, `shape [${ids.shape.join(', ')}]`);
  }
  const [batch, seqLen] = ids.shape as [number, number];
  const config = loadModelConfig(model);
  const tokens = Array.from(ids.data as ArrayLike<number | bigint>, Number);
  const bad = tokens.findIndex((id) => id < 0 || id >= config.vocabSize);
  if (bad >= 0) {
    throw new FileFormatError(path, `token ids in [0, ${config.vocabSize}) (the model's vocab_size)`, `${tokens[bad]} at (b, t) = (${Math.floor(bad / seqLen)}, ${bad % seqLen})`);
  }
  if (seqLen > config.maxPositionEmbeddings) {
    throw new FileFormatError(path, `sequences of at most ${config.maxPositionEmbeddings} tokens (the model's max_position_embeddings)`, `T = ${seqLen}`);
  }
  return { tokens, batch, seqLen };
}
