/** JSONL prompt datasets: reading, every way a line can be wrong (with its line number), writing, and the split helpers. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FileFormatError, InvalidArgumentError } from '../../src/errors.js';
import { answerRegion, fnv1a, formatJsonl, generateSplit, parseJsonlDataset, readJsonlDataset, splitOf } from '../../src/tasks/dataset.js';
import { arithmeticTask } from '../../src/tasks/arithmetic.js';

let directory: string;
beforeAll(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), 'intuitor-dataset-'));
});
afterAll(() => rm(directory, { recursive: true, force: true }));

describe('readJsonlDataset', () => {
  test('reads prompts and answers; blank lines and CRLF are fine; numeric answers become strings', async () => {
    const file = path.join(directory, 'ok.jsonl');
    await writeFile(file, '{"prompt": "1+1=", "answer": "2"}\r\n\n{"prompt": "2+2=", "answer": 4, "source": "extra fields are ignored"}\n');
    expect(await readJsonlDataset(file)).toEqual([
      { prompt: '1+1=', answer: '2' },
      { prompt: '2+2=', answer: '4' },
    ]);
  });

  test('answers are optional with requireAnswer: false', () => {
    expect(parseJsonlDataset('{"prompt": "think"}\n{"prompt": "x", "answer": null}', 'mem', { requireAnswer: false })).toEqual([{ prompt: 'think' }, { prompt: 'x' }]);
  });

  const BAD: Array<[text: string, message: RegExp, what: string]> = [
    ['{"prompt": "a", "answer": "1"}\n{"prompt": "b", "answer": "2"\n', /line 2: a JSON object, got text that is not JSON/, 'not JSON'],
    ['[1, 2]', /line 1: a JSON object, got array of length 2/, 'an array'],
    ['\n\n"text"', /line 3: a JSON object, got "text"/, 'a string, after blank lines'],
    ['{"answer": "1"}', /line 1: a "prompt" field, got an object with "answer"/, 'missing prompt'],
    ['{"prompt": 5, "answer": "1"}', /line 1: "prompt" as a string, got 5/, 'prompt not a string'],
    ['{"prompt": "  ", "answer": "1"}', /line 1: a non-empty "prompt", got "  "/, 'empty prompt'],
    ['{"prompt": "a"}', /line 1: a "answer" field, got an object with "prompt"/, 'missing answer'],
    ['{"prompt": "a", "answer": [1]}', /line 1: "answer" as a string or a finite number, got array of length 1/, 'answer of the wrong type'],
    ['\n \n', /expected at least one JSON line, got none/, 'no examples'],
  ];
  test.each(BAD)('%j: %s', async (text, message) => {
    const file = path.join(directory, 'bad.jsonl');
    await writeFile(file, text);
    const error = await readJsonlDataset(file).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FileFormatError);
    expect((error as FileFormatError).path).toBe(file);
    expect((error as Error).message).toMatch(message);
  });

  test('a missing file is a FileFormatError naming it; an empty path an InvalidArgumentError', async () => {
    const missing = path.join(directory, 'missing.jsonl');
    await expect(readJsonlDataset(missing)).rejects.toThrow(`${missing}: expected a readable JSON Lines file, got nothing: the file does not exist`);
    await expect(readJsonlDataset('')).rejects.toThrow(InvalidArgumentError);
  });

  test('formatJsonl writes what readJsonlDataset reads', async () => {
    const examples = arithmeticTask.generate(1, 20, 'test');
    const file = path.join(directory, 'round.jsonl');
    await writeFile(file, formatJsonl([...examples, { prompt: 'no answer "quoted"\nnewline' }]));
    expect(await readJsonlDataset(file, { requireAnswer: false })).toEqual([...examples, { prompt: 'no answer "quoted"\nnewline' }]);
  });
});

describe('split helpers', () => {
  test('fnv1a is the standard 32-bit FNV-1a', () => {
    expect(fnv1a('')).toBe(0x811c9dc5);
    expect(fnv1a('a')).toBe(0xe40c292c);
    expect(fnv1a('foobar')).toBe(0xbf9cf968);
  });

  test('splitOf sends about testFraction of keys to test, and always the same ones', () => {
    let test = 0;
    for (let i = 0; i < 10000; i++) if (splitOf(`k${i}`, 0.1) === 'test') test++;
    expect(Math.abs(test / 10000 - 0.1)).toBeLessThan(0.01);
    expect(splitOf('k1', 0.1)).toBe(splitOf('k1', 0.1));
    expect(splitOf('anything', 0)).toBe('train');
    expect(splitOf('anything', 1)).toBe('test');
  });

  test('generateSplit gives up on a split with no problems', () => {
    expect(() => generateSplit('t', 1, 3, 'test', 0, () => ({ key: 'x', example: { prompt: 'p', answer: 'a' } }))).toThrow(/split: expected a split of t with problems to draw, got none found in 1600 draws/);
  });

  test('answerRegion: the text before the first stop marker, trimmed', () => {
    expect(answerRegion(' 42 \n43\n', '\n')).toBe('42');
    expect(answerRegion('42', '\n')).toBe('42');
    expect(answerRegion('a|b', '|')).toBe('a');
  });
});
