/**
 * The scoring path (src/score/engine.ts) against the library's two steps (PolicyModel.logits, then
 * the float64 token statistics of those logits) and against transformers' float64 fixture.
 * Contexts with small storage bindings force the packing paths:
 *   - the default binding: one pass;
 *   - 128 KiB: passes of at most 186 rows (the widest activation, 176 floats, is 704 bytes a row),
 *     whose scored rows' logits (up to 185 × 384 float32 = 284 KiB) would not fit one binding:
 *     the fused lm_head + statistics (src/ops/lm-head-stats.ts) stores no logits, so a pass needs
 *     no logit windows.
 */
import { jest } from '@jest/globals';
import { join } from 'node:path';
import type { GpuContext } from '../../src/gpu/context.js';
import { readNpy } from '../../src/io/npy.js';
import { PolicyModel } from '../../src/model/policy.js';
import { PolicyTokenizer } from '../../src/model/tokenizer.js';
import { referenceForward } from '../../src/ops/token-stats/reference.js';
import { Scorer, planPasses, seqLenBucket, type ScoreResult } from '../../src/score/engine.js';
import type { ScoreItem } from '../../src/score/items.js';
import { scoreLines } from '../../src/score/lines.js';
import { mulberry32 } from '../../src/util/random.js';
import { FIXTURES, describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

const fixture = join(FIXTURES, 'tiny-qwen2');
const VOCAB = 384;

function randomItems(count: number, seed: number): ScoreItem[] {
  const rand = mulberry32(seed);
  const ids = (n: number) => Array.from({ length: n }, () => Math.floor(rand() * VOCAB));
  return Array.from({ length: count }, (_, i) => ({ id: `item-${i}`, promptIds: ids(1 + Math.floor(rand() * 30)), completionIds: ids(1 + Math.floor(rand() * 40)) }));
}

/** The library's two steps, per item: logits of prompt ++ completion, then float64 statistics of the rows that predict the completion. */
async function twoSteps(model: PolicyModel, item: ScoreItem, temperature: number): Promise<{ logprob: number[]; selfCertainty: number[]; entropy: number[] }> {
  const ids = [...item.promptIds, ...item.completionIds];
  const logits = await model.logits(ids, 1, ids.length);
  const first = item.promptIds.length - 1;
  const rows = item.completionIds.length;
  const ref = referenceForward('f32', logits.subarray(first * VOCAB, (first + rows) * VOCAB), rows, VOCAB, item.completionIds, temperature);
  return { logprob: Array.from(ref.logprob!), selfCertainty: Array.from(ref.selfCertainty), entropy: Array.from(ref.entropy) };
}

function expectResult(got: ScoreResult, want: { logprob: number[]; selfCertainty: number[]; entropy: number[] }): void {
  const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
  const sum = (a: number[]) => a.reduce((s, v) => s + v, 0);
  expect(got.tokens).toBe(want.logprob.length);
  expectClose('per-token logprob', got.perToken!.logprob, want.logprob, TOLERANCES.chunkedLogits);
  expectClose('per-token self-certainty', got.perToken!.selfCertainty, want.selfCertainty, TOLERANCES.chunkedLogits);
  expectClose('per-token entropy', got.perToken!.entropy, want.entropy, TOLERANCES.chunkedLogits);
  expectClose('means and sum', [got.selfCertainty, got.entropy, got.logprobMean, got.logprobSum],
    [mean(want.selfCertainty), mean(want.entropy), mean(want.logprob), sum(want.logprob)], TOLERANCES.chunkedLogits);
}

describe('packing plan', () => {
  test('buckets grow by at most 1.5× and stop at the model limit', () => {
    expect([1, 16, 17, 24, 25, 33, 49, 65, 100, 200].map((n) => seqLenBucket(n, 4096))).toEqual([16, 16, 24, 24, 32, 48, 64, 96, 128, 256]);
    expect(seqLenBucket(30, 32)).toBe(32);
  });
  test('every item lands in exactly one pass, within the row budget, longest first', () => {
    const lengths = Array.from({ length: 300 }, (_, i) => 2 + ((i * 37) % 90));
    const passes = planPasses(lengths, { maxRows: 512, maxSeqLen: 128 });
    expect(passes.flatMap((p) => p.items).sort((a, b) => a - b)).toEqual(lengths.map((_, i) => i));
    for (const p of passes) {
      expect(p.batch * p.seqLen).toBeLessThanOrEqual(512);
      expect(p.items.length).toBeLessThanOrEqual(p.batch);
      for (const i of p.items) expect(lengths[i]).toBeLessThanOrEqual(p.seqLen);
    }
    expect(lengths[passes[0]!.items[0]!]).toBe(Math.max(...lengths));
  });
  test('a partial pass is padded to a power of two', () => {
    const passes = planPasses([10, 10, 10], { maxRows: 1024, maxSeqLen: 64 });
    expect(passes).toEqual([{ items: [0, 1, 2], batch: 4, seqLen: 16 }]);
  });
});

describeGpu('Scorer', () => {
  let ctx: GpuContext;
  let small: GpuContext;
  let model: PolicyModel;
  let scorer: Scorer;
  let smallScorer: Scorer;
  beforeAll(async () => {
    ctx = await openGpu();
    small = await openGpu({ maxBindingBytes: 128 * 1024 });
    model = await PolicyModel.load(ctx, fixture);
    scorer = await Scorer.load(ctx, fixture);
    smallScorer = await Scorer.load(small, fixture);
  });
  afterAll(async () => {
    await scorer.destroy();
    await smallScorer.destroy();
    model.destroy();
    ctx.close();
    small.close();
  });

  test.each([
    ['the default binding: one pass', () => scorer, 1],
    ['128 KiB bindings: passes of ≤ 186 rows, more scored rows than one binding of logits holds', () => smallScorer, 1],
    ['temperature 0.7 applies to every statistic', () => scorer, 0.7],
  ])('equals logits + float64 statistics (%s)', async (_, which, temperature) => {
    const items = randomItems(12, 7);
    const got = await which().score(items, { temperature, perToken: true });
    expect(got.map((r) => r.id)).toEqual(items.map((it) => it.id));
    for (const [i, item] of items.entries()) expectResult(got[i]!, await twoSteps(model, item, temperature));
  });

  test('a pass stores no logits: every buffer it makes is smaller than one logits row per scored row', async () => {
    const items = randomItems(12, 7);
    const scoredRows = items.reduce((n, it) => n + it.completionIds.length, 0);
    const original = small.createBuffer.bind(small);
    const made: { label: string; size: number }[] = [];
    const spy = jest.spyOn(small, 'createBuffer').mockImplementation((label: string, size: number, usage: GPUBufferUsageFlags) => {
      made.push({ label, size });
      return original(label, size, usage);
    });
    try {
      await smallScorer.score(items);
    } finally {
      spy.mockRestore();
    }
    expect(made.some((b) => b.label.endsWith(':logits'))).toBe(false);
    // The largest is an activation of a pass (≤ 128 KiB): far below the scored rows' logits.
    expect(Math.max(...made.map((b) => b.size))).toBeLessThanOrEqual(128 * 1024);
    expect(scoredRows * VOCAB * 4).toBeGreaterThan(2 * 128 * 1024);
  });

  test('matches the fixture: transformers float64 log-probs, self-certainty and entropy', async () => {
    const ids = await readNpy(join(fixture, 'ref_input_ids.npy'));
    const [B, T] = ids.shape as [number, number];
    const want = {
      logprob: (await readNpy(join(fixture, 'ref_next_logprob.npy'))).data as Float64Array,
      selfCertainty: (await readNpy(join(fixture, 'ref_self_certainty.npy'))).data as Float64Array,
      entropy: (await readNpy(join(fixture, 'ref_entropy.npy'))).data as Float64Array,
    };
    // Each sequence as a one-token prompt and a T − 1 token completion: every row is scored.
    const items = Array.from({ length: B }, (_, b) => {
      const seq = Array.from({ length: T }, (__, t) => Number(ids.data[b * T + t]));
      return { id: b, promptIds: seq.slice(0, 1), completionIds: seq.slice(1) };
    });
    for (const which of [scorer, smallScorer]) {
      const got = await which.score(items, { perToken: true });
      for (const key of ['logprob', 'selfCertainty', 'entropy'] as const) {
        expectClose(key, got.flatMap((r) => r.perToken![key]), Array.from(want[key]), TOLERANCES.fixture);
      }
    }
  });

  test('text, chat and pre-tokenised lines; bad lines reported by number, the rest scored', async () => {
    const tokenizer = PolicyTokenizer.load(fixture);
    const promptIds = tokenizer.encode('The quick brown fox');
    const completionIds = tokenizer.encode(' jumps over the lazy dog');
    const lines = [
      JSON.stringify({ prompt: 'The quick brown fox', completion: ' jumps over the lazy dog' }),
      JSON.stringify({ id: 'ids', prompt_ids: promptIds, completion_ids: completionIds }),
      '',
      '{"prompt": "no completion"}',
      'not json',
      JSON.stringify({ prompt_ids: [1, 2], completion_ids: [3, VOCAB] }),
      JSON.stringify({ prompt: '', completion: 'x' }),
    ].map((text, i) => ({ line: i + 1, text }));
    const out = await scoreLines(scorer, lines);
    expect(out.map((o) => o.line)).toEqual([1, 2, 4, 5, 6, 7]);
    const [text, ids] = out as { record: Record<string, unknown> }[];
    expect(text!.record.id).toBe(1);
    expect(ids!.record.id).toBe('ids');
    expect(text!.record.self_certainty).toBe(ids!.record.self_certainty);
    expect(text!.record.tokens).toBe(completionIds.length);
    const errors = out.slice(2).map((o) => ('error' in o ? o.error : ''));
    expect(errors[0]).toMatch(/^line 4: "completion": expected a string, got undefined/);
    expect(errors[1]).toMatch(/^line 5: expected a JSON object/);
    expect(errors[2]).toMatch(/^line 6: "completion_ids": expected token ids in \[0, 384\).*got 384 at index 1/);
    expect(errors[3]).toMatch(/^line 7: "prompt": expected a prompt of at least one token/);
  });
});
