/**
 * Supervised fine-tuning end to end on the tiny-qwen2 fixture: every parameter moves, a batch of
 * four sequences is overfitted, an interrupted run resumes bit-identically, and bad input stops
 * the run with a named error and the last checkpoint intact.
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GpuContext } from '../../src/gpu/context.js';
import { PolicyModel } from '../../src/model/policy.js';
import { TrainingGraph } from '../../src/model/training.js';
import { latestCheckpoint, loadCheckpoint } from '../../src/train/checkpoint.js';
import { runSft, type SftOptions } from '../../src/train/sft.js';
import { FIXTURES, describeGpu, openGpu } from '../helpers.js';
import { LLAMA_CONFIG, writeRandomCheckpoint } from '../model/checkpoints.js';

const fixture = join(FIXTURES, 'tiny-qwen2');
const EXAMPLES = [
  { prompt: 'What is 12 times 7?', completion: ' 84' },
  { prompt: 'Capital of France:', completion: ' Paris' },
  { prompt: '37+44=', completion: '81' },
  { prompt: 'Self-certainty is', completion: ' a reward' },
];

function writeJsonl(path: string, lines: unknown[]): string {
  writeFileSync(path, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
  return path;
}

/** Metrics that must repeat exactly (timing excluded). */
function deterministic(path: string): unknown[] {
  return readFileSync(path, 'utf8').trim().split('\n').map((l) => {
    const { step, loss, lr, grad_norm, clip_scale, tokens } = JSON.parse(l);
    return { step, loss, lr, grad_norm, clip_scale, tokens };
  });
}

describeGpu('intuitor sft', () => {
  let ctx: GpuContext;
  let tmp: string;
  let data: string;
  beforeAll(async () => {
    ctx = await openGpu();
    tmp = mkdtempSync(join(tmpdir(), 'intuitor-sft-'));
    data = writeJsonl(join(tmp, 'data.jsonl'), EXAMPLES);
  });
  afterAll(() => {
    ctx.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  const base = (out: string, extra: Partial<SftOptions> = {}): SftOptions => ({
    model: fixture, data, out, steps: 1, batchSize: 4, optimizer: { lr: 1e-3 }, ...extra,
  });

  test('one update changes every parameter; the checkpoint loads as a Hugging Face folder with tied weights', async () => {
    const out = join(tmp, 'one');
    const { checkpoint } = await runSft(ctx, base(out));
    const before = await PolicyModel.load(ctx, fixture, { dtype: 'f32' });
    const after = await PolicyModel.load(ctx, checkpoint, { dtype: 'f32' });
    const g0 = TrainingGraph.create(before);
    const g1 = TrainingGraph.create(after);
    try {
      const p0 = await g0.readParameters();
      const p1 = await g1.readParameters();
      expect([...p1.keys()]).toEqual([...p0.keys()]);
      for (const [name, values] of p0) {
        const moved = values.some((v, i) => v !== p1.get(name)![i]);
        if (!moved) throw new Error(`${name} did not change`);
      }
      expect(after.weights.tied).toBe(true);
      const saved = await loadCheckpoint(checkpoint);
      expect(Object.keys(saved.tensors)).not.toContain('lm_head.weight');
      expect(existsSync(join(checkpoint, 'tokenizer.json'))).toBe(true);
    } finally {
      for (const x of [g0, g1, before, after]) x.destroy();
    }
  });

  test('overfits a batch of 4 sequences below 0.05 loss', async () => {
    const { last } = await runSft(ctx, base(join(tmp, 'overfit'), { steps: 80, optimizer: { lr: 1e-2 } }));
    expect(last!.loss).toBeLessThan(0.05);
  });

  test('an interrupted run resumes bit-identically', async () => {
    const options = { steps: 6, batchSize: 3, saveEvery: 3, optimizer: { lr: 3e-3, schedule: 'cosine' as const, warmupSteps: 2 }, seed: 5 };
    const whole = join(tmp, 'whole');
    await runSft(ctx, base(whole, options));
    const broken = join(tmp, 'broken');
    await expect(runSft(ctx, base(broken, { ...options, onStep: (r) => { if (r.step === 5) throw new Error('interrupted'); } }))).rejects.toThrow('interrupted');
    expect(await latestCheckpoint(broken)).toMatch(/checkpoint-3$/);
    await runSft(ctx, base(broken, { ...options, resume: true }));
    expect(deterministic(join(broken, 'metrics.jsonl'))).toEqual(deterministic(join(whole, 'metrics.jsonl')));
    const a = await loadCheckpoint((await latestCheckpoint(whole))!);
    const b = await loadCheckpoint((await latestCheckpoint(broken))!);
    for (const name of Object.keys(a.tensors)) expect(Buffer.from((b.tensors[name]!.data as Float32Array).buffer).equals(Buffer.from((a.tensors[name]!.data as Float32Array).buffer))).toBe(true);
  });

  test('bad dataset lines are refused with their line number', async () => {
    const cases: [unknown[], RegExp][] = [
      [[EXAMPLES[0], 'not json'], /line 2: a JSON object, got text that is not JSON/],
      [[EXAMPLES[0], { prompt: 'x' }], /line 2: a "completion" field/],
      [[{ prompt: 'x', completion: '' }], /line 1: a non-empty "completion"/],
      [[{ prompt: 'x', completion: 7 }], /line 1: "completion" as a string, got 7/],
      [[{ prompt: 'x', completion: 'y'.repeat(400) }], /line 1: at most 256 tokens/],
    ];
    for (const [lines, message] of cases) {
      const path = writeJsonl(join(tmp, 'bad.jsonl'), lines);
      await expect(runSft(ctx, base(join(tmp, 'bad-out'), { data: path }))).rejects.toThrow(message);
    }
  });

  test('a non-finite loss names the step; the last checkpoint stays loadable', async () => {
    const out = join(tmp, 'diverge');
    await expect(runSft(ctx, base(out, { steps: 6, saveEvery: 1, optimizer: { lr: 1e30, maxGradNorm: 0 } }))).rejects.toThrow(/step \d: (the loss|the gradient of [\w.]+) is not finite/);
    const latest = await latestCheckpoint(out);
    expect(latest).not.toBeNull();
    const saved = await loadCheckpoint(latest!);
    expect(saved.step).toBeGreaterThanOrEqual(1);
  });

  test('--resume from a checkpoint of another architecture is refused by name', async () => {
    const out = join(tmp, 'arch');
    await runSft(ctx, base(out));
    const other = join(tmp, 'llama');
    await writeRandomCheckpoint(other, LLAMA_CONFIG);
    cpSync(join(fixture, 'tokenizer.json'), join(other, 'tokenizer.json'));
    cpSync(join(fixture, 'tokenizer_config.json'), join(other, 'tokenizer_config.json'));
    await expect(runSft(ctx, base(out, { model: other, resume: true }))).rejects.toThrow(/a checkpoint from another architecture/);
  });
});
