/** ScoringBatcher (src/serve/batching.ts) with a stand-in score function: merging, budget, barriers, bounds, failures. */
import type { ScoreOptions, ScoreResult } from '../../src/score/engine.js';
import type { ScoreItem } from '../../src/score/items.js';
import { QueueFullError, ScoringBatcher, type BatchingOptions } from '../../src/serve/batching.js';
import { createScoringMetrics } from '../../src/serve/metrics.js';

/** An item of `tokens` tokens (half prompt, half completion) whose id names it. */
const item = (id: string, tokens = 4): ScoreItem => ({ id, promptIds: Array(tokens / 2).fill(1), completionIds: Array(tokens / 2).fill(2) });

/** Records every call; results echo the items' ids (with per-token arrays when asked). */
function recordingScorer() {
  const calls: { ids: (string | number)[]; options: ScoreOptions }[] = [];
  const gates: (() => void)[] = [];
  let gated = false;
  const score = async (items: readonly ScoreItem[], options: ScoreOptions): Promise<ScoreResult[]> => {
    calls.push({ ids: items.map((it) => it.id), options });
    if (gated) await new Promise<void>((open) => gates.push(open));
    return items.map((it) => ({
      id: it.id, tokens: it.completionIds.length, selfCertainty: 1, logprobSum: -1, logprobMean: -1, entropy: 1,
      ...(options.perToken && { perToken: { logprob: [-1], selfCertainty: [1], entropy: [1] } }),
    }));
  };
  return { score, calls, gate: () => { gated = true; }, open: () => { gated = false; gates.splice(0).forEach((g) => g()); } };
}

const OPTIONS: BatchingOptions = { maxBatchTokens: 100, maxWaitMs: 5, maxQueueItems: 10, temperature: 0.5 };

describe('ScoringBatcher', () => {
  test('requests that arrive together go in one call, each getting its own results, in order', async () => {
    const s = recordingScorer();
    const batcher = new ScoringBatcher(s.score, OPTIONS);
    const [a, b, c] = await Promise.all([batcher.submit([item('a1'), item('a2')], false), batcher.submit([item('b1')], true), batcher.submit([item('c1')], false)]);
    expect(s.calls).toEqual([{ ids: ['a1', 'a2', 'b1', 'c1'], options: { temperature: 0.5, perToken: true } }]);
    expect(a.map((r) => r.id)).toEqual(['a1', 'a2']);
    expect(b.map((r) => r.id)).toEqual(['b1']);
    expect(c.map((r) => r.id)).toEqual(['c1']);
    // Only the request that asked for per-token arrays gets them.
    expect(b[0]!.perToken).toBeDefined();
    expect([...a, ...c].every((r) => r.perToken === undefined)).toBe(true);
  });

  test('a batch stops at the token budget; a request over the budget goes alone', async () => {
    const s = recordingScorer();
    const batcher = new ScoringBatcher(s.score, { ...OPTIONS, maxBatchTokens: 10 });
    await Promise.all([batcher.submit([item('a', 4)], false), batcher.submit([item('b', 4)], false), batcher.submit([item('c', 4)], false), batcher.submit([item('big', 40)], false)]);
    expect(s.calls.map((c) => c.ids)).toEqual([['a', 'b'], ['c'], ['big']]);
  });

  test('arrivals during a running batch wait for it, then go together', async () => {
    const s = recordingScorer();
    const batcher = new ScoringBatcher(s.score, OPTIONS);
    s.gate();
    const first = batcher.submit([item('a')], false);
    while (s.calls.length === 0) await new Promise((r) => setTimeout(r, 1));
    const later = [batcher.submit([item('b')], false), batcher.submit([item('c')], false)];
    expect(batcher.depth).toBe(2);
    s.open();
    await Promise.all([first, ...later]);
    expect(s.calls.map((c) => c.ids)).toEqual([['a'], ['b', 'c']]);
  });

  test('a barrier runs between the requests before it and those after it', async () => {
    const s = recordingScorer();
    const batcher = new ScoringBatcher(s.score, OPTIONS);
    const order: string[] = [];
    const before = batcher.submit([item('before')], false).then(() => order.push('before'));
    const barrier = batcher.between(async () => { order.push(`barrier after ${s.calls.length} call(s)`); });
    const after = batcher.submit([item('after')], false).then(() => order.push('after'));
    await Promise.all([before, barrier, after]);
    expect(order).toEqual(['before', 'barrier after 1 call(s)', 'after']);
    expect(s.calls.map((c) => c.ids)).toEqual([['before'], ['after']]);
  });

  test('a full queue refuses at once with QueueFullError; a request larger than the queue is a bad argument', async () => {
    const s = recordingScorer();
    const metrics = createScoringMetrics();
    const batcher = new ScoringBatcher(s.score, { ...OPTIONS, maxQueueItems: 3 }, metrics);
    s.gate();
    const running = batcher.submit([item('a'), item('b')], false);
    while (s.calls.length === 0) await new Promise((r) => setTimeout(r, 1));
    const queued = batcher.submit([item('c'), item('d')], false);
    expect((await metrics.queueDepth.get()).values[0]!.value).toBe(2);
    expect(() => batcher.submit([item('e'), item('f')], false)).toThrow(QueueFullError);
    expect(() => batcher.submit([item('1'), item('2'), item('3'), item('4')], false)).toThrow(/^items: expected at most 3 items/);
    s.open();
    await Promise.all([running, queued]);
    expect(s.calls.map((c) => c.ids)).toEqual([['a', 'b'], ['c', 'd']]);
  });

  test('a failed call rejects its own requests only; the next batch runs', async () => {
    let fail = true;
    const s = recordingScorer();
    const metrics = createScoringMetrics();
    const batcher = new ScoringBatcher(async (items, options) => {
      if (fail) {
        fail = false;
        throw new Error('injected GPU failure');
      }
      return s.score(items, options);
    }, OPTIONS, metrics);
    await expect(batcher.submit([item('a')], false)).rejects.toThrow('injected GPU failure');
    await expect(batcher.submit([item('b')], false)).resolves.toHaveLength(1);
    expect((await metrics.batchFailures.get()).values[0]!.value).toBe(1);
    expect((await metrics.scoredItems.get()).values[0]!.value).toBe(1);
  });

  test('drain scores what is queued without waiting for company', async () => {
    const s = recordingScorer();
    const batcher = new ScoringBatcher(s.score, { ...OPTIONS, maxWaitMs: 60_000 });
    const pending = batcher.submit([item('a')], false);
    await batcher.drain();
    await expect(pending).resolves.toHaveLength(1);
  });
});
