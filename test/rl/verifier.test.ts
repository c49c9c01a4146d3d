/** The free-form answer verifier: extraction priority, normalisation, numeric and string equality. */
import { answersEqual, extractAnswer, lastBoxed, normalizeAnswer, parseNumericAnswer } from '../../src/rl/verifier.js';

describe('extractAnswer', () => {
  const CASES: Array<[text: string, want: string | null, what: string]> = [
    ['so the result is \\boxed{42}.', '42', 'a boxed answer'],
    ['first \\boxed{1}, then \\boxed{2}', '2', 'the LAST box wins'],
    ['\\boxed{\\frac{1}{2}}', '\\frac{1}{2}', 'nested braces are kept'],
    ['\\boxed{\\{1, 2\\}}', '\\{1, 2\\}', 'escaped braces do not nest'],
    ['\\boxed {7}', '7', 'a space after \\boxed'],
    ['\\fbox{9}', '9', '\\fbox counts as a box'],
    ['The answer is 17. Then we check 18.', '17', '"answer is" before the last number'],
    ['The answer is \\boxed{5}. answer is 6', '5', 'a box beats "answer is"'],
    ['Final Answer: 3.5.', '3.5', '"Answer:" with a decimal and a full stop'],
    ['answer: $\\frac{3}{4}$\nmore text 99', '$\\frac{3}{4}$', 'the stated answer ends at the line'],
    ['**Answer:** 12', '12', 'markdown bold around "Answer:"'],
    ['so the answer is 7, because 3 + 4 = 7', '7', 'an explaining clause is cut'],
    ['the answer is (1, 2) since both work', '(1, 2)', 'a tuple survives its comma'],
    ['we get 3 apples and 12 pears', '12', 'the last number'],
    ['total = 1,234,567 dollars', '1,234,567', 'thousands separators'],
    ['it is -.5 or maybe -2.75', '-2.75', 'negative decimals'],
    ['ratio 3/4', '3/4', 'a slash fraction'],
    ['no digits here', null, 'nothing to extract'],
    ['\\boxed{unclosed 5', '5', 'an unclosed box falls through to the last number'],
    ['', null, 'empty text'],
  ];
  test.each(CASES)('%j → %j (%s)', (text, want) => {
    expect(extractAnswer(text)).toBe(want);
  });

  test('lastBoxed returns null without a box', () => {
    expect(lastBoxed('no box')).toBeNull();
    expect(lastBoxed('\\boxed{}')).toBe('');
  });
});

describe('normalizeAnswer', () => {
  const CASES: Array<[string, string]> = [
    ['$5$', '5'],
    ['\\(5\\)', '5'],
    ['5.', '5'],
    ['$5$.', '5'],
    ['1,000', '1000'],
    ['\\dfrac{3}{4}', '\\frac{3}{4}'],
    ['\\tfrac34', '\\frac{3}{4}'],
    ['\\frac1{2}', '\\frac{1}{2}'],
    ['\\left( 1, 2 \\right)', '(1,2)'],
    ['50\\%', '50'],
    ['90^\\circ', '90'],
    ['5\\text{ cm}', '5'],
    ['\\text{Tuesday}', 'Tuesday'],
    ['x = 7', '7'],
    ['{5}', '5'],
    ['\\boxed{8}', '8'],
    ['\u22123', '-3'],
    ['1,2', '1,2'],
  ];
  test.each(CASES)('%j → %j', (input, want) => {
    expect(normalizeAnswer(input)).toBe(want);
  });
});

describe('parseNumericAnswer', () => {
  const CASES: Array<[string, number | null]> = [
    ['42', 42],
    ['-3', -3],
    ['+3', 3],
    ['0.25', 0.25],
    ['.5', 0.5],
    ['1e3', 1000],
    ['3/4', 0.75],
    ['-3/4', -0.75],
    ['\\frac{3}{4}', 0.75],
    ['-\\frac{3}{4}', -0.75],
    ['\\frac{-3}{4}', -0.75],
    ['1/0', null],
    ['(1,2)', null],
    ['x', null],
    ['', null],
  ];
  test.each(CASES)('%j → %p', (input, want) => {
    expect(parseNumericAnswer(input)).toBe(want);
  });
});

describe('answersEqual', () => {
  const EQUAL: Array<[string, string]> = [
    ['42', '42'],
    ['42', '42.0'],
    ['42', '$42$'],
    ['42', '\\boxed{42}'],
    ['1000', '1,000'],
    ['0.75', '3/4'],
    ['\\frac{3}{4}', '3/4'],
    ['\\dfrac{3}{4}', '0.75'],
    ['-\\frac{1}{2}', '-0.5'],
    ['\\frac12', '0.5'],
    ['1/3', '0.3333333333'],
    ['50\\%', '50'],
    ['5', '5.'],
    ['x=5', '5'],
    ['(1, 2)', '(1,2)'],
    ['\\left(1,2\\right)', '(1, 2)'],
    ['\\text{Tuesday}', 'Tuesday'],
    ['1000000', '1e6'],
  ];
  test.each(EQUAL)('%j equals %j', (a, b) => {
    expect(answersEqual(a, b)).toBe(true);
    expect(answersEqual(b, a)).toBe(true);
  });

  const DIFFERENT: Array<[string, string]> = [
    ['42', '43'],
    ['0.75', '0.76'],
    ['1/3', '0.333'],
    ['1000000', '1000002'],
    ['-1', '1'],
    ['(1,2)', '(2,1)'],
    ['Tuesday', 'tuesday'],
    ['', ''],
    ['5', ''],
  ];
  test.each(DIFFERENT)('%j differs from %j', (a, b) => {
    expect(answersEqual(a, b)).toBe(false);
  });

  test('relative tolerance 1e-6 on large and small numbers', () => {
    expect(answersEqual('123456789', '123456789.1')).toBe(true);
    expect(answersEqual('1e-9', '1.0000001e-9')).toBe(true);
    expect(answersEqual('1e-9', '1.1e-9')).toBe(false);
    expect(answersEqual('0', '1e-12')).toBe(false);
  });

  test('non-strings are never equal', () => {
    expect(answersEqual(5 as never, '5')).toBe(false);
    expect(extractAnswer(null as never)).toBeNull();
  });
});
