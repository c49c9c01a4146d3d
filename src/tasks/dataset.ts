/**
 * Prompt datasets: the example and task types, JSONL files of {"prompt", "answer"} lines, and the
 * helpers the built-in generators share (argument checks, the hash that assigns every problem to
 * exactly one split, the answer region of a completion).
 */
import { InvalidArgumentError, describe } from '../errors.js';
import { parseJsonlLines, readJsonlLines, stringField, type JsonlLine } from '../io/jsonl.js';
import { mulberry32 } from '../util/random.js';

export interface Example {
  prompt: string;
  /** The reference answer; absent in a dataset read with requireAnswer: false (e.g. for self-certainty alone). */
  answer?: string;
}

/** 'validation' exists only for tasks that define it (used to choose a recipe without looking at 'test'). */
export type Split = 'train' | 'validation' | 'test';
export const SPLITS: readonly Split[] = ['train', 'validation', 'test'];

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
  /** For tasks whose answers come in several modes (e.g. direct or with a scratchpad): the mode names. */
  modes?: readonly string[];
  /** The mode a completion answered in, or null when it is in none of them. */
  modeOf?(completion: string): string | null;
  /** The mode that carries the latent reasoning (its sampled share is plotted). */
  reasoningMode?: string;
  /**
   * The final answer of a completion, for tasks where it is only part of the answer region (a
   * scratchpad before it); the collapse monitors compare these. Default: the answer region.
   */
  finalAnswer?(completion: string): string | null;
}

/** The final answer of a completion: task.finalAnswer where defined, else the answer region (null when empty). */
export function finalAnswer(task: Task, completion: string): string | null {
  if (task.finalAnswer) return task.finalAnswer(completion);
  const region = answerRegion(completion, task.stop);
  return region === '' ? null : region;
}

/** The completion's answer region: everything before the first `stop` (all of it if there is none, or stop is ''), trimmed. */
export function answerRegion(completion: string, stop: string): string {
  const end = stop === '' ? -1 : completion.indexOf(stop);
  return (end < 0 ? completion : completion.slice(0, end)).trim();
}

/** Parses JSONL text (one {"prompt": string, "answer": string | number} per line; blank lines skipped). */
export function parseJsonlDataset(text: string, source: string, options: { requireAnswer?: boolean } = {}): Example[] {
  return toExamples(parseJsonlLines(text, source), source, options.requireAnswer ?? true);
}

/** Reads a JSONL dataset; errors name the file and the line. */
export async function readJsonlDataset(path: string, options: { requireAnswer?: boolean } = {}): Promise<Example[]> {
  return toExamples(await readJsonlLines(path), path, options.requireAnswer ?? true);
}

function toExamples(lines: JsonlLine[], source: string, requireAnswer: boolean): Example[] {
  return lines.map((record) => {
    const example: Example = { prompt: stringField(source, record, 'prompt', { nonEmpty: true })! };
    const answer = stringField(source, record, 'answer', { optional: !requireAnswer, numbers: true });
    if (answer !== undefined) example.answer = answer;
    return example;
  });
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

/**
 * The split a problem belongs to: 'test' for a fixed `testFraction` of keys by hash, 'validation'
 * for the next `validationFraction` (0 for tasks without one), 'train' for the rest.
 */
export function splitOf(key: string, testFraction: number, validationFraction = 0): Split {
  const u = fnv1a(key) / 4294967296;
  return u < testFraction ? 'test' : u < testFraction + validationFraction ? 'validation' : 'train';
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
  validationFraction = 0,
): Array<Required<Example>> {
  if (!Number.isSafeInteger(seed)) throw new InvalidArgumentError('seed', 'an integer', describe(seed));
  if (!Number.isSafeInteger(count) || count < 0) throw new InvalidArgumentError('count', 'an integer ≥ 0', describe(count));
  if (!SPLITS.includes(split)) throw new InvalidArgumentError('split', `one of ${SPLITS.join(', ')}`, describe(split));
  if (split === 'validation' && validationFraction === 0) throw new InvalidArgumentError('split', `train or test (${taskName} has no validation split)`, describe(split));
  const rand = mulberry32((seed ^ fnv1a(`${taskName}:${split}`)) >>> 0);
  const out: Array<Required<Example>> = [];
  const maxDraws = 1000 + 200 * count;
  for (let draws = 0; out.length < count; draws++) {
    if (draws >= maxDraws) throw new InvalidArgumentError('split', `a split of ${taskName} with problems to draw`, `none found in ${draws} draws`);
    const { key, example } = draw(rand);
    if (splitOf(`${taskName}:${key}`, testFraction, validationFraction) === split) out.push(example);
  }
  return out;
}

/** A uniform integer in [lo, hi]. */
export function randomInt(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}
