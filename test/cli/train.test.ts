/**
 * The training commands as a user runs them (real child processes): `train`, `run` (the main
 * job's comparison, at a tiny budget), `eval`, `score`, `sft`, and the bad input each refuses.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FIXTURES, describeGpu } from '../helpers.js';
import { cli, expectSuccess } from './run-cli.js';

const model = join(FIXTURES, 'tiny-qwen2');
const TINY = ['--prompts-per-step', '2', '--group-size', '2', '--max-completion-length', '4', '--eval-prompts', '4', '--probe-prompts', '2'];

describeGpu('intuitor train, run, eval, score, sft', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'intuitor-train-cli-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('train writes per-step JSONL and CSV with every field, a plot, a checkpoint, and prints the summary', async () => {
    const out = join(dir, 'train');
    const r = await cli(['train', '--model', model, '--task', 'arithmetic', '--reward', 'self-certainty,accuracy:0.5', '--steps', '2', '--seed', '3', '--out', out, ...TINY], undefined, 180_000);
    expectSuccess(r);
    expect(r.stdout).toMatch(/accuracy before .*accuracy after/);
    const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => l.step)).toEqual([0, 1, 2]);
    for (const field of ['reward_mean', 'reward_std', 'reward/self-certainty/mean', 'reward/accuracy/mean', 'frac_reward_zero_std', 'advantage_mean', 'advantage_std', 'kl',
      'clip_ratio_low', 'clip_ratio_high', 'clip_ratio_region', 'entropy', 'self_certainty_mean', 'self_certainty_std', 'self_certainty_min', 'self_certainty_max',
      'completion_length_mean', 'completion_length_max', 'frac_truncated', 'lr', 'grad_norm', 'tokens_per_s', 'step_s', 'gpu_mib',
      'answer_diversity', 'cross_prompt_sc', 'length_drift', 'probe_agreement', 'collapse', 'eval_accuracy']) {
      expect(lines[2]).toHaveProperty([field]);
    }
    expect(typeof lines[2]!.eval_accuracy).toBe('number');
    const csv = readFileSync(join(out, 'metrics.csv'), 'utf8').trim().split('\n');
    expect(csv[0]).toMatch(/^step,reward_mean,/);
    expect(csv).toHaveLength(4);
    expect(readFileSync(join(out, 'plot.svg'), 'utf8')).toMatch(/^<svg[\s\S]*self-certainty[\s\S]*<\/svg>\s*$/);
    expect(existsSync(join(out, 'checkpoint-2', 'model.safetensors'))).toBe(true);
  });

  test('run compares INTUITOR with ground-truth GRPO and writes the plot and the summary', async () => {
    const out = join(dir, 'run');
    const r = await cli(['run', '--model', model, '--steps', '1', '--out', out, ...TINY], undefined, 180_000);
    expectSuccess(r);
    expect(r.stdout).toMatch(/intuitor \(self-certainty\)/);
    expect(r.stdout).toMatch(/ground-truth \(accuracy\)/);
    expect(readFileSync(join(out, 'summary.md'), 'utf8')).toMatch(/\| run \| accuracy before \| accuracy after \| change \|/);
    expect(existsSync(join(out, 'plot.svg'))).toBe(true);
  });

  // Each run trains in a worker process of its own (src/cli/run-pool.ts); how many at once must not change a number.
  test('run gives the same per-step metrics with its runs one at a time (--jobs 1) and side by side (--jobs 2)', async () => {
    const metrics = (out: string, name: string) => readFileSync(join(out, name, 'metrics.jsonl'), 'utf8').trim().split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>).map(({ step_s: _s, tokens_per_s: _t, ...rest }) => rest);
    const outs = [join(dir, 'jobs-1'), join(dir, 'jobs-2')];
    for (const [i, out] of outs.entries()) expectSuccess(await cli(['run', '--model', model, '--steps', '2', '--seed', '5', '--jobs', String(i + 1), '--out', out, ...TINY], undefined, 180_000));
    for (const name of ['intuitor', 'ground-truth']) {
      const [one, two] = outs.map((out) => metrics(out, name));
      expect(one).toHaveLength(3);
      expect(two).toEqual(one);
    }
  });

  test('an error inside a run\'s worker process reaches the user as one line with its exit status', async () => {
    const r = await cli(['run', '--model', join(dir, 'no-such-model'), '--steps', '1', '--out', join(dir, 'run-missing'), ...TINY]);
    expect(r.status).toBe(2);
    expect(r.messages).toEqual([`intuitor: error: ${join(dir, 'no-such-model', 'tokenizer.json')}: expected a Hugging Face tokenizer.json in the model folder, got no such file`]);
  });

  test('eval and score print their tables; score writes every candidate with its scores', async () => {
    const e = await cli(['eval', '--model', model, '--task', 'permutations', '--prompts', '3', '--n', '2', '--max-new-tokens', '4', '--json']);
    expectSuccess(e);
    const result = JSON.parse(e.stdout) as Record<string, unknown>;
    expect(result).toMatchObject({ task: 'permutations', examples: 3, k: 2 });
    expect(result.exploration).toHaveProperty('necessity');
    const prompts = join(dir, 'prompts.jsonl');
    writeFileSync(prompts, '{"prompt": "1+1=", "answer": "2"}\n{"prompt": "3+4=", "answer": 7}\n');
    const s = await cli(['score', '--model', model, '--prompts', prompts, '--n', '3', '--task', 'arithmetic', '--max-new-tokens', '4', '--out', join(dir, 'scored.jsonl')]);
    expectSuccess(s);
    expect(s.stdout).toMatch(/borda/);
    const scored = readFileSync(join(dir, 'scored.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { candidates: unknown[]; picks: Record<string, number> });
    expect(scored).toHaveLength(2);
    expect(scored[0]!.candidates).toHaveLength(3);
    expect(Object.keys(scored[0]!.picks).sort()).toEqual(['borda', 'logprob', 'majority', 'self-certainty']);
  });

  // Refused before any work, so nothing is written under --out.
  const train = (task: string, reward: string, ...extra: string[]) => ['train', '--model', model, '--task', task, '--reward', reward, '--out', join(tmpdir(), 'intuitor-refused'), ...extra];
  test.each([
    [train('arithmetic', 'accuracy', '--group-size', '1'), /--group-size: expected an integer ≥ 2, got "1"/],
    [train('chess', 'accuracy'), /^intuitor: error: --task: expected one of arithmetic, addition, addition-modes, countdown, permutations, math, got "chess"/],
    [train('arithmetic', 'vibes'), /^intuitor: error: --reward: expected a known reward/],
    [train('arithmetic', 'accuracy:lots'), /^intuitor: error: --reward: weight of 'accuracy'/],
    [train('arithmetic', 'accuracy', '--loss-type', 'ppo'), /--loss-type: expected one of grpo, bnpo, dr_grpo, dapo, got "ppo"/],
    [train('arithmetic', 'accuracy', '--temperature', '0'), /--temperature: expected a number > 0, got "0"/],
    [train('arithmetic', 'accuracy', '--system-prompt', 'Be brief.'), /--system-prompt: expected given together with --chat-template, got "Be brief\."/],
    [train('arithmetic', 'accuracy', '--chat-template'), /^intuitor: error: --chat-template: expected a model whose tokenizer_config\.json has a chat_template/],
  ])('train refuses %j with one line', async (args, message) => {
    const r = await cli(args);
    expect(r.status).toBe(2);
    expect(r.messages.join('\n')).toMatch(message);
  });

  test('sft refuses a bad dataset line by number', async () => {
    const data = join(dir, 'sft.jsonl');
    writeFileSync(data, '{"prompt": "a", "completion": "b"}\n{"prompt": "c"}\n');
    const r = await cli(['sft', '--model', model, '--data', data, '--out', join(dir, 'sft-out'), '--steps', '1']);
    expect(r.status).toBe(2);
    expect(r.messages.join('\n')).toMatch(/sft\.jsonl: expected line 2: a "completion" field/);
  });
});
