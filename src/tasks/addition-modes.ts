/**
 * `addition-modes`: addition of 2-digit numbers answered in either of two modes, the miniature of
 * a base model with a latent reasoning strategy (issue 15; Spurious Rewards' "code reasoning" in
 * Qwen, INTUITOR's longer reasoning):
 *
 * - direct:  "47+85=" → "132\n";
 * - scratch: "47+85=" → "R231>132\n": the sum padded to SCRATCH_DIGITS digits and written least
 *   significant digit first (the order in which the carries happen, so a left-to-right decoder can
 *   compute each digit from the ones before it), then ">" and the answer.
 *
 * The verifier grades the final answer whichever the mode (the scratch digits are not checked, as a
 * math verifier ignores the reasoning); `modeOf` says which mode a completion used. The splits
 * are train, validation (for choosing a recipe) and test (for reporting), disjoint by problem.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import { answerRegion, generateSplit, randomInt, type Example, type Split, type Task } from './dataset.js';

const STOP = '\n';
const TEST_FRACTION = 0.1;
const VALIDATION_FRACTION = 0.1;
/** The largest sum, 99 + 99 = 198, has 3 digits. */
export const SCRATCH_DIGITS = 3;
export const ANSWER_MODES = ['direct', 'scratch'] as const;
export type AnswerMode = (typeof ANSWER_MODES)[number];

const DIRECT = /^\d+$/;
const SCRATCH = /^R(\d+)>(\d+)$/;

/** The answer mode of a completion (its text before the first newline, trimmed), or null when it is in neither format. */
export function answerModeOf(completion: string): AnswerMode | null {
  const region = answerRegion(completion, STOP);
  if (DIRECT.test(region)) return 'direct';
  if (SCRATCH.test(region)) return 'scratch';
  return null;
}

/** The final answer of a completion in either mode (the digits after '>' for scratch), or null. */
export function finalAnswerOf(completion: string): string | null {
  const region = answerRegion(completion, STOP);
  if (DIRECT.test(region)) return region;
  return SCRATCH.exec(region)?.[2] ?? null;
}

/** The completion (without the stop) that answers `sum` in `mode`. */
export function modeCompletion(sum: number, mode: AnswerMode): string {
  if (!Number.isSafeInteger(sum) || sum < 0 || sum >= 10 ** SCRATCH_DIGITS) throw new InvalidArgumentError('sum', `an integer in [0, ${10 ** SCRATCH_DIGITS})`, describe(sum));
  const digits = String(sum);
  if (mode === 'direct') return digits;
  if (mode !== 'scratch') throw new InvalidArgumentError('mode', ANSWER_MODES.join(' or '), describe(mode));
  return `R${[...digits.padStart(SCRATCH_DIGITS, '0')].reverse().join('')}>${digits}`;
}

function reference(answer: string): bigint {
  const text = typeof answer === 'string' ? answer.trim() : '';
  if (!DIRECT.test(text)) throw new InvalidArgumentError('answer', 'a non-negative integer (an addition-modes answer)', describe(answer));
  return BigInt(text);
}

/**
 * Both operands have 2 digits, so the digits of a column sit at fixed positions and a tiny model
 * learns the scratchpad's column sums within a few minutes of SFT on 2 CPU cores. (The prototype's
 * 3-digit addition needs more: 2500 updates of 16 examples left the scratchpad 6% right, copying its
 * digits into the answer faithfully but with wrong column sums; with 1–3-digit operands the
 * scratchpad was right 31% of the time, direct answers 12%.)
 */
const operand = (rand: () => number): number => randomInt(rand, 10, 99);

function draw(rand: () => number): { key: string; example: Required<Example> } {
  const a = operand(rand);
  const b = operand(rand);
  const prompt = `${a}+${b}=`;
  return { key: prompt, example: { prompt, answer: String(a + b) } };
}

export const additionModesTask: Task = {
  name: 'addition-modes',
  description: 'addition of 2-digit numbers, answered directly ("47+85=" → "132\\n") or with a scratchpad ("47+85=" → "R231>132\\n")',
  stop: STOP,
  generate: (seed: number, count: number, split: Split) => generateSplit('addition-modes', seed, count, split, TEST_FRACTION, draw, VALIDATION_FRACTION),
  formatOk: (completion) => answerModeOf(completion) !== null,
  score(completion, answer) {
    const want = reference(answer);
    const got = finalAnswerOf(completion);
    return got !== null && BigInt(got) === want ? 1 : 0;
  },
  wrongAnswer: (answer) => String(reference(answer) + 1n),
  modes: ANSWER_MODES,
  modeOf: answerModeOf,
  reasoningMode: 'scratch',
  finalAnswer: finalAnswerOf,
};
