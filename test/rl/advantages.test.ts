/** Group-relative advantages against hand-computed values: every scaling, zero-std groups, groups of one, aggregation of several rewards. */
import { InvalidArgumentError } from '../../src/errors.js';
import { aggregateRewards, computeAdvantages, groupRewardStats } from '../../src/rl/advantages.js';
import { mulberry32 } from '../../src/util/random.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

const EPS = 1e-4;
/** Two groups of four: one mixed (0.5 success), one all wrong. */
const REWARDS = [1, 0, 0, 1, 0, 0, 0, 0];

describe('computeAdvantages', () => {
  test("'group' (default): (r − group mean) / (unbiased group std + 1e-4); a constant group gets 0", () => {
    const std = Math.sqrt((4 * 0.25) / 3); // unbiased: Σ(r − 0.5)² / (G − 1)
    const a = 0.5 / (std + EPS);
    expectClose('group', computeAdvantages(REWARDS, 4), [a, -a, -a, a, 0, 0, 0, 0], TOLERANCES.rlHost);
    expectClose('Float32Array input', computeAdvantages(Float32Array.from(REWARDS), 4), [a, -a, -a, a, 0, 0, 0, 0], TOLERANCES.rlHost);
  });

  test("'batch': the group mean over the unbiased std of the whole batch", () => {
    const mean = 0.25;
    const std = Math.sqrt(REWARDS.reduce((s, r) => s + (r - mean) ** 2, 0) / 7);
    const want = REWARDS.map((r, i) => (r - (i < 4 ? 0.5 : 0)) / (std + EPS));
    expectClose('batch', computeAdvantages(REWARDS, 4, { scaleRewards: 'batch' }), want, TOLERANCES.rlHost);
  });

  test("'none': centred only (Dr. GRPO), and eps is configurable", () => {
    expectClose('none', computeAdvantages([3, 1, 2, 10, 10, 13], 3, { scaleRewards: 'none' }), [1, -1, 0, -1, -1, 2], TOLERANCES.rlHost);
    const std = 1; // unbiased std of [3, 1, 2]
    expectClose('eps 0.5', computeAdvantages([3, 1, 2], 3, { eps: 0.5 }), [1 / (std + 0.5), -1 / (std + 0.5), 0], TOLERANCES.rlHost);
  });

  test('a group of one completion has std 0 and advantage 0, as in TRL', () => {
    expect([...computeAdvantages([5, -2, 7], 1)]).toEqual([0, 0, 0]);
    expect([...computeAdvantages([5], 1, { scaleRewards: 'batch' })]).toEqual([0]);
    expect(groupRewardStats([5, -2, 7], 1).fracRewardZeroStd).toBe(1);
  });

  test('random rewards: advantages have zero mean and (for group scaling) unbiased std ≈ 1 per group', () => {
    const rand = mulberry32(7);
    const G = 7;
    const rewards = Float64Array.from({ length: 5 * G }, () => rand() * 10 - 3);
    const adv = computeAdvantages(rewards, G, { eps: 0 });
    for (let g = 0; g < 5; g++) {
      const slice = [...adv.slice(g * G, g * G + G)];
      const mean = slice.reduce((a, b) => a + b, 0) / G;
      const std = Math.sqrt(slice.reduce((s, x) => s + (x - mean) ** 2, 0) / (G - 1));
      expect(Math.abs(mean)).toBeLessThan(1e-6);
      expect(Math.abs(std - 1)).toBeLessThan(1e-6);
    }
  });

  test('groupRewardStats: per-group mean, unbiased std, fraction of zero-std groups', () => {
    const stats = groupRewardStats(REWARDS, 4);
    expect([...stats.mean]).toEqual([0.5, 0]);
    expect(stats.std[0]).toBeCloseTo(Math.sqrt(1 / 3), 12);
    expect(stats.std[1]).toBe(0);
    expect(stats.fracRewardZeroStd).toBe(0.5);
  });

  test('bad arguments name the argument', () => {
    expect(() => computeAdvantages([1, 2, 3], 2)).toThrow(/rewards: expected a non-empty length that is a multiple of groupSize 2/);
    expect(() => computeAdvantages([], 2)).toThrow(InvalidArgumentError);
    expect(() => computeAdvantages([1, 2], 0)).toThrow(/groupSize: expected a positive integer, got 0/);
    expect(() => computeAdvantages([1, NaN], 2)).toThrow(/rewards\[1\]: expected a finite number, got NaN/);
    expect(() => computeAdvantages([1, 2], 2, { scaleRewards: 'std' as never })).toThrow(/scaleRewards: expected one of group, batch, none/);
    expect(() => computeAdvantages([1, 2], 2, { eps: -1 })).toThrow(/eps: expected a finite number ≥ 0/);
    expect(() => computeAdvantages('1,2' as never, 2)).toThrow(/rewards: expected a Float32Array, Float64Array or number\[\]/);
  });
});

describe('aggregateRewards', () => {
  const accuracy = [1, 0, 1, 1, 1, 1];
  const certainty = [0.2, 0.4, 0.9, 0.1, 0.3, 0.5];

  test("'sum-then-normalize' is computeAdvantages of Σ w·r", () => {
    const out = aggregateRewards({ accuracy, certainty }, { accuracy: 0.5, certainty: 2 }, 3, 'sum-then-normalize');
    const summed = accuracy.map((a, i) => 0.5 * a + 2 * certainty[i]!);
    expectClose('rewards', out.rewards, summed, TOLERANCES.rlHost);
    expectClose('advantages', out.advantages, computeAdvantages(summed, 3), TOLERANCES.rlHost);
    expect(out.fracRewardZeroStd).toBe(0);
    expect(out.fracZeroStdByReward).toEqual({ accuracy: 0.5, certainty: 0 });
  });

  test("'normalize-then-sum': Σ w·(group-normalised r); a reward constant over a group adds nothing there", () => {
    const out = aggregateRewards({ accuracy, certainty }, { accuracy: 0.5, certainty: 2 }, 3, 'normalize-then-sum');
    const acc = computeAdvantages(accuracy, 3);
    const cert = computeAdvantages(certainty, 3);
    const want = acc.map((a, i) => 0.5 * a + 2 * cert[i]!);
    expectClose('advantages', out.advantages, want, TOLERANCES.rlHost);
    // Group 2's accuracy is all 1: its advantages come from self-certainty alone.
    expectClose('group 2', out.advantages.slice(3), cert.slice(3).map((c) => 2 * c), TOLERANCES.rlHost);
    expectClose('rewards are still Σ w·r', out.rewards, accuracy.map((a, i) => 0.5 * a + 2 * certainty[i]!), TOLERANCES.rlHost);
  });

  test("'normalize-then-sum': a group is silent only when every weighted reward is constant over it; weight 0 rewards are ignored", () => {
    const constant = [1, 1, 1, 0, 1, 0];
    const flat = [2, 2, 2, 5, 5, 5];
    const out = aggregateRewards({ constant, flat }, { constant: 1, flat: 1 }, 3, 'normalize-then-sum');
    expect(out.fracRewardZeroStd).toBe(0.5);
    expect([...out.advantages.slice(0, 3)]).toEqual([0, 0, 0]);
    const monitored = aggregateRewards({ constant, flat }, { constant: 0, flat: 1 }, 3, 'normalize-then-sum');
    expect(monitored.fracRewardZeroStd).toBe(1);
    expect([...monitored.advantages]).toEqual([0, 0, 0, 0, 0, 0]);
  });

  test("the modes differ when reward scales differ: 'sum-then-normalize' lets the larger reward dominate", () => {
    const small = [0, 1, 0, 1];
    const large = [100, 0, 0, 100];
    const sum = aggregateRewards({ small, large }, {}, 4, 'sum-then-normalize');
    const norm = aggregateRewards({ small, large }, {}, 4, 'normalize-then-sum', { eps: 0 });
    // Completion 1 has small = 1, large = 0: negative when summed, 0 after decoupled normalisation.
    expect(sum.advantages[1]).toBeLessThan(0);
    expect(Math.abs(norm.advantages[1]!)).toBeLessThan(1e-6);
  });

  test('weights default to 1; mismatched inputs are refused', () => {
    const out = aggregateRewards({ a: [1, 0], b: [0, 0] }, {}, 2, 'sum-then-normalize');
    expectClose('default weight', out.rewards, [1, 0], TOLERANCES.rlHost);
    expect(() => aggregateRewards({ a: [1, 0] }, { b: 1 }, 2, 'sum-then-normalize')).toThrow(/weights\.b: expected a weight for one of the rewards a/);
    expect(() => aggregateRewards({ a: [1, 0], b: [1, 0, 1, 0] }, {}, 2, 'sum-then-normalize')).toThrow(/perFunction\.b: expected 2 values/);
    expect(() => aggregateRewards({}, {}, 2, 'sum-then-normalize')).toThrow(/perFunction: expected at least one reward/);
    expect(() => aggregateRewards({ a: [1, 0] }, { a: NaN }, 2, 'sum-then-normalize')).toThrow(/weights\.a: expected a finite number/);
    expect(() => aggregateRewards({ a: [1, 0] }, {}, 2, 'mean' as never)).toThrow(/mode: expected one of sum-then-normalize, normalize-then-sum/);
  });
});
