/** `intuitor logits` and `intuitor generate` on the Hugging Face fixture, and their bad input. */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readNpy, writeNpy } from '../../src/io/npy.js';
import { FIXTURES, describeGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';
import { cli, expectSuccess } from './run-cli.js';

const model = join(FIXTURES, 'tiny-qwen2');

describeGpu('intuitor logits', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'intuitor-logits-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('writes float32 (B, T, V) logits matching transformers, from int32 and int64 ids', async () => {
    const ids = await readNpy(join(model, 'ref_input_ids.npy'));
    const i64 = join(dir, 'ids64.npy');
    await writeNpy(i64, { dtype: 'i64', shape: ids.shape, data: BigInt64Array.from(ids.data as Int32Array, BigInt) });
    const reference = (await readNpy(join(model, 'ref_logits_f64.npy'))).data as Float64Array;
    for (const [name, path] of [['i32', join(model, 'ref_input_ids.npy')], ['i64', i64]] as const) {
      const out = join(dir, name);
      expectSuccess(await cli(['logits', '--model', model, '--ids', path, '--out', out]));
      const logits = await readNpy(join(out, 'logits.npy'));
      expect(logits.dtype).toBe('f32');
      expect(logits.shape).toEqual([4, 24, 384]);
      expectClose(`logits from ${name} ids`, logits.data as Float32Array, reference, TOLERANCES.fixture);
    }
  });

  test('bad ids are refused naming the file or id, and nothing is written', async () => {
    const floatIds = join(dir, 'float.npy');
    await writeNpy(floatIds, { dtype: 'f32', shape: [1, 2], data: new Float32Array([1, 2]) });
    const flat = join(dir, 'flat.npy');
    await writeNpy(flat, { dtype: 'i32', shape: [3], data: new Int32Array([1, 2, 3]) });
    const big = join(dir, 'big.npy');
    await writeNpy(big, { dtype: 'i32', shape: [1, 2], data: new Int32Array([1, 384]) });
    const cases: [string, RegExp][] = [
      [floatIds, /float\.npy: expected token ids of dtype int32 or int64, got f32/],
      [flat, /flat\.npy: expected ids of shape \(B, T\), got shape \[3\]/],
      [big, /big\.npy: expected token ids in \[0, 384\) \(the model's vocab_size\), got 384 at \(b, t\) = \(0, 1\)/],
    ];
    for (const [path, message] of cases) {
      const out = join(dir, 'never');
      const r = await cli(['logits', '--model', model, '--ids', path, '--out', out]);
      expect(r.status).toBe(2);
      expect(r.messages.join('\n')).toMatch(message);
      expect(readdirSync(dir)).not.toContain('never');
    }
  });

  test('generate --greedy --json continues greedy_prompt_ids as transformers does', async () => {
    const ref = JSON.parse(readFileSync(join(model, 'reference.json'), 'utf8')) as { greedy_prompt_ids: number[]; greedy_output_ids: number[]; greedy_text: string; texts: string[] };
    const r = await cli(['generate', '--model', model, '--prompt', 'What is 12 times 7?', '--max-new-tokens', '12', '--greedy', '--json']);
    expectSuccess(r);
    const out = JSON.parse(r.stdout) as { prompt_ids: number[]; new_ids: number[]; text: string };
    expect(out.prompt_ids).toEqual(ref.greedy_prompt_ids);
    expect([...out.prompt_ids, ...out.new_ids]).toEqual(ref.greedy_output_ids);
    expect(out.text).toBe(ref.greedy_text);
  });

  test.each([
    ['--max-new-tokens 0', ['--max-new-tokens', '0', '--greedy'], /--max-new-tokens: expected a positive integer, got "0"/],
    ['no --greedy or --temperature', ['--max-new-tokens', '4'], /--greedy or --temperature: expected one of them/],
    ['--greedy with --top-k', ['--greedy', '--top-k', '5'], /--greedy: expected no sampling flags beside it, got --top-k/],
    ['an empty --prompt', ['--prompt', '', '--greedy'], /--prompt: expected text that encodes to at least one token, got ""/],
    ['--max-new-tokens past max_position_embeddings', ['--max-new-tokens', '300', '--greedy'], /--max-new-tokens: expected at most 254 after a 2-token prompt \(max_position_embeddings 256\), got 300/],
    ['a 900-token --prompt', ['--prompt', 'Hi '.repeat(300), '--greedy'], /--prompt: expected fewer than 256 tokens \(max_position_embeddings\), room left for a new token, got 900 tokens/],
    ['--weights f16', ['--greedy', '--weights', 'f16'], /--weights: expected as-stored or f32, got "f16"/],
  ])('generate refuses %s', async (_label, args, message) => {
    const r = await cli(['generate', '--model', model, '--prompt', 'Hi', ...args]);
    expect(r.status).toBe(2);
    expect(r.messages.join('\n')).toMatch(message);
  });
});
