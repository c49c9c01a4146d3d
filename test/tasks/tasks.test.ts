/**
 * The built-in tasks: seeded generation, disjoint train/test splits, the answer format, scoring
 * of right, wrong and malformed completions, wrong labels, and the permutations task's
 * exploration scores.
 */
import { InvalidArgumentError } from '../../src/errors.js';
import { additionTask, arithmeticTask } from '../../src/tasks/arithmetic.js';
import { countdownTask, evaluateExpression, parseCountdownAnswer } from '../../src/tasks/countdown.js';
import type { Task } from '../../src/tasks/dataset.js';
import { modeCompletion } from '../../src/tasks/addition-modes.js';
import { TASKS, getTask, taskNames } from '../../src/tasks/index.js';
import { distinctPermutations, listedItems, permutationScores, permutationsTask } from '../../src/tasks/permutations.js';

/** An expression over all of `numbers` that reaches `target` (exact fractions), or null. */
function solveCountdown(numbers: number[], target: number): string | null {
  type Item = { n: number; d: number; text: string };
  const gcd = (a: number, b: number): number => (b === 0 ? Math.abs(a) : gcd(b, a % b));
  const make = (n: number, d: number, text: string): Item => {
    const g = gcd(n, d) || 1;
    return { n: n / g, d: d / g, text };
  };
  const search = (items: Item[]): string | null => {
    if (items.length === 1) return items[0]!.n === target && items[0]!.d === 1 ? items[0]!.text : null;
    for (let i = 0; i < items.length; i++) {
      for (let j = 0; j < items.length; j++) {
        if (i === j) continue;
        const a = items[i]!;
        const b = items[j]!;
        const rest = items.filter((_, k) => k !== i && k !== j);
        const options = [make(a.n * b.d + b.n * a.d, a.d * b.d, `(${a.text}+${b.text})`), make(a.n * b.d - b.n * a.d, a.d * b.d, `(${a.text}-${b.text})`), make(a.n * b.n, a.d * b.d, `(${a.text}*${b.text})`)];
        if (b.n !== 0) options.push(make(a.n * b.d, a.d * b.n, `(${a.text}/${b.text})`));
        for (const option of options) {
          if (option.d < 0) [option.n, option.d] = [-option.n, -option.d];
          const found = search([...rest, option]);
          if (found) return found;
        }
      }
    }
    return null;
  };
  return search(numbers.map((n) => make(n, 1, String(n))));
}

/** A correct completion for an example of each task. */
const SOLVE: Record<string, (answer: string) => string> = {
  arithmetic: (answer) => `${answer}\n`,
  addition: (answer) => `${answer}\n`,
  'addition-modes': (answer) => `${modeCompletion(Number(answer), 'scratch')}\n`,
  permutations: (answer) => `${answer.split(',').reverse().join(',')}\n`,
  countdown: (answer) => {
    const { numbers, target } = parseCountdownAnswer(answer);
    return `${solveCountdown(numbers, target)}\n`;
  },
};

/** The problem identity the split is decided by. */
const KEY: Record<string, (prompt: string) => string> = {
  arithmetic: (prompt) => prompt,
  addition: (prompt) => prompt,
  'addition-modes': (prompt) => prompt,
  permutations: (prompt) => [...prompt.slice(5, -1)].sort().join(''),
  countdown: (prompt) => {
    const [numbers, target] = prompt.slice(0, -1).split(' -> ');
    return `${numbers!.split(' ').map(Number).sort((a, b) => a - b).join(' ')}>${target}`;
  },
};

/** The tasks with a generator (math scores free-form answers of a --data file and has none). */
const GENERATED = Object.values(TASKS).filter((task) => task.name !== 'math');

describe.each(GENERATED.map((task) => [task.name, task] as [string, Task]))('task %s', (name, task) => {
  test('generation is seeded: the same seed gives the same examples, another seed others', () => {
    const a = task.generate(11, 40, 'train');
    expect(a).toHaveLength(40);
    expect(task.generate(11, 40, 'train')).toEqual(a);
    expect(task.generate(12, 40, 'train')).not.toEqual(a);
    expect(task.generate(11, 0, 'test')).toEqual([]);
  });

  test('train and held-out test never share a problem, whatever the seeds', () => {
    const train = new Set(task.generate(1, 1500, 'train').map((e) => KEY[name]!(e.prompt)));
    const test = task.generate(2, 300, 'test').map((e) => KEY[name]!(e.prompt));
    expect(test.filter((key) => train.has(key))).toEqual([]);
    expect(new Set(test).size).toBeGreaterThan(5);
  });

  test('prompts are short and end where the model takes over; answers have no stop marker', () => {
    for (const { prompt, answer } of task.generate(5, 200, 'train')) {
      expect(prompt.length).toBeLessThanOrEqual(20);
      expect(prompt).toMatch(/[=:]$/);
      expect(answer).not.toContain(task.stop);
      expect(answer.length).toBeGreaterThan(0);
    }
  });

  test('a right completion scores 1 and is well formed; the wrong label differs and rejects it', () => {
    for (const { answer } of task.generate(9, 60, 'test')) {
      const completion = SOLVE[name]!(answer);
      expect(task.formatOk(completion)).toBe(true);
      expect(task.score(completion, answer)).toBe(1);
      expect(task.score(completion.trimEnd(), answer)).toBe(1); // the stop marker already stripped
      const wrong = task.wrongAnswer(answer);
      expect(wrong).not.toBe(answer);
      expect(task.wrongAnswer(answer)).toBe(wrong);
      if (name !== 'countdown') {
        expect(task.score(completion, wrong)).toBe(0);
        expect(task.score(SOLVE[name]!(wrong), wrong)).toBe(1);
      }
    }
  });

  test('malformed completions score 0; the text after the stop marker is ignored', () => {
    const { answer } = task.generate(3, 1, 'train')[0]!;
    for (const bad of ['', '\n', 'hello\n', '???']) {
      expect(task.score(bad, answer)).toBe(0);
      expect(task.formatOk(bad)).toBe(false);
    }
    expect(task.score(`${SOLVE[name]!(answer)}garbage after the stop`, answer)).toBe(1);
  });

  test('bad generate arguments are refused', () => {
    expect(() => task.generate(1.5, 3, 'train')).toThrow(/seed: expected an integer/);
    expect(() => task.generate(1, -1, 'train')).toThrow(/count: expected an integer ≥ 0/);
    expect(() => task.generate(1, 3, 'valid' as never)).toThrow(/split: expected one of train, validation, test/);
  });
});

describe('getTask', () => {
  test('known names, and an error listing them', () => {
    expect(taskNames()).toEqual(['arithmetic', 'addition', 'addition-modes', 'countdown', 'permutations', 'math']);
    expect(getTask('countdown')).toBe(countdownTask);
    expect(() => getTask('sudoku')).toThrow(InvalidArgumentError);
    expect(() => getTask('sudoku')).toThrow('task: expected one of arithmetic, addition, addition-modes, countdown, permutations, math, got "sudoku"');
    expect(() => getTask('toString')).toThrow(InvalidArgumentError);
  });
});

describe('arithmetic', () => {
  test('prompts are "a+b=" or "a*b=" with the exact result', () => {
    const examples = arithmeticTask.generate(4, 500, 'train');
    for (const { prompt, answer } of examples) {
      const m = /^(\d{1,3})([+*])(\d{1,3})=$/.exec(prompt);
      expect(m).not.toBeNull();
      const [a, b] = [Number(m![1]), Number(m![3])];
      expect(answer).toBe(String(m![2] === '+' ? a + b : a * b));
      if (m![2] === '*') expect(Math.max(a, b)).toBeLessThan(100);
    }
    expect(examples.some((e) => e.prompt.includes('*'))).toBe(true);
    expect(examples.some((e) => /^\d{3}\+\d{3}=$/.test(e.prompt))).toBe(true);
  });

  test('scoring reads the first line as an integer', () => {
    expect(arithmeticTask.score(' 357 \n', '357')).toBe(1);
    expect(arithmeticTask.score('0357\n', '357')).toBe(1);
    expect(arithmeticTask.score('357.0\n', '357')).toBe(0);
    expect(arithmeticTask.score('35 7\n', '357')).toBe(0);
    expect(arithmeticTask.formatOk('-12\n')).toBe(true);
    expect(arithmeticTask.wrongAnswer('357')).toBe('358');
    expect(() => arithmeticTask.score('1', 'x')).toThrow(/answer: expected an integer/);
  });
});

describe('addition', () => {
  test('prompts are "a+b=" with 1–3-digit operands, the exact sum, and arithmetic\'s answer checks', () => {
    const examples = additionTask.generate(4, 500, 'train');
    for (const { prompt, answer } of examples) {
      const m = /^(\d{1,3})\+(\d{1,3})=$/.exec(prompt);
      expect(m).not.toBeNull();
      expect(answer).toBe(String(Number(m![1]) + Number(m![2])));
    }
    expect(examples.some((e) => /^\d\+\d=$/.test(e.prompt))).toBe(true);
    expect(examples.some((e) => /^\d{3}\+\d{3}=$/.test(e.prompt))).toBe(true);
    expect(additionTask.score('357\n', '357')).toBe(1);
    expect(additionTask.wrongAnswer('357')).toBe('358');
  });
});

describe('countdown', () => {
  test('every generated problem is solvable with its numbers', () => {
    for (const { prompt, answer } of countdownTask.generate(8, 200, 'train')) {
      const { numbers, target } = parseCountdownAnswer(answer);
      expect(prompt).toBe(`${numbers.join(' ')} -> ${target}:`);
      expect(numbers.length).toBeGreaterThanOrEqual(3);
      expect(numbers.length).toBeLessThanOrEqual(4);
      expect(target).toBeGreaterThan(0);
      expect(solveCountdown(numbers, target)).not.toBeNull();
    }
  });

  const answer = '24 from 3 5 7 9';
  const CASES: Array<[completion: string, score: number, format: boolean, what: string]> = [
    ['3*5+9\n', 1, true, 'a subset of the numbers'],
    ['(9-5)*(7-3)+8\n', 0, true, '3 used twice and 8 not given'],
    ['9*3-7+5-1\n', 0, true, '1 is not given'],
    ['(7*9+9)/3\n', 0, true, '9 used twice'],
    ['3 × 5 + 9\n', 1, true, '× and spaces'],
    ['(5*7-3)/... \n', 0, false, 'junk'],
    ['3*5+9=24\n', 1, true, 'a trailing "= target" is ignored'],
    ['9/(5-5)\n', 0, true, 'division by zero (and 5 twice)'],
    ['7/3*3+17\n', 0, true, 'exact rationals, but 17 not given'],
    ['-3+27\n', 0, false, 'no unary minus'],
    ['3*(5+9\n', 0, false, 'unbalanced parenthesis'],
    ['35+9\n', 0, true, 'digits cannot be glued together'],
  ];
  test.each(CASES)('%j → %i (%s)', (completion, score, format) => {
    expect(countdownTask.score(completion, answer)).toBe(score);
    expect(countdownTask.formatOk(completion)).toBe(format);
  });

  test('the evaluator is exact and reports the literals', () => {
    expect(evaluateExpression('7/3*3')).toEqual({ value: { n: 7n, d: 1n }, numbers: [7, 3, 3] });
    expect(evaluateExpression('1-2-3')!.value).toEqual({ n: -4n, d: 1n });
    expect(evaluateExpression('2*(3+4)/7')!.value).toEqual({ n: 2n, d: 1n });
    expect(evaluateExpression('1/0')).toEqual({ value: null, numbers: [1, 0] });
    expect(evaluateExpression('')).toBeNull();
    expect(evaluateExpression('2 3')).toBeNull();
  });

  test('the wrong label keeps the numbers and moves the target', () => {
    expect(countdownTask.wrongAnswer(answer)).toBe('25 from 3 5 7 9');
    expect(countdownTask.score('3*5+9+1\n', answer)).toBe(0);
    expect(countdownTask.score('3*5+7+3\n', '25 from 3 5 7 9')).toBe(0); // 3 twice
    expect(countdownTask.score('9*3-7+5\n', '25 from 3 5 7 9')).toBe(1); // reaches the wrong target
    expect(() => parseCountdownAnswer('24')).toThrow(/answer: expected a countdown answer/);
  });
});

describe('permutations', () => {
  test('distinct permutations, sorted', () => {
    expect(distinctPermutations('ABA')).toEqual(['AAB', 'ABA', 'BAA']);
    expect(distinctPermutations('AABB')).toEqual(['AABB', 'ABAB', 'ABBA', 'BAAB', 'BABA', 'BBAA']);
    expect(distinctPermutations('ABCA')).toHaveLength(12);
  });

  test('inputs have 3–4 letters, a repeat and at least two distinct letters', () => {
    for (const { prompt, answer } of permutationsTask.generate(6, 300, 'train')) {
      const sequence = /^perm ([A-E]{3,4}):$/.exec(prompt)![1]!;
      const distinct = new Set(sequence).size;
      expect(distinct).toBeGreaterThanOrEqual(2);
      expect(distinct).toBeLessThan(sequence.length);
      expect(answer).toBe(distinctPermutations(sequence).join(','));
    }
  });

  const answer = 'AAB,ABA,BAA';
  const CASES: Array<[completion: string, validity: number, effectiveness: number, necessity: number, what: string]> = [
    ['AAB,ABA,BAA\n', 1, 1, 1, 'all, once each'],
    ['BAA, AAB , ABA\n', 1, 1, 1, 'any order, spaces around commas'],
    ['AAB,ABA\n', 1, 2 / 3, 1, 'one missing'],
    ['AAB,ABA,BAA,AAB\n', 1, 1, 3 / 4, 'one repeated'],
    ['AAB,ABA,BAA,ABB\n', 3 / 4, 1, 1, 'one not a permutation'],
    ['AAB,AAB,XYZ,XYZ\n', 2 / 4, 1 / 3, 2 / 4, 'repeats of valid and invalid items'],
    ['\n', 0, 0, 1, 'nothing listed'],
    ['AAB,,ABA\n', 1, 2 / 3, 1, 'empty items are dropped'],
  ];
  test.each(CASES)('%j → validity %d, effectiveness %d, necessity %d (%s)', (completion, validity, effectiveness, necessity) => {
    const scores = permutationScores(completion, answer);
    expect(scores.validity).toBeCloseTo(validity, 12);
    expect(scores.effectiveness).toBeCloseTo(effectiveness, 12);
    expect(scores.necessity).toBeCloseTo(necessity, 12);
    expect(permutationsTask.explorationScores!(completion, answer)).toEqual(scores);
    expect(permutationsTask.score(completion, answer)).toBe(validity === 1 && effectiveness === 1 && necessity === 1 ? 1 : 0);
  });

  test('format, listed items and the wrong label', () => {
    expect(permutationsTask.formatOk('AAB, ABA\n')).toBe(true);
    expect(permutationsTask.formatOk('AAB;ABA\n')).toBe(false);
    expect(permutationsTask.formatOk('aab\n')).toBe(false);
    expect(listedItems(' AAB , ABA \nBAA')).toEqual(['AAB', 'ABA']);
    expect(permutationsTask.wrongAnswer(answer)).toBe('AAB,ABA');
    expect(() => permutationsTask.wrongAnswer('AAB')).toThrow(/at least two items/);
    expect(() => permutationsTask.score('AAB', 'a b')).toThrow(/answer: expected a permutations answer/);
  });
});

describe('task math (free-form answers of a --data file)', () => {
  const math = getTask('math');
  test('scores the extracted final answer numerically; has no generator and no stop string', () => {
    expect(math.stop).toBe('');
    expect(math.score('so the answer is \\boxed{\\frac{1}{2}}', '0.5')).toBe(1);
    expect(math.score('The answer is 7.', '8')).toBe(0);
    expect(math.formatOk('no number here')).toBe(false);
    expect(math.wrongAnswer('8')).not.toBe('8');
    expect(() => math.generate(0, 1, 'train')).toThrow(/math has none, its prompts come from a dataset/);
  });
});
