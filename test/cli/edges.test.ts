/**
 * The sharp edges a new user met trying every documented command (issue 18), each checked the way
 * the user met it: the real CLI in a child process, on the shipped model where the user used it.
 * Bad input exits 2 with one line naming the flag (or file) the user typed, before any work.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultBaseModelDir } from '../../src/cli/build-base.js';
import { writeNpy } from '../../src/io/npy.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { SKIP_GPU } from '../helpers.js';
import { cli, expectSuccess, type CliResult } from './run-cli.js';

// The shipped one-mode addition model (32 positions, digits and + = only).
const model = join(PACKAGE_ROOT, 'models', 'addition-base');
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'intuitor-edges-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Exit 2 and one "intuitor: error:" line matching `pattern`. */
function expectBadInput(r: CliResult, pattern: RegExp): void {
  expect({ status: r.status, messages: r.messages }).toEqual({ status: 2, messages: [expect.stringMatching(pattern)] });
}

describe('text the character tokenizer cannot encode is refused, naming the characters, the model and the task', () => {
  test('tokenize --text', async () => {
    expectBadInput(await cli(['tokenize', '--model', model, '--text', '3*4=']), /^intuitor: error: --text: expected text the tokenizer of .*models\/addition-base can encode .*got "3\*4=", with "\*"$/);
  });

  test('eval --task arithmetic on the addition model', async () => {
    expectBadInput(await cli(['eval', '--model', model, '--task', 'arithmetic']), /^intuitor: error: held-out prompt \d+ of task arithmetic: expected text the tokenizer of .*models\/addition-base can encode .*with "\*"$/);
  });

  test('train --task countdown', async () => {
    expectBadInput(await cli(['train', '--model', model, '--task', 'countdown', '--reward', 'accuracy', '--out', join(dir, 'countdown')]), /^intuitor: error: prompt 1 of task countdown: expected text the tokenizer of .*models\/addition-base can encode .*with " "/);
    expect(readdirSync(dir)).not.toContain('countdown');
  });
});

describe('the shipped model runs generate and score with their defaults', () => {
  (SKIP_GPU ? test.skip : test)('generate --greedy, and score with a labelled prompt', async () => {
    const g = await cli(['generate', '--model', model, '--prompt', '12+34=', '--greedy']);
    expectSuccess(g);
    const prompts = join(dir, 'prompts.jsonl');
    writeFileSync(prompts, '{"prompt": "12+34=", "answer": "46"}\n');
    const s = await cli(['score', '--model', model, '--prompts', prompts, '--task', 'addition', '--n', '2']);
    expectSuccess(s);
    expect(s.stdout).toContain('accuracy (1 labelled prompts)');
  });

  test('a --max-new-tokens past the model\'s positions is refused by name', async () => {
    expectBadInput(await cli(['generate', '--model', model, '--prompt', '12+34=', '--greedy', '--max-new-tokens', '64']), /^intuitor: error: --max-new-tokens: expected at most 26 after a 6-token prompt \(max_position_embeddings 32\), got 64$/);
  });
});

describe('errors name the flag the user typed', () => {
  const train = (...extra: string[]) => cli(['train', '--model', model, '--out', join(dir, 'never'), ...extra]);
  test.each([
    [['--reward', 'accuracy'], /^intuitor: error: --task: expected a built-in task .*or --data FILE .*got neither --task nor --data$/],
    [['--task', 'addition', '--reward', 'accuracy:lots'], /^intuitor: error: --reward: weight of 'accuracy': expected a finite number after the colon, got "lots"$/],
    [['--task', 'addition', '--reward', 'vibes'], /^intuitor: error: --reward: expected a known reward/],
    [['--task', 'addition', '--reward', 'accuracy', '--max-prompt-length', '2'], /^intuitor: error: --max-prompt-length: expected at least the \d tokens of prompt 1 of task addition \(".*"\), got 2$/],
    [['--task', 'addition', '--reward', 'accuracy', '--chat-template'], /^intuitor: error: --chat-template: expected a model whose tokenizer_config\.json has a chat_template/],
  ])('train %j', async (extra, pattern) => {
    expectBadInput(await train(...extra), pattern);
  });

  test('train --prompts-per-step 1 is refused before any work (each step re-scores completions under another prompt)', async () => {
    expectBadInput(await train('--task', 'addition', '--reward', 'accuracy', '--prompts-per-step', '1'), /^intuitor: error: --prompts-per-step: expected an integer ≥ 2, got "1"$/);
  });

  test('eval --task math does not suggest a --data that eval lacks', async () => {
    const r = await cli(['eval', '--model', model, '--task', 'math']);
    expectBadInput(r, /^intuitor: error: --task: expected a task with a generator/);
    expect(r.stderr).not.toContain('--data');
  });

  test('sft --max-length blames the flag, not the model', async () => {
    const data = join(dir, 'sft.jsonl');
    writeFileSync(data, '{"prompt": "12+34=", "completion": "46"}\n');
    expectBadInput(await cli(['sft', '--model', model, '--data', data, '--out', join(dir, 'sft'), '--max-length', '4']), /^intuitor: error: --max-length: expected at least the 9 tokens of line 1 of .*sft\.jsonl \(prompt \+ completion \+ EOS\), got 4$/);
  });

  test('grad: an id outside the vocabulary by file and (b, t); an existing folder as --out by its name', async () => {
    const ids = join(dir, 'ids.npy');
    await writeNpy(ids, { dtype: 'i32', shape: [2, 3], data: Int32Array.from([1, 2, 3, 4, 5, 99]) });
    expectBadInput(await cli(['grad', '--model', model, '--ids', ids, '--out', join(dir, 'g.safetensors')]), /^intuitor: error: .*ids\.npy: expected token ids in \[0, \d+\) \(the model's vocab_size\), got 99 at \(b, t\) = \(1, 2\)$/);
    const folder = join(dir, 'grad-folder');
    mkdirSync(folder);
    expectBadInput(await cli(['grad', '--model', model, '--ids', ids, '--out', folder]), /^intuitor: error: --out: expected a path for the \.safetensors file of gradients, got .*grad-folder, an existing folder$/);
  });

  test('stats refuses --json with --out', async () => {
    expectBadInput(await cli(['stats', '--logits', join(dir, 'none.npy'), '--json', '--out', join(dir, 'stats')]), /^intuitor: error: --json \/ --out: expected one of them/);
  });
});

describe('commands', () => {
  test('an unknown command is named, with the nearest one, and does not run the main job', async () => {
    expectBadInput(await cli(['trian']), /^intuitor: error: unknown command 'trian' \(did you mean train\?\)$/);
  });

  test('run --help shows one default for --model', async () => {
    const r = await cli(['run', '--help']);
    expectSuccess(r);
    const model = r.stdout.slice(r.stdout.indexOf('--model <dir>'), r.stdout.indexOf('--task <name>'));
    expect(model).toContain('base model folder');
    expect(model.match(/\(default:/g)).toHaveLength(1);
  });

  test("build-base writes each task's model to its own folder by default", () => {
    expect(defaultBaseModelDir('addition')).toBe(model);
    expect(defaultBaseModelDir('addition-modes')).toMatch(/models\/addition-modes-base$/);
    expect(defaultBaseModelDir('arithmetic')).toMatch(/models\/arithmetic-base$/);
  });
});

describe('train and sft refuse an output folder holding another run unless --resume or --overwrite', () => {
  test('train and sft into a non-empty --out', async () => {
    const out = join(dir, 'used');
    mkdirSync(out);
    writeFileSync(join(out, 'latest.json'), '{}');
    expectBadInput(await cli(['train', '--model', model, '--task', 'addition', '--reward', 'accuracy', '--out', out]), /^intuitor: error: --out: expected a new or empty folder \(or --resume to continue the run in it, --overwrite to replace it\), got .*used, which holds latest\.json$/);
    const data = join(dir, 'sft-ok.jsonl');
    writeFileSync(data, '{"prompt": "12+34=", "completion": "46"}\n');
    expectBadInput(await cli(['sft', '--model', model, '--data', data, '--out', out]), /^intuitor: error: --out: expected a new or empty folder/);
    expectBadInput(await cli(['sft', '--model', model, '--data', data, '--out', out, '--resume', '--overwrite']), /^intuitor: error: --resume \/ --overwrite: expected one of them/);
    expect(readdirSync(out)).toEqual(['latest.json']);
  });
});

describe("a user's reward module that throws is bad input: exit 2, naming the module and the prompt", () => {
  (SKIP_GPU ? test.skip : test)('with its stack under INTUITOR_DEBUG=1', async () => {
    const module = join(dir, 'throws.mjs');
    writeFileSync(module, 'export default function reward() { throw new Error("boom"); }\n');
    const args = ['train', '--model', model, '--task', 'addition', '--reward', module, '--steps', '1', '--group-size', '2', '--prompts-per-step', '2',
      '--eval-prompts', '1', '--probe-prompts', '0', '--max-completion-length', '2'];
    const r = await cli([...args, '--out', join(dir, 'reward-run')], undefined, 180_000);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/intuitor: error: reward '.*throws\.mjs': expected a finite number for prompt \d+ \(".*="\), got a throw: boom/);
    const debug = await cli([...args, '--out', join(dir, 'reward-run-debug')], undefined, 180_000, { INTUITOR_DEBUG: '1' });
    expect(debug.status).toBe(2);
    expect(debug.stderr).toMatch(/Error: boom\n\s+at reward \(file:\/\/.*throws\.mjs:1/);
  }, 400_000);
});
