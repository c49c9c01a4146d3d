/**
 * `intuitor score-completions` as a user runs it, on the Hugging Face fixture: equal to `intuitor
 * logits` then `intuitor stats`; the three line forms; bad input and flags. Memory and kills are in
 * score-completions-stream.test.ts.
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readNpy, writeNpy } from '../../src/io/npy.js';
import { PolicyTokenizer } from '../../src/model/tokenizer.js';
import { FIXTURES, describeGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';
import { ROOT, cli, expectSuccess } from './run-cli.js';

const model = join(FIXTURES, 'tiny-qwen2');
const VOCAB = 384;
const CHAT_TEMPLATE = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

interface OutRecord {
  id: string | number;
  line: number;
  tokens: number;
  self_certainty: number;
  logprob_sum: number;
  logprob_mean: number;
  entropy: number;
  token_logprobs?: number[];
  token_self_certainty?: number[];
  token_entropy?: number[];
}

const readRecords = (path: string): OutRecord[] => readFileSync(path, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as OutRecord);
const lines = (values: unknown[]): string => values.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join('\n') + '\n';

describeGpu('intuitor score-completions', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'intuitor-score-completions-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const path = (name: string) => join(dir, name);
  const score = (input: string, out: string, ...args: string[]) => cli(['score-completions', '--model', model, '--input', input, '--out', out, ...args], ROOT, 120_000);

  test('equals `intuitor logits` then `intuitor stats` on the same ids within 1e-5 (f32 weights)', async () => {
    const ids = await readNpy(join(model, 'ref_input_ids.npy'));
    const [B, T] = ids.shape as [number, number];
    const seqs = Array.from({ length: B }, (_, b) => Array.from({ length: T }, (__, t) => Number(ids.data[b * T + t])));
    const promptLengths = [1, 5, 12, 20];
    writeFileSync(path('ids.jsonl'), lines(seqs.map((s, b) => ({ prompt_ids: s.slice(0, promptLengths[b]), completion_ids: s.slice(promptLengths[b]) }))));
    // Row t predicts token t + 1; the last row's id is unused.
    await writeNpy(path('next.npy'), { dtype: 'i32', shape: [B, T], data: Int32Array.from({ length: B * T }, (_, i) => (i % T === T - 1 ? 0 : Number(ids.data[i + 1]))) });
    expectSuccess(await cli(['logits', '--model', model, '--ids', join(model, 'ref_input_ids.npy'), '--out', path('logits'), '--weights', 'f32']));
    const statsRun = await cli(['stats', '--logits', path('logits/logits.npy'), '--ids', path('next.npy'), '--json']);
    expectSuccess(statsRun);
    const stats = JSON.parse(statsRun.stdout) as { selfCertainty: number[]; entropy: number[]; logprob: number[] };
    expectSuccess(await score(path('ids.jsonl'), path('ids.out.jsonl'), '--weights', 'f32', '--per-token'));
    const got = readRecords(path('ids.out.jsonl'));
    expect(got.map((r) => [r.id, r.line, r.tokens])).toEqual(promptLengths.map((p, b) => [b + 1, b + 1, T - p]));
    const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
    for (const [b, r] of got.entries()) {
      const rows = (a: number[]) => a.slice(b * T + promptLengths[b]! - 1, (b + 1) * T - 1);
      const want = { logprob: rows(stats.logprob), selfCertainty: rows(stats.selfCertainty), entropy: rows(stats.entropy) };
      expectClose(`line ${b + 1} per token`, [...r.token_logprobs!, ...r.token_self_certainty!, ...r.token_entropy!], [...want.logprob, ...want.selfCertainty, ...want.entropy], TOLERANCES.scoreVsLogitsStats);
      expectClose(`line ${b + 1} means`, [r.self_certainty, r.entropy, r.logprob_mean, r.logprob_sum / r.tokens], [mean(want.selfCertainty), mean(want.entropy), mean(want.logprob), mean(want.logprob)], TOLERANCES.scoreVsLogitsStats);
    }
  });

  test('text, chat and pre-tokenised lines of the same tokens give the same record; the summary as --json', async () => {
    // A copy of the fixture whose tokenizer_config.json has a chat template.
    const chatModel = path('chat-model');
    cpSync(model, chatModel, { recursive: true });
    const config = JSON.parse(readFileSync(join(chatModel, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(chatModel, 'tokenizer_config.json'), JSON.stringify({ ...config, chat_template: CHAT_TEMPLATE }));
    const tokenizer = PolicyTokenizer.load(chatModel);
    const messages = [{ role: 'user', content: 'What is 12 times 7?' }, { role: 'assistant', content: 'It is 84.' }];
    const chatPrompt = tokenizer.applyChatTemplate(messages.slice(0, 1), { addGenerationPrompt: true });
    writeFileSync(path('forms.jsonl'), lines([
      { id: 'text', prompt: chatPrompt, completion: 'It is 84.' },
      { id: 'chat', messages },
      { id: 'ids', prompt_ids: tokenizer.encode(chatPrompt), completion_ids: tokenizer.encode('It is 84.') },
    ]));
    const r = await cli(['score-completions', '--model', chatModel, '--input', path('forms.jsonl'), '--out', path('forms.out.jsonl'), '--json', '--temperature', '0.7']);
    expectSuccess(r);
    const [text, chat, ids] = readRecords(path('forms.out.jsonl'));
    expect([text!.id, chat!.id, ids!.id]).toEqual(['text', 'chat', 'ids']);
    expect(text!.tokens).toBe(tokenizer.encode('It is 84.').length);
    for (const other of [chat!, ids!]) expect({ ...other, id: 0, line: 0 }).toEqual({ ...text!, id: 0, line: 0 });
    const summary = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(summary).toMatchObject({ lines: 3, scored: 3, skipped: 0, tokens: 3 * text!.tokens, interrupted: false, resumed_after_line: 0 });
    expect(summary.tokens_per_second).toBeGreaterThan(0);
    // With --json the summary is on stdout only.
    expect(r.messages.filter((m) => m.startsWith('intuitor score-completions: 3 lines'))).toEqual([]);
  });

  test('bad lines: reported by number and skipped (exit 2, the rest scored), or with --strict the first ends the run', async () => {
    writeFileSync(path('bad.jsonl'), lines([
      { prompt: 'Hello', completion: ' there' },
      'not json',
      { prompt: 'no completion' },
      '',
      { prompt_ids: [1, 2], completion_ids: [3, VOCAB] },
      { messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'yo' }] },
      { id: 'last', prompt_ids: [1, 2], completion_ids: [3, 4] },
    ]));
    const r = await score(path('bad.jsonl'), path('bad.out.jsonl'));
    expect(r.status).toBe(2);
    const text = r.messages.join('\n');
    expect(text).toMatch(/skipped .*bad\.jsonl line 2: expected a JSON object, got "not json"/);
    expect(text).toMatch(/skipped .*bad\.jsonl line 3: "completion": expected a string, got undefined/);
    expect(text).toMatch(/skipped .*bad\.jsonl line 5: "completion_ids": expected token ids in \[0, 384\) \(the model's vocab_size\), got 384 at index 1/);
    expect(text).toMatch(/skipped .*bad\.jsonl line 6: "messages": expected a conversation the model's chat template renders/);
    expect(r.messages.at(-1)).toMatch(/^intuitor: error: .*bad\.jsonl: expected JSON lines in one of the three forms, got 4 bad lines, skipped \(lines 2, 3, 5, 6, each reported above\); the others were scored$/);
    expect(readRecords(path('bad.out.jsonl')).map((rec) => [rec.id, rec.line])).toEqual([[1, 1], ['last', 7]]);

    const strict = await score(path('bad.jsonl'), path('strict.out.jsonl'), '--strict');
    expect(strict.status).toBe(2);
    expect(strict.messages.at(-1)).toMatch(/^intuitor: error: .*bad\.jsonl: line 2: expected a JSON object, got "not json"/);
    expect(readRecords(path('strict.out.jsonl')).map((rec) => rec.line)).toEqual([1]);
  });

  test.each([
    ['--temperature 0', ['--temperature', '0'], /--temperature: expected a number > 0, got "0"/],
    ['--chunk-lines 0', ['--chunk-lines', '0'], /--chunk-lines: expected a positive integer, got "0"/],
    ['--max-tokens-per-pass 1', ['--max-tokens-per-pass', '1'], /--max-tokens-per-pass: expected an integer ≥ 2, got "1"/],
    ['--weights f16', ['--weights', 'f16'], /--weights: expected one of as-stored, f32, got "f16"/],
    ['a missing --input', ['--input', 'nowhere.jsonl'], /nowhere\.jsonl: expected a readable JSON Lines file \(--input\), got nothing: the file does not exist/],
  ])('refuses %s, naming the flag', async (_label, args, message) => {
    writeFileSync(path('one.jsonl'), lines([{ prompt_ids: [1], completion_ids: [2] }]));
    const r = await cli(['score-completions', '--model', model, '--input', path('one.jsonl'), '--out', path('never.jsonl'), ...args]);
    expect(r.status).toBe(2);
    expect(r.messages.join('\n')).toMatch(message);
    expect(existsSync(path('never.jsonl'))).toBe(false);
  });

  test('an existing --out is refused without --resume and kept', async () => {
    writeFileSync(path('kept.jsonl'), 'precious\n');
    const r = await score(path('one.jsonl'), path('kept.jsonl'));
    expect(r.status).toBe(2);
    expect(r.messages.join('\n')).toMatch(/--out: expected a file that does not exist yet \(or --resume to continue it\)/);
    expect(readFileSync(path('kept.jsonl'), 'utf8')).toBe('precious\n');
  });
});
