/** End-of-run tables: number formatting, Markdown and console layout, alignment, escaping, bad rows. */
import { consoleTable, formatCell, markdownTable } from '../../src/train/summary.js';

const COLUMNS = ['run', 'reward', 'accuracy', 'verdict'];
const ROWS = [
  ['intuitor', 0.123456, 0.5, 'collapsed at step 41'],
  ['grpo | accuracy', 12, null, 'stable'],
];

describe('formatCell', () => {
  test.each([
    [null, ''],
    ['text', 'text'],
    [12, '12'],
    [-3, '-3'],
    [0.5, '0.5'],
    [0.123456, '0.1235'],
    [2 / 3, '0.6667'],
    [123.456, '123.5'],
    [12345.678, '12346'],
    [9999.7, '10000'],
    [1234567.5, '1.235e+6'],
    [0.000123, '1.23e-4'],
    [0.001, '0.001'],
    [NaN, 'NaN'],
    [-Infinity, '-Infinity'],
    [1e21, '1e+21'],
  ])('%p → %p', (value, text) => {
    expect(formatCell(value, 4)).toBe(text);
  });

  test('digits and the empty text are options', () => {
    expect(formatCell(Math.PI, 2)).toBe('3.1');
    expect(formatCell(null, 4, '—')).toBe('—');
  });
});

describe('markdownTable', () => {
  test('header, alignment row (numbers right), escaped pipes, empty nulls', () => {
    expect(markdownTable(COLUMNS, ROWS)).toBe([
      '| run | reward | accuracy | verdict |',
      '| --- | ---: | ---: | --- |',
      '| intuitor | 0.1235 | 0.5 | collapsed at step 41 |',
      '| grpo \\| accuracy | 12 |  | stable |',
    ].join('\n'));
  });

  test('explicit alignment, digits, empty text; line breaks become spaces; no rows', () => {
    expect(markdownTable(['a', 'b'], [['x\ny', 1 / 3]], { align: ['right', 'left'], digits: 2, empty: '-' })).toBe('| a | b |\n| ---: | --- |\n| x y | 0.33 |');
    expect(markdownTable(['a'], [[null]], { empty: '-' })).toBe('| a |\n| --- |\n| - |');
    expect(markdownTable(['a', 'b'], [])).toBe('| a | b |\n| --- | --- |');
  });
});

describe('consoleTable', () => {
  test('columns padded to their widest cell, two spaces apart, numbers right-aligned', () => {
    expect(consoleTable(COLUMNS, ROWS)).toBe([
      'run              reward  accuracy  verdict',
      '---------------  ------  --------  --------------------',
      'intuitor         0.1235       0.5  collapsed at step 41',
      'grpo | accuracy      12            stable',
    ].join('\n'));
  });

  test('widths count code points, not UTF-16 units', () => {
    expect(consoleTable(['k', 'v'], [['≥ 𝑥', 1], ['ab', 10]])).toBe('k     v\n---  --\n≥ 𝑥   1\nab   10');
  });
});

describe('bad arguments name the argument', () => {
  test.each([
    [() => markdownTable([], []), /columns: expected a non-empty array/],
    [() => markdownTable(['a'], [['x', 'y']]), /rows\[0\]: expected an array of 1 cells/],
    [() => consoleTable(['a'], [[{} as never]]), /rows\[0\]\[0\]: expected a string, number or null/],
    [() => markdownTable(['a'], [[1]], { align: ['middle' as never] }), /align: expected an array of 1 'left' \| 'right'/],
    [() => consoleTable(['a'], [[1]], { digits: 0 }), /digits: expected an integer in \[1, 21\]/],
  ])('%#', (call, message) => {
    expect(call).toThrow(message);
  });
});
