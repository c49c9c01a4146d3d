/**
 * Prompt datasets: the example and task types, JSONL files of {"prompt", "answer"} lines, and the
 * helpers the built-in generators share (argument checks, the hash that assigns every problem to
 * exactly one split, the answer region of a completion).
 */
import { readFile } from 'node:fs/promises';
import { FileFormatError, InvalidArgumentError, describe } from '../errors.js';
import { mulberry32 } from '../util/random.js';

export interface Example {
  prompt: string;
  /** The reference answer; absent in a dataset read with requireAnswer: false (e.g. for self-certainty alone). */
  answer?: string;
}

export type Split = 'train' | 'test';
export const SPLITS: readonly Split[] = ['train', 'test'];

/** The three scores of "Reasoning LLMs are Wandering Solution Explorers" (Lu et al., 2025), each in [0, 1]. */
export interface ExplorationScores {
  /** Fraction of the listed items that are solutions. */
  validity: number;
  /** Fraction of all distinct solutions that were listed. */
  effectiveness: number;
  /** 1 − fraction of listed items that repeat an earlier one. */
  necessity: number;
}

/** A built-in task: a seeded generator of examples and the checks on a completion. */
export interface Task {
  name: string;
  description: string;
  /** The text a completion's answer ends with (generation can stop there). */
  stop: string;
  /** `count` examples of `split`, the same for the same seed; train and test never share a problem. */
  generate(seed: number, count: number, split: Split): Array<Required<Example>>;
  /** Whether the completion's answer region has the task's answer format (right or wrong). */
  formatOk(completion: string): boolean;
  /** 1 when the completion solves the problem `answer` describes, else 0. */
  score(completion: string, answer: string): number;
  /** A fixed, deterministic wrong label in the same format (the incorrect-label control of Shao et al., 2025). */
  wrongAnswer(answer: string): string;
  explorationScores?(completion: string, answer: string): ExplorationScores;
}

/** The completion's answer region: everything before the first `stop` (all of it if there is none, or stop is ''), trimmed. */
export function answerRegion(completion: string, stop: string): string {
  const end = stop === '' ? -1 : completion.indexOf(stop);
  return (end < 0 ? completion : completion.slice(0, end)).trim();
}

/** Parses JSONL text (one {"prompt": string, "answer": string | number} per line; blank lines skipped). */
export function parseJsonlDataset(text: string, source: string, options: { requireAnswer?: boolean } = {}): Example[] {
  const requireAnswer = options.requireAnswer ?? true;
  const examples: Example[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((line, index) => {
    if (line.trim() === '') return;
    const where = `line ${index + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      throw new FileFormatError(source, `a JSON object on ${where}`, `invalid JSON (${(error as Error).message})`);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new FileFormatError(source, `a JSON object on ${where}`, describe(value));
    const record = value as Record<string, unknown>;
    if (!('prompt' in record)) throw new FileFormatError(source, `a "prompt" field on ${where}`, 'no "prompt"');
    if (typeof record.prompt !== 'string') throw new FileFormatError(source, `"prompt" on ${where} to be a string`, describe(record.prompt));
    if (record.prompt.trim() === '') throw new FileFormatError(source, `a non-empty "prompt" on ${where}`, 'an empty prompt');
    const example: Example = { prompt: record.prompt };
    if (!('answer' in record) || record.answer === null) {
      if (requireAnswer) throw new FileFormatError(source, `an "answer" field on ${where}`, 'no "answer"');
    } else if (typeof record.answer === 'string') {
      example.answer = record.answer;
    } else if (typeof record.answer === 'number' && Number.isFinite(record.answer)) {
      example.answer = String(record.answer);
    } else {
      throw new FileFormatError(source, `"answer" on ${where} to be a string or a finite number`, describe(record.answer));
    }
    examples.push(example);
  });
  if (examples.length === 0) throw new FileFormatError(source, 'at least one example', 'no examples');
  return examples;
}

/** Reads a JSONL dataset; errors name the file and the line. */
export async function readJsonlDataset(path: string, options: { requireAnswer?: boolean } = {}): Promise<Example[]> {
  if (typeof path !== 'string' || path === '') throw new InvalidArgumentError('path', 'a file path', describe(path));
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new FileFormatError(path, 'a readable JSONL file', (error as NodeJS.ErrnoException).code ?? String(error));
  }
  return parseJsonlDataset(text, path, options);
}

/** JSONL text of examples, one per line (the format readJsonlDataset reads). */
export function formatJsonl(examples: readonly Example[]): string {
  return examples.map((e) => JSON.stringify(e.answer === undefined ? { prompt: e.prompt } : { prompt: e.prompt, answer: e.answer })).join('\n') + '\n';
}

/** FNV-1a, 32-bit: a fixed hash of a problem's key, so its split never depends on the seed. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The split a problem belongs to: 'test' for a fixed `testFraction` of keys by hash, 'train' for the rest. */
export function splitOf(key: string, testFraction: number): Split {
  return fnv1a(key) / 4294967296 < testFraction ? 'test' : 'train';
}

/**
 * Draws `count` examples of `split` from a seeded problem generator, keeping only problems whose
 * key hashes into the split (so the splits are disjoint whatever the seeds). Problems may repeat
 * within a call when the split's space is small. Throws when the split seems empty.
 */
export function generateSplit(
  taskName: string,
  seed: number,
  count: number,
  split: Split,
  testFraction: number,
  draw: (rand: () => number) => { key: string; example: Required<Example> },
): Array<Required<Example>> {
  if (!Number.isSafeInteger(seed)) throw new InvalidArgumentError('seed', 'an integer', describe(seed));
  if (!Number.isSafeInteger(count) || count < 0) throw new InvalidArgumentError('count', 'an integer ≥ 0', describe(count));
  if (!SPLITS.includes(split)) throw new InvalidArgumentError('split', `one of ${SPLITS.join(', ')}`, describe(split));
  const rand = mulberry32((seed ^ fnv1a(`${taskName}:${split}`)) >>> 0);
  const out: Array<Required<Example>> = [];
  const maxDraws = 1000 + 200 * count;
  for (let draws = 0; out.length < count; draws++) {
    if (draws >= maxDraws) throw new InvalidArgumentError('split', `a split of ${taskName} with problems to draw`, `none found in ${draws} draws`);
    const { key, example } = draw(rand);
    if (splitOf(`${taskName}:${key}`, testFraction) === split) out.push(example);
  }
  return out;
}

/** A uniform integer in [lo, hi]. */
export function randomInt(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}
