/**
 * Multi-digit addition and multiplication with short, fixed-format prompts for a tiny model:
 * prompt "12+345=", answer "357"; the completion is the number followed by a newline ("357\n").
 * Addition takes operands of 1–3 digits, multiplication of 1–2 digits.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import { answerRegion, generateSplit, randomInt, type Example, type Split, type Task } from './dataset.js';

const STOP = '\n';
const TEST_FRACTION = 0.1;
const INTEGER = /^-?\d+$/;

function reference(answer: string): bigint {
  const text = typeof answer === 'string' ? answer.trim() : '';
  if (!INTEGER.test(text)) throw new InvalidArgumentError('answer', 'an integer (an arithmetic answer)', describe(answer));
  return BigInt(text);
}

/** Operands are drawn by digit count first, so short and long operands are equally common. */
function operand(rand: () => number, maxDigits: number): number {
  const digits = randomInt(rand, 1, maxDigits);
  return digits === 1 ? randomInt(rand, 0, 9) : randomInt(rand, 10 ** (digits - 1), 10 ** digits - 1);
}

function draw(rand: () => number): { key: string; example: Required<Example> } {
  const multiply = rand() < 0.5;
  const a = operand(rand, multiply ? 2 : 3);
  const b = operand(rand, multiply ? 2 : 3);
  const prompt = `${a}${multiply ? '*' : '+'}${b}=`;
  return { key: prompt, example: { prompt, answer: String(multiply ? a * b : a + b) } };
}

export const arithmeticTask: Task = {
  name: 'arithmetic',
  description: 'multi-digit addition (up to 3 digits) and multiplication (up to 2 digits): "12+345=" → "357\\n"',
  stop: STOP,
  generate: (seed: number, count: number, split: Split) => generateSplit('arithmetic', seed, count, split, TEST_FRACTION, draw),
  formatOk: (completion) => INTEGER.test(answerRegion(completion, STOP)),
  score(completion, answer) {
    const got = answerRegion(completion, STOP);
    const want = reference(answer);
    return INTEGER.test(got) && BigInt(got) === want ? 1 : 0;
  },
  wrongAnswer: (answer) => String(reference(answer) + 1n),
};
