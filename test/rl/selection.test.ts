/** Best-of-N selection against hand-computed cases: every rule, ties, missing answers, equivalent answers, N = 1. */
import { InvalidArgumentError } from '../../src/errors.js';
import { DEFAULT_BORDA_POWER, SELECTION_RULES, canonicalAnswer, selectBest, type SelectionCandidate } from '../../src/rl/selection.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

const c = (answer: string | null, selfCertainty: number, logprob = -1): SelectionCandidate => ({ answer, selfCertainty, logprob });

/**
 * The worked case. Self-certainty ranks: #3 (r1), #1 (r2), #2 (r3), #0 (r4).
 * The no-answer candidate #3 is the most certain and most likely, so it tests exclusion in every rule.
 */
const CASE = [c('7', 1.0, -0.5), c('5', 3.0, -0.9), c('7', 2.0, -0.2), c(null, 4.0, -0.1)];

describe('selectBest: each rule on the worked case', () => {
  test("'self-certainty': the highest SC among candidates with an answer", () => {
    const s = selectBest(CASE, 'self-certainty');
    expect(s).toEqual({ index: 1, answer: '5', scores: [1, 3, 2, -Infinity] });
  });

  test("'logprob': the highest mean log-prob among candidates with an answer", () => {
    expect(selectBest(CASE, 'logprob')).toEqual({ index: 2, answer: '7', scores: [-0.5, -0.9, -0.2, -Infinity] });
  });

  test("'majority': the most frequent answer; its most self-certain candidate", () => {
    expect(selectBest(CASE, 'majority')).toEqual({ index: 2, answer: '7', scores: [2, 1, 2, -Infinity] });
  });

  test("'borda' p = 0.5 (default): '7' gets √2 + √1 = 2.414 > '5' √3 = 1.732; the null's √4 is discarded", () => {
    expect(DEFAULT_BORDA_POWER).toBe(0.5);
    const s = selectBest(CASE, 'borda');
    expect([s.index, s.answer]).toEqual([2, '7']);
    expectClose('borda votes', s.scores, [Math.SQRT2 + 1, Math.sqrt(3), Math.SQRT2 + 1, -Infinity], TOLERANCES.rlHost);
  });

  test("'borda' p = 2: '5' gets 3² = 9 > '7' 2² + 1² = 5; p = 0 is majority; large p follows self-certainty", () => {
    const s = selectBest(CASE, 'borda', { bordaPower: 2 });
    expect(s).toEqual({ index: 1, answer: '5', scores: [5, 9, 5, -Infinity] });
    expect(selectBest(CASE, 'borda', { bordaPower: 0 })).toEqual(selectBest(CASE, 'majority'));
    expect(selectBest(CASE, 'borda', { bordaPower: 50 }).index).toBe(selectBest(CASE, 'self-certainty').index);
  });

  test('SELECTION_RULES lists every rule', () => {
    expect([...SELECTION_RULES]).toEqual(['self-certainty', 'logprob', 'majority', 'borda']);
  });
});

describe('selectBest: ties', () => {
  test('equal self-certainty or log-prob: the first candidate', () => {
    expect(selectBest([c('1', 2, -1), c('2', 2, -1), c('3', 1, -1)], 'self-certainty').index).toBe(0);
    expect(selectBest([c('1', 0, -3), c('2', 5, -1), c('3', 1, -1)], 'logprob').index).toBe(1);
  });

  test('majority: equal counts go to the higher summed SC (b: 2 + 0.1 > a: 1 + 0.5), then to the answer seen first', () => {
    expect(selectBest([c('a', 1), c('b', 2), c('a', 0.5), c('b', 0.1)], 'majority')).toEqual({ index: 1, answer: 'b', scores: [2, 2, 2, 2] });
    expect(selectBest([c('a', 1), c('b', 1)], 'majority').index).toBe(0);
    expect(selectBest([c('b', 1), c('a', 1)], 'majority').index).toBe(0);
  });

  test('borda: equal SC ranks in candidate order (x before y gets rank 1)', () => {
    // p = 1, N = 3: ranks give 3, 2, 1 votes in candidate order.
    expect(selectBest([c('x', 2), c('y', 2), c('z', 1)], 'borda', { bordaPower: 1 })).toEqual({ index: 0, answer: 'x', scores: [3, 2, 1] });
    expect(selectBest([c('y', 2), c('x', 2), c('z', 1)], 'borda', { bordaPower: 1 })).toEqual({ index: 0, answer: 'y', scores: [3, 2, 1] });
  });

  test('borda: equal votes go to the higher summed SC (b: 2.5 + 1 > a: 3)', () => {
    expect(selectBest([c('a', 3), c('b', 2.5), c('b', 1)], 'borda', { bordaPower: 1 })).toEqual({ index: 1, answer: 'b', scores: [3, 3, 3] });
  });
});

describe('selectBest: answers', () => {
  test('equivalent answers vote together; the chosen candidate keeps its own spelling', () => {
    const candidates = [c('3', 1), c('0.5', 1), c('1/2', 3), c('3', 1), c('\\boxed{\\frac12}', 2)];
    expect(selectBest(candidates, 'majority')).toEqual({ index: 2, answer: '1/2', scores: [2, 3, 3, 2, 3] });
    expect(canonicalAnswer('\\frac{1}{2}')).toBe('0.5');
    expect(canonicalAnswer('-0')).toBe('0');
    expect(canonicalAnswer('x = 1,000')).toBe('1000');
    expect(canonicalAnswer(' \\boxed{ } ')).toBeNull();
    expect(canonicalAnswer(null)).toBeNull();
  });

  test('no candidate with an answer: SC and log-prob rules pick among all; voting rules return the most self-certain with answer null', () => {
    const none = [c(null, 1, -0.1), c('', 3, -2), c(null, 2, -0.5)];
    expect(selectBest(none, 'self-certainty')).toEqual({ index: 1, answer: '', scores: [1, 3, 2] });
    expect(selectBest(none, 'logprob')).toEqual({ index: 0, answer: null, scores: [-0.1, -2, -0.5] });
    for (const rule of ['majority', 'borda'] as const) expect(selectBest(none, rule)).toEqual({ index: 1, answer: null, scores: [-Infinity, -Infinity, -Infinity] });
  });

  test('N = 1: every rule returns the only candidate', () => {
    for (const rule of SELECTION_RULES) {
      expect(selectBest([c('4', -2, -7)], rule)).toMatchObject({ index: 0, answer: '4' });
      expect(selectBest([c(null, 0, 0)], rule)).toMatchObject({ index: 0, answer: null });
    }
  });
});

describe('selectBest: bad arguments name the argument', () => {
  test.each([
    [[], 'self-certainty', {}, /candidates: expected a non-empty array/],
    [[c('1', NaN)], 'self-certainty', {}, /candidates\[0\]\.selfCertainty: expected a finite number, got NaN/],
    [[c('1', 1, -Infinity)], 'logprob', {}, /candidates\[0\]\.logprob/],
    [[{ answer: 5, selfCertainty: 1, logprob: 1 }], 'majority', {}, /candidates\[0\]\.answer: expected a string or null/],
    [[c('1', 1)], 'vote', {}, /rule: expected one of self-certainty, logprob, majority, borda/],
    [[c('1', 1)], 'borda', { bordaPower: -1 }, /bordaPower: expected a finite number ≥ 0/],
  ])('%#', (candidates, rule, options, message) => {
    const call = () => selectBest(candidates as SelectionCandidate[], rule as never, options);
    expect(call).toThrow(InvalidArgumentError);
    expect(call).toThrow(message);
  });
});
