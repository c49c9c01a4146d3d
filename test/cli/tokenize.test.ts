/** `intuitor tokenize` on the Hugging Face fixture, both directions, and its bad input. */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURES } from '../helpers.js';
import { cli, expectSuccess } from './run-cli.js';

const model = join(FIXTURES, 'tiny-qwen2');
const reference = JSON.parse(readFileSync(join(model, 'reference.json'), 'utf8')) as { tokenizer_check: Record<string, number[]>; decode_check: string };
const [text, ids] = Object.entries(reference.tokenizer_check)[0]!;

test('text → ids, as transformers gives them', async () => {
  const plain = await cli(['tokenize', '--model', model, '--text', text]);
  expectSuccess(plain);
  expect(plain.stdout).toBe(`${ids.join(' ')}\n`);
  const json = await cli(['tokenize', '--model', model, '--text', text, '--json']);
  expect(JSON.parse(json.stdout)).toEqual({ ids });
});

test('ids → text', async () => {
  const r = await cli(['tokenize', '--model', model, '--ids', ids.join(','), '--json']);
  expectSuccess(r);
  expect(JSON.parse(r.stdout)).toEqual({ text: reference.decode_check });
});

test.each([
  [['--text', 'a', '--ids', '1'], /--text \/ --ids: expected exactly one of them, got both/],
  [[], /--text \/ --ids: expected exactly one of them, got neither/],
  [['--ids', '1,x'], /--ids: expected non-negative integer token ids separated by commas or spaces, got "x"/],
  // The vocabulary is 384 ids (added tokens included): 383 is the last.
  [['--ids', '5,383,384'], /^intuitor: error: --ids: expected token ids in \[0, 384\) \(the tokenizer's vocabulary\), got 384 at index 2$/],
  [['--ids', '99999999999 5'], /^intuitor: error: --ids: expected token ids in \[0, 384\) \(the tokenizer's vocabulary\), got 99999999999 at index 0$/],
])('bad input %j exits 2 naming the argument', async (args, message) => {
  const r = await cli(['tokenize', '--model', model, ...args]);
  expect(r.status).toBe(2);
  expect(r.messages).toHaveLength(1);
  expect(r.messages[0]).toMatch(message);
  expect(r.stdout).toBe('');
});

test('a malformed chat template does not stop tokenize', async () => {
  const folder = mkdtempSync(join(tmpdir(), 'intuitor-tokenize-'));
  try {
    copyFileSync(join(model, 'tokenizer.json'), join(folder, 'tokenizer.json'));
    const config = JSON.parse(readFileSync(join(model, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(folder, 'tokenizer_config.json'), JSON.stringify({ ...config, chat_template: '{% for m in %}' }));
    const r = await cli(['tokenize', '--model', folder, '--text', text]);
    expectSuccess(r);
    expect(r.stdout).toBe(`${ids.join(' ')}\n`);
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
});

test('a folder without a tokenizer names the file', async () => {
  const r = await cli(['tokenize', '--model', '/nonexistent-model', '--text', 'a']);
  expect(r.status).toBe(2);
  expect(r.messages[0]).toBe('intuitor: error: /nonexistent-model/tokenizer.json: expected a Hugging Face tokenizer.json in the model folder, got no such file');
});
