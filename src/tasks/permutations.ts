/**
 * List every distinct permutation of a short sequence with repeated letters. Prompt "perm ABA:",
 * answer "AAB,ABA,BAA" (all distinct permutations, sorted); a completion lists items separated
 * by commas and ends with a newline, in any order: "BAA,AAB,ABA\n".
 * Inputs have 3–4 letters from A–E with at least two distinct letters and at least one repeat,
 * so there are 3 to 12 permutations. The split is decided by the multiset of letters, so "ABA"
 * and "AAB" (the same answer) always land in the same split.
 *
 * Scoring follows "Reasoning LLMs are Wandering Solution Explorers" (Lu et al., 2025), against
 * the label's set S of items (for the true label, the permutations of the input), over the list
 * L of items the completion gives:
 *   validity      = |{l ∈ L : l ∈ S}| / |L|        (0 for an empty list)
 *   effectiveness = |distinct(L) ∩ S| / |S|
 *   necessity     = 1 − |{l ∈ L : l repeats an earlier item}| / |L|   (1 for an empty list)
 * and the completion is correct (score 1) only when all three are 1.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import { answerRegion, generateSplit, randomInt, type Example, type ExplorationScores, type Split, type Task } from './dataset.js';

const STOP = '\n';
const TEST_FRACTION = 0.2;
const LETTERS = 'ABCDE';
const LIST = /^[A-Z]+(?:\s*,\s*[A-Z]+)*$/;

/** Every distinct permutation of `sequence`, sorted. */
export function distinctPermutations(sequence: string): string[] {
  const out: string[] = [];
  const letters = [...sequence].sort();
  const used = new Array<boolean>(letters.length).fill(false);
  const walk = (prefix: string) => {
    if (prefix.length === letters.length) {
      out.push(prefix);
      return;
    }
    for (let i = 0; i < letters.length; i++) {
      // Skip a letter equal to an unused earlier one: each distinct arrangement is built once, in order.
      if (used[i] || (i > 0 && letters[i] === letters[i - 1] && !used[i - 1])) continue;
      used[i] = true;
      walk(prefix + letters[i]);
      used[i] = false;
    }
  };
  walk('');
  return out;
}

/** The items a completion lists: its answer region split at commas, trimmed, empty items dropped. */
export function listedItems(completion: string): string[] {
  return answerRegion(completion, STOP)
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

function labelSet(answer: string): Set<string> {
  const items = typeof answer === 'string' ? answer.split(',').map((item) => item.trim()) : [];
  if (items.length === 0 || items.some((item) => !/^[A-Z]+$/.test(item))) {
    throw new InvalidArgumentError('answer', 'a permutations answer "AAB,ABA,BAA"', describe(answer));
  }
  return new Set(items);
}

/** Validity, effectiveness and necessity of a completion's list against the label's items (see the file comment). */
export function permutationScores(completion: string, answer: string): ExplorationScores {
  const target = labelSet(answer);
  const listed = listedItems(completion);
  if (listed.length === 0) return { validity: 0, effectiveness: 0, necessity: 1 };
  const seen = new Set<string>();
  let valid = 0;
  let repeats = 0;
  for (const item of listed) {
    if (target.has(item)) valid++;
    if (seen.has(item)) repeats++;
    seen.add(item);
  }
  let found = 0;
  for (const item of seen) if (target.has(item)) found++;
  return { validity: valid / listed.length, effectiveness: found / target.size, necessity: 1 - repeats / listed.length };
}

function draw(rand: () => number): { key: string; example: Required<Example> } {
  for (;;) {
    const length = randomInt(rand, 3, 4);
    const sequence = Array.from({ length }, () => LETTERS[randomInt(rand, 0, LETTERS.length - 1)]!).join('');
    const distinct = new Set(sequence).size;
    if (distinct < 2 || distinct === length) continue;
    const key = [...sequence].sort().join('');
    return { key, example: { prompt: `perm ${sequence}:`, answer: distinctPermutations(sequence).join(',') } };
  }
}

export const permutationsTask: Task = {
  name: 'permutations',
  description: 'list every distinct permutation of a 3–4 letter sequence with repeats: "perm ABA:" → "AAB,ABA,BAA\\n" (any order)',
  stop: STOP,
  generate: (seed: number, count: number, split: Split) => generateSplit('permutations', seed, count, split, TEST_FRACTION, draw),
  formatOk: (completion) => LIST.test(answerRegion(completion, STOP)),
  score(completion, answer) {
    const { validity, effectiveness, necessity } = permutationScores(completion, answer);
    return validity === 1 && effectiveness === 1 && necessity === 1 ? 1 : 0;
  },
  /** The label without its last permutation: valid items, but incomplete. */
  wrongAnswer(answer) {
    const items = [...labelSet(answer)];
    if (items.length < 2) throw new InvalidArgumentError('answer', 'a permutations answer of at least two items', describe(answer));
    return items.slice(0, -1).join(',');
  },
  explorationScores: permutationScores,
};
