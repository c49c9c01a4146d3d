/**
 * Multi-digit arithmetic with short, fixed-format prompts for a tiny model: prompt "12+345=",
 * answer "357"; the completion is the number followed by a newline ("357\n").
 *
 * - `arithmetic`: addition of 1–3-digit operands and multiplication of 1–2-digit operands, half each.
 * - `addition`: addition of 1–3-digit operands only, the task of the PyTorch miniature this project's GRPO work started from (3-digit
 *   addition). Addition is an algorithm a small model can learn to carry out on problems it has
 *   never seen, while 2-digit multiplication at this scale is mostly recall of the training
 *   problems, so held-out accuracy on `addition` measures what training teaches rather than what it
 *   memorises.
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

function draw(rand: () => number, withMultiplication: boolean): { key: string; example: Required<Example> } {
  const multiply = withMultiplication && rand() < 0.5;
  const a = operand(rand, multiply ? 2 : 3);
  const b = operand(rand, multiply ? 2 : 3);
  const prompt = `${a}${multiply ? '*' : '+'}${b}=`;
  return { key: prompt, example: { prompt, answer: String(multiply ? a * b : a + b) } };
}

function arithmeticVariant(name: 'arithmetic' | 'addition', description: string, withMultiplication: boolean): Task {
  return {
    name,
    description,
    stop: STOP,
    generate: (seed: number, count: number, split: Split) => generateSplit(name, seed, count, split, TEST_FRACTION, (rand) => draw(rand, withMultiplication)),
    formatOk: (completion) => INTEGER.test(answerRegion(completion, STOP)),
    score(completion, answer) {
      const got = answerRegion(completion, STOP);
      const want = reference(answer);
      return INTEGER.test(got) && BigInt(got) === want ? 1 : 0;
    },
    wrongAnswer: (answer) => String(reference(answer) + 1n),
  };
}

export const arithmeticTask = arithmeticVariant('arithmetic', 'multi-digit addition (up to 3 digits) and multiplication (up to 2 digits): "12+345=" → "357\\n"', true);
export const additionTask = arithmeticVariant('addition', 'addition of 1–3-digit numbers: "12+345=" → "357\\n"', false);
