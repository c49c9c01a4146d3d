/**
 * Countdown: reach a target from a few numbers with + − × ÷ and parentheses, each number used at
 * most once. Prompt "3 5 7 9 -> 24:", answer "24 from 3 5 7 9" (the target and the numbers, which
 * is all the check needs); a completion is an expression ending with a newline, e.g. "3*5+9\n".
 * A trailing "= N" after the expression is allowed and ignored.
 * The expression is evaluated in exact rational arithmetic, so 7/3*3 reaches 7.
 * Problems are built by combining every number with random operations (intermediate results
 * positive integers), so each has a solution; 3–4 numbers from 1–20, targets up to 999.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import { answerRegion, generateSplit, randomInt, type Example, type Split, type Task } from './dataset.js';

const STOP = '\n';
const TEST_FRACTION = 0.1;
const MAX_TARGET = 999;

interface Rational {
  n: bigint;
  d: bigint;
}

function gcd(a: bigint, b: bigint): bigint {
  a = a < 0n ? -a : a;
  b = b < 0n ? -b : b;
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

function rational(n: bigint, d: bigint): Rational {
  if (d < 0n) [n, d] = [-n, -d];
  const g = gcd(n, d) || 1n;
  return { n: n / g, d: d / g };
}

function apply(op: string, a: Rational, b: Rational): Rational | null {
  switch (op) {
    case '+':
      return rational(a.n * b.d + b.n * a.d, a.d * b.d);
    case '-':
      return rational(a.n * b.d - b.n * a.d, a.d * b.d);
    case '*':
      return rational(a.n * b.n, a.d * b.d);
    default:
      return b.n === 0n ? null : rational(a.n * b.d, a.d * b.n);
  }
}

/** Tokens of an expression: integers, + - * / (× ÷ accepted), parentheses; null on any other character. */
function tokenize(text: string): string[] | null {
  const tokens: string[] = [];
  const pattern = /\s*(\d+|[-+*/×÷()])/y;
  let index = 0;
  while (index < text.length) {
    pattern.lastIndex = index;
    const m = pattern.exec(text);
    if (!m) return text.slice(index).trim() === '' ? tokens : null;
    tokens.push(m[1] === '×' ? '*' : m[1] === '÷' ? '/' : m[1]!);
    index = pattern.lastIndex;
  }
  return tokens;
}

export interface ParsedExpression {
  /** Exact value; null when it divides by zero. */
  value: Rational | null;
  /** The integer literals in order of appearance. */
  numbers: number[];
}

/** Parses and evaluates an expression of integers, binary + − × ÷ and parentheses (no unary minus); null when malformed. */
export function evaluateExpression(text: string): ParsedExpression | null {
  const tokens = tokenize(text);
  if (tokens === null || tokens.length === 0) return null;
  const numbers: number[] = [];
  let pos = 0;
  let divideByZero = false;
  // Recursive descent; `null` means a syntax error.
  const factor = (): Rational | null => {
    const token = tokens[pos];
    if (token === undefined) return null;
    if (token === '(') {
      pos++;
      const inner = sum();
      if (inner === null || tokens[pos] !== ')') return null;
      pos++;
      return inner;
    }
    if (!/^\d+$/.test(token)) return null;
    pos++;
    numbers.push(Number(token));
    return rational(BigInt(token), 1n);
  };
  const chain = (ops: string[], operand: () => Rational | null) => (): Rational | null => {
    let left = operand();
    while (left !== null && ops.includes(tokens[pos] ?? '')) {
      const op = tokens[pos++]!;
      const right = operand();
      if (right === null) return null;
      const value = apply(op, left, right);
      if (value === null) {
        divideByZero = true;
        left = rational(0n, 1n);
      } else left = value;
    }
    return left;
  };
  const product = chain(['*', '/'], factor);
  const sum = chain(['+', '-'], product);
  const value = sum();
  if (value === null || pos !== tokens.length) return null;
  return { value: divideByZero ? null : value, numbers };
}

/** The expression part of a completion: its answer region without a trailing "= N". */
function expressionOf(completion: string): string {
  return answerRegion(completion, STOP).replace(/=\s*-?\d+\s*$/, '');
}

export interface CountdownProblem {
  target: number;
  numbers: number[];
}

/** Reads "24 from 3 5 7 9". */
export function parseCountdownAnswer(answer: string): CountdownProblem {
  const m = typeof answer === 'string' ? /^\s*(\d+)\s+from\s+(\d+(?:\s+\d+)*)\s*$/.exec(answer) : null;
  if (!m) throw new InvalidArgumentError('answer', 'a countdown answer "<target> from <n1> <n2> ..."', describe(answer));
  return { target: Number(m[1]), numbers: m[2]!.trim().split(/\s+/).map(Number) };
}

/** Whether `used` takes each number at most as often as `given` holds it. */
function withinMultiset(used: number[], given: number[]): boolean {
  const left = new Map<number, number>();
  for (const n of given) left.set(n, (left.get(n) ?? 0) + 1);
  for (const n of used) {
    const k = left.get(n) ?? 0;
    if (k === 0) return false;
    left.set(n, k - 1);
  }
  return true;
}

/** A problem whose target combines every number (random order and operations, positive integer steps). */
function draw(rand: () => number): { key: string; example: Required<Example> } {
  for (;;) {
    const numbers = Array.from({ length: randomInt(rand, 3, 4) }, () => randomInt(rand, 1, 20));
    const pool = [...numbers];
    let ok = true;
    while (pool.length > 1 && ok) {
      const a = pool.splice(randomInt(rand, 0, pool.length - 1), 1)[0]!;
      const b = pool.splice(randomInt(rand, 0, pool.length - 1), 1)[0]!;
      const choices = [a + b, a * b];
      if (a !== b) choices.push(Math.abs(a - b));
      if (b !== 0 && a % b === 0) choices.push(a / b);
      if (a !== 0 && b % a === 0) choices.push(b / a);
      const value = choices[randomInt(rand, 0, choices.length - 1)]!;
      ok = value > 0 && value <= MAX_TARGET;
      pool.push(value);
    }
    if (!ok) continue;
    const target = pool[0]!;
    const key = `${[...numbers].sort((x, y) => x - y).join(' ')}>${target}`;
    return { key, example: { prompt: `${numbers.join(' ')} -> ${target}:`, answer: `${target} from ${numbers.join(' ')}` } };
  }
}

export const countdownTask: Task = {
  name: 'countdown',
  description: 'reach the target with + - * / and parentheses, each number at most once: "3 5 7 9 -> 24:" → "3*5+9\\n"',
  stop: STOP,
  generate: (seed: number, count: number, split: Split) => generateSplit('countdown', seed, count, split, TEST_FRACTION, draw),
  formatOk: (completion) => evaluateExpression(expressionOf(completion)) !== null,
  score(completion, answer) {
    const { target, numbers } = parseCountdownAnswer(answer);
    const parsed = evaluateExpression(expressionOf(completion));
    if (parsed === null || parsed.value === null) return 0;
    const hits = parsed.value.d === 1n && parsed.value.n === BigInt(target);
    return hits && withinMultiset(parsed.numbers, numbers) ? 1 : 0;
  },
  wrongAnswer(answer) {
    const { target, numbers } = parseCountdownAnswer(answer);
    return `${target + 1} from ${numbers.join(' ')}`;
  },
};
