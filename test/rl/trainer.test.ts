/**
 * The GRPO trainer end to end on WebGPU (the tiny-qwen2 fixture):
 * determinism, bit-identical resume, the self-certainty reward against the token-statistics
 * kernel, a user reward's failures and bad configuration; and, on the shipped addition base, that
 * a short run with the accuracy reward raises held-out accuracy.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GpuContext } from '../../src/gpu/context.js';
import { PolicyModel } from '../../src/model/policy.js';
import { PolicyTokenizer } from '../../src/model/tokenizer.js';
import { tokenStats } from '../../src/ops/token-stats.js';
import { resolveGrpoConfig, type GrpoConfigInput } from '../../src/rl/config.js';
import { rollout, scoreCompletions, scoringLayout, sequencesPerPass } from '../../src/rl/rollout.js';
import { runGrpo } from '../../src/rl/trainer.js';
import { probeModeStop } from '../../src/rl/monitors.js';
import { SHIPPED_BASES } from '../../src/cli/run.js';
import { latestCheckpoint, loadCheckpoint } from '../../src/train/checkpoint.js';
import { FIXTURES, describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

const fixture = join(FIXTURES, 'tiny-qwen2');

/** Per-step metrics that must repeat exactly (timings excluded). */
function deterministic(out: string): unknown[] {
  return readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((line) => {
    const { tokens_per_s: _a, step_s: _b, ...rest } = JSON.parse(line) as Record<string, unknown>;
    return rest;
  });
}

/** Steps of the mechanism test (the sampled scratch share rises under self-certainty alone). */
const MECHANISM_STEPS = 8;
const MECHANISM_SAMPLED_RISE = 0.1;

describeGpu('GRPO trainer', () => {
  let ctx: GpuContext;
  let tmp: string;
  beforeAll(async () => {
    ctx = await openGpu();
    tmp = mkdtempSync(join(tmpdir(), 'intuitor-grpo-'));
  });
  afterAll(() => {
    ctx.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  const small = (out: string, extra: Partial<GrpoConfigInput> = {}): GrpoConfigInput => ({
    model: fixture, task: 'arithmetic', out: join(tmp, out), rewards: 'self-certainty,accuracy:0.5,random:0.1',
    steps: 3, promptsPerStep: 3, groupSize: 3, maxCompletionLength: 5, evalPrompts: 6, probePrompts: 3, seed: 7, ...extra,
  });

  test('a short run with the accuracy reward raises held-out accuracy (the shipped addition base, 20 steps)', async () => {
    const result = await runGrpo(ctx, {
      model: SHIPPED_BASES.none, task: 'addition', rewards: 'accuracy', out: join(tmp, 'learns'),
      steps: 20, promptsPerStep: 16, groupSize: 8, lr: 3e-4, maxCompletionLength: 8, evalPrompts: 256, probePrompts: 0,
    });
    // Measured on lavapipe: about +6 points. One standard error of a ~55% accuracy on 256 prompts is 3.1 points.
    expect(result.after.pass1 - result.before.pass1).toBeGreaterThanOrEqual(0.03);
    expect(result.verdict).toBe('stable');
  }, 180_000);

  test('the mechanism on the Qwen-like base: a short self-certainty run, no labels, raises the scratch mode\'s share of the sampled and of the greedy answers', async () => {
    const result = await runGrpo(ctx, {
      model: SHIPPED_BASES.q, task: 'addition-modes', rewards: 'self-certainty', out: join(tmp, 'mechanism'),
      steps: MECHANISM_STEPS, promptsPerStep: 8, groupSize: 8, lr: 1e-4, beta: 0.05, mu: 2, maxCompletionLength: 12, evalPrompts: 16, probePrompts: 16,
    });
    const at = (step: number, key: string) => result.records.find((r) => r.step === step)![key] as number;
    // Measured on lavapipe: sampled 0.44 → 0.61 (step 1 → 8), greedy probes 0.56 → 1 (step 0 → 8; 1 from
    // step 4). The sampled shares are of 64 samples (one standard error ≤ 0.0625); the greedy ones of the
    // 16 probe prompts, the start model's at step 0.
    expect(at(MECHANISM_STEPS, 'mode/scratch') - at(1, 'mode/scratch')).toBeGreaterThanOrEqual(MECHANISM_SAMPLED_RISE);
    expect(at(MECHANISM_STEPS, 'probe_mode/scratch') - at(0, 'probe_mode/scratch')).toBeGreaterThanOrEqual(0.25);
  }, 300_000);

  test('--stop-on-probe-modes trains on to the checkpoint after the greedy probe answers settle, stops there and keeps it', async () => {
    const result = await runGrpo(ctx, {
      model: SHIPPED_BASES.q, task: 'addition-modes', rewards: 'self-certainty', out: join(tmp, 'probe-stop'),
      steps: 12, promptsPerStep: 8, groupSize: 8, lr: 1e-4, beta: 0.05, mu: 2, maxCompletionLength: 12, evalPrompts: 16, probePrompts: 16,
      saveEvery: 3, stopOnProbeModes: true,
    });
    const fired = probeModeStop(result.records);
    expect(fired).not.toBeNull();
    expect(result.stoppedOnCollapse).toBe(true);
    expect(result.steps).toBe(Math.ceil(fired! / 3) * 3);
    expect(result.records.at(-1)!.step).toBe(result.steps);
    expect(result.lastCheckpoint).toMatch(new RegExp(`checkpoint-${result.steps}$`));
  }, 300_000);

  test('the same seed gives identical metrics; an interrupted run resumes bit-identically', async () => {
    const options = { steps: 4, saveEvery: 2, beta: 0.02, mu: 2 };
    const a = await runGrpo(ctx, small('a', options));
    await runGrpo(ctx, small('b', options));
    expect(deterministic(join(tmp, 'b'))).toEqual(deterministic(join(tmp, 'a')));
    expect(a.records.length).toBe(5); // step 0 (evaluation) + 4 steps

    await expect(runGrpo(ctx, small('c', options), { onStep: (r) => { if (r.step === 3) throw new Error('interrupted'); } })).rejects.toThrow('interrupted');
    expect(await latestCheckpoint(join(tmp, 'c'))).toMatch(/checkpoint-2$/);
    await runGrpo(ctx, small('c', { ...options, resume: true }));
    expect(deterministic(join(tmp, 'c'))).toEqual(deterministic(join(tmp, 'a')));
    const final = async (dir: string) => (await loadCheckpoint((await latestCheckpoint(join(tmp, dir)))!)).tensors;
    const [wa, wc] = [await final('a'), await final('c')];
    for (const name of Object.keys(wa)) expect(Buffer.from((wc[name]!.data as Float32Array).buffer).equals(Buffer.from((wa[name]!.data as Float32Array).buffer))).toBe(true);
  });

  test('micro-batches: with bindings that hold a few sequences\' activations, training runs in passes and matches one pass', async () => {
    // Bindings of 96 KiB (the embedding table's size): 15 sequences of 13 tokens × 176 floats of
    // the widest activation (the MLP's, 9.2 KB each; the lm_head runs fused, no logits) train in 2
    // passes of 8 (the last with one padding sequence).
    const narrow = await GpuContext.create({ maxBindingBytes: 98_304 });
    try {
      const options = { steps: 2, mu: 2, beta: 0.02, rewards: 'accuracy,self-certainty', promptsPerStep: 3, groupSize: 5 };
      const whole = await runGrpo(ctx, small('whole', options));
      const split = await runGrpo(narrow, small('split', options));
      for (const [i, record] of whole.records.entries()) {
        const other = split.records[i]!;
        for (const key of ['reward/accuracy/mean', 'completion_length_mean', 'frac_reward_zero_std', 'eval_accuracy']) expect(other[key]).toEqual(record[key]);
        for (const key of ['loss', 'kl', 'grad_norm', 'self_certainty_mean', 'entropy']) {
          if (typeof record[key] === 'number') expectClose(`step ${i} ${key}`, [other[key] as number], [record[key] as number], TOLERANCES.grpoMicroBatches);
        }
      }
      const final = async (dir: string) => (await loadCheckpoint((await latestCheckpoint(join(tmp, dir)))!)).tensors;
      const [a, b] = [await final('whole'), await final('split')];
      for (const name of Object.keys(a)) expectClose(name, b[name]!.data as Float32Array, a[name]!.data as Float32Array, TOLERANCES.grpoMicroBatches);
      // A sequence whose own logits exceed a binding is refused by name.
      expect(() => sequencesPerPass(98_304, 100, 384, 15, 'logits')).toThrow(/maxPromptLength \+ maxCompletionLength: expected a sequence length whose logits \(length × 384 float32\) fits one storage binding \(98304 bytes\), got 100 tokens/);
    } finally {
      narrow.close();
    }
  });

  test('the self-certainty of a completion equals the token-statistics kernel on the logits that generated it', async () => {
    const model = await PolicyModel.load(ctx, fixture);
    const tokenizer = PolicyTokenizer.load(fixture);
    try {
      const prompts = [tokenizer.encode('12+34='), tokenizer.encode('7*8=')];
      const completions = await rollout(model, tokenizer, prompts, { groupSize: 2, maxNewTokens: 6, sampling: { temperature: 0.9 }, seed: 3, step: 1 });
      const layout = scoringLayout(completions.map((c) => prompts[c.prompt]!), completions.map((c) => c.tokens), 16);
      const scored = await scoreCompletions(model, layout, 6, 0.9);
      for (const [i, c] of completions.entries()) {
        const ids = [...prompts[c.prompt]!, ...c.tokens];
        const logits = await model.logits(ids, 1, ids.length);
        const V = model.config.vocabSize;
        const P = prompts[c.prompt]!.length;
        const rows = logits.slice((P - 1) * V, (P - 1 + c.tokens.length) * V);
        const want = await tokenStats({ logits: rows, shape: [c.tokens.length, V], ids: Int32Array.from(c.tokens), temperature: 0.9 }, { backend: 'js' });
        const mean = want.selfCertainty.reduce((s, x) => s + x, 0) / c.tokens.length;
        expectClose(`mean self-certainty of completion ${i}`, [scored.meanSelfCertainty[i]!], [mean], TOLERANCES.fixture);
        expectClose(`log-probs of completion ${i}`, scored.logprob.subarray(i * 6, i * 6 + c.tokens.length), want.logprob!, TOLERANCES.fixture);
      }
    } finally {
      model.destroy();
    }
  });

  test('a user reward that throws or returns NaN names the reward and the prompt; the last checkpoint stays', async () => {
    const throwing = join(tmp, 'throwing.mjs');
    writeFileSync(throwing, "export default ({ prompt }) => { if (globalThis.__calls = (globalThis.__calls ?? 0) + 1, globalThis.__calls > 9) throw new Error('boom'); return 1; };\n");
    const out = join(tmp, 'user');
    await expect(runGrpo(ctx, small('user', { rewards: `accuracy,${throwing}`, steps: 3, saveEvery: 1 }))).rejects.toThrow(/reward .*throwing\.mjs.*prompt (index )?\d+.*boom/);
    const saved = await latestCheckpoint(out);
    expect(saved).toMatch(/checkpoint-1$/);
    await loadCheckpoint(saved!);
    const nan = join(tmp, 'nan.mjs');
    writeFileSync(nan, 'export const reward = () => NaN;\n');
    await expect(runGrpo(ctx, small('nan', { rewards: nan }))).rejects.toThrow(/nan\.mjs.*prompt \d+.*NaN/);
  });

  test('--chat-template renders every prompt as a user message (after the system prompt) with the generation prompt', async () => {
    const templated = join(tmp, 'templated-model');
    cpSync(fixture, templated, { recursive: true });
    const config = JSON.parse(readFileSync(join(templated, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    config.chat_template = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    writeFileSync(join(templated, 'tokenizer_config.json'), JSON.stringify(config));
    const options = { model: templated, chatTemplate: true, systemPrompt: 'Be brief.' };
    // A prompt limit the rendered prompt exceeds shows what the model would have seen.
    await expect(runGrpo(ctx, small('chat-long', { ...options, maxPromptLength: 8 }))).rejects.toThrow(/maxPromptLength: expected at least the \d+ tokens of prompt 1 of task arithmetic \("<\|im_start\|>system\\nBe brief\.<\|im_end\|>\\n<\|im_start\|>user\\n\d.*\), got 8/);
    const result = await runGrpo(ctx, small('chat', { ...options, maxPromptLength: 128, steps: 1 }));
    expect(result.before.examples).toBe(6);
    await expect(runGrpo(ctx, small('chat-none', { chatTemplate: true }))).rejects.toThrow(/chatTemplate: expected a model whose tokenizer_config\.json has a chat_template/);
    await expect(runGrpo(ctx, small('chat-none', { systemPrompt: 'Be brief.' }))).rejects.toThrow(/systemPrompt: expected a string, given together with chatTemplate/);
  });

  test('bad configuration is refused by name before any work', async () => {
    await expect(runGrpo(ctx, small('bad', { groupSize: 1 }))).rejects.toThrow(/groupSize: expected an integer ≥ 2, got 1/);
    await expect(runGrpo(ctx, small('bad', { task: 'chess' }))).rejects.toThrow(/task: expected one of arithmetic, addition, addition-modes, countdown, permutations, math/);
    await expect(runGrpo(ctx, small('bad', { rewards: 'self-certainty,vibes' }))).rejects.toThrow(/rewards: expected a known reward/);
    await expect(runGrpo(ctx, small('bad', { rewards: 'accuracy:lots' }))).rejects.toThrow(/weight of 'accuracy'/);
    await expect(runGrpo(ctx, small('bad', { maxPromptLength: 3 }))).rejects.toThrow(/maxPromptLength: expected at least the \d+ tokens of prompt \d+ of task arithmetic .*, got 3/);
    const data = join(tmp, 'data.jsonl');
    writeFileSync(data, '{"prompt": "1+1=", "answer": "2"}\n{"prompt": "2+2="}\n');
    await expect(runGrpo(ctx, small('bad', { data, task: 'math' }))).rejects.toThrow(/line 2/);
    expect(() => resolveGrpoConfig({ ...small('bad'), sampling: { temperature: 0, topK: 0, topP: 1, minP: 0 } })).toThrow(/sampling.temperature: expected a number > 0/);
  });
});
