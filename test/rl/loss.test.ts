/**
 * The GRPO loss against hand-computed values (every lossType, every KL estimator, both clip
 * edges), against a float64 transcription of TRL's tensor code on random odd shapes, and its
 * gradient against central finite differences of the float64 loss.
 */
import { IntuitorError } from '../../src/errors.js';
import { computeAdvantages } from '../../src/rl/advantages.js';
import { GRPO_DEFAULTS } from '../../src/rl/config.js';
import { KL_ESTIMATORS, LOSS_TYPES, grpoLoss, type GrpoLossArgs, type KlEstimator, type LossType } from '../../src/rl/loss.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

const f64 = (values: number[]) => Float64Array.from(values);
const f32 = (values: number[]) => Float32Array.from(values);

/**
 * TRL's _compute_loss written out over matrices (per_token_loss, then the lossType's reduction),
 * as an independent reference: a different loop structure from src/rl/loss.ts.
 */
function trlReference(args: Required<Pick<GrpoLossArgs, 'logprobs' | 'oldLogprobs' | 'advantages' | 'mask'>> & {
  refLogprobs: Float64Array | Float32Array;
  lossType: LossType;
  beta: number;
  klEstimator: KlEstimator;
  epsilonLow: number;
  epsilonHigh: number;
  maxCompletionLength: number;
}): number {
  const rows = args.advantages.length;
  const T = args.logprobs.length / rows;
  const perToken: number[][] = [];
  for (let r = 0; r < rows; r++) {
    perToken.push([]);
    for (let t = 0; t < T; t++) {
      const i = r * T + t;
      if (args.mask[i] === 0) {
        perToken[r]!.push(0);
        continue;
      }
      const coef1 = Math.exp(args.logprobs[i]! - args.oldLogprobs[i]!);
      const coef2 = Math.min(Math.max(coef1, 1 - args.epsilonLow), 1 + args.epsilonHigh);
      const A = args.advantages[r]!;
      let loss = -Math.min(coef1 * A, coef2 * A);
      const logR = args.refLogprobs[i]! - args.logprobs[i]!;
      const kl = args.klEstimator === 'k1' ? -logR : args.klEstimator === 'k2' ? logR ** 2 / 2 : Math.exp(logR) - 1 - logR;
      loss += args.beta * kl;
      perToken[r]!.push(loss);
    }
  }
  const maskRow = (r: number) => Array.from({ length: T }, (_, t) => args.mask[r * T + t]!);
  const sumAll = perToken.flat().reduce((a, b) => a + b, 0);
  const tokens = Array.from(args.mask).reduce((a, b) => a + b, 0);
  switch (args.lossType) {
    case 'grpo':
      return perToken.map((row, r) => row.reduce((a, b) => a + b, 0) / Math.max(1, maskRow(r).reduce((a, b) => a + b, 0))).reduce((a, b) => a + b, 0) / rows;
    case 'bnpo':
    case 'dapo':
      return sumAll / Math.max(1, tokens);
    case 'dr_grpo':
      return sumAll / (rows * args.maxCompletionLength);
  }
}

describe('grpoLoss: hand-computed values', () => {
  // Two rows of T = 3: row 0 has 2 tokens, row 1 has 1; ratio 1 everywhere (old = current).
  const base = {
    logprobs: f32([-1, -2, NaN, -0.5, NaN, NaN]),
    advantages: f32([1, -0.5]),
    mask: f32([1, 1, 0, 1, 0, 0]),
  };
  const CASES: Array<[LossType, number, number[], string]> = [
    ['grpo', (-1 + 0.5) / 2, [-0.25, -0.25, 0, 0.25, 0, 0], 'row means (−1 and 0.5), then their mean'],
    ['bnpo', (-2 + 0.5) / 3, [-1 / 3, -1 / 3, 0, 1 / 6, 0, 0], 'Σ over 3 tokens / 3'],
    ['dr_grpo', (-2 + 0.5) / 6, [-1 / 6, -1 / 6, 0, 1 / 12, 0, 0], 'Σ / (rows · maxCompletionLength = 2·3)'],
    ['dapo', (-2 + 0.5) / 3, [-1 / 3, -1 / 3, 0, 1 / 6, 0, 0], 'Σ / this call’s 3 tokens (numItemsInBatch defaulted)'],
  ];
  test.each(CASES)('%s: %s', (lossType, loss, grad) => {
    const out = grpoLoss({ ...base, lossType });
    expect(out.loss).toBeCloseTo(loss, 12);
    expectClose(`${lossType} grad`, out.gradLogprobs, grad, TOLERANCES.rlHost);
    expect(out.metrics).toMatchObject({ tokens: 3, ratioMean: 1, clipRatioLow: 0, clipRatioHigh: 0, clipRatioRegion: 0, klMean: null });
  });

  test('no lossType is grpo, the trainer’s and the CLI’s default too', () => {
    expect(grpoLoss(base).loss).toBeCloseTo((-1 + 0.5) / 2, 12);
    expect(GRPO_DEFAULTS.lossType).toBe('grpo');
  });

  test('dapo divides by the whole generation batch’s tokens; the others by gradientAccumulationSteps', () => {
    expect(grpoLoss({ ...base, lossType: 'dapo', numItemsInBatch: 12 }).loss).toBeCloseTo(-1.5 / 12, 12);
    expect(grpoLoss({ ...base, lossType: 'dapo', gradientAccumulationSteps: 4 }).loss).toBeCloseTo(-1.5 / 3, 12);
    expect(grpoLoss({ ...base, lossType: 'bnpo', gradientAccumulationSteps: 4 }).loss).toBeCloseTo(-1.5 / 12, 12);
    expect(grpoLoss({ ...base, lossType: 'grpo', gradientAccumulationSteps: 2 }).loss).toBeCloseTo(-0.25 / 2, 12);
    expect(grpoLoss({ ...base, lossType: 'dr_grpo', maxCompletionLength: 10 }).loss).toBeCloseTo(-1.5 / 20, 12);
  });

  test('lengths give the same mask; a row with no tokens counts as 0 in grpo’s mean over rows', () => {
    const viaLengths = grpoLoss({ logprobs: base.logprobs, advantages: base.advantages, lengths: [2, 1], lossType: 'grpo' });
    expect(viaLengths.loss).toBeCloseTo(-0.25, 12);
    const empty = grpoLoss({ logprobs: f32([-1, -1, 0, 0]), advantages: f32([1, 5]), lengths: [2, 0], lossType: 'grpo' });
    expect(empty.loss).toBeCloseTo(-1 / 2, 12);
    expect([...empty.gradLogprobs]).toEqual([-0.25, -0.25, 0, 0]);
  });

  // One token per row, T = 1, bnpo with 1 row: loss = per-token loss.
  const one = (logprob: number, old: number, A: number, extra: Partial<GrpoLossArgs> = {}) =>
    grpoLoss({ logprobs: f64([logprob]), oldLogprobs: f64([old]), advantages: f64([A]), mask: f64([1]), lossType: 'bnpo', ...extra });

  test('clipping at the upper edge: ratio 1.5, A > 0 → the clipped term 1.2·A, gradient 0', () => {
    const out = one(Math.log(1.5), 0, 2);
    expect(out.loss).toBeCloseTo(-2.4, 12);
    expect(out.gradLogprobs[0]).toBe(0);
    expect(out.metrics).toMatchObject({ clipRatioHigh: 1, clipRatioLow: 0, clipRatioRegion: 1 });
    expect(out.metrics.ratioMean).toBeCloseTo(1.5, 12);
  });

  test('clipping at the lower edge: ratio 0.5, A < 0 → the clipped term 0.8·A, gradient 0', () => {
    const out = one(Math.log(0.5), 0, -1);
    expect(out.loss).toBeCloseTo(0.8, 12);
    expect(out.gradLogprobs[0]).toBe(0);
    expect(out.metrics).toMatchObject({ clipRatioHigh: 0, clipRatioLow: 1, clipRatioRegion: 1 });
  });

  test('outside the range on the side the min ignores: unclipped, gradient −A·ratio', () => {
    const up = one(Math.log(1.5), 0, -1); // −min(−1.5, −1.2) = 1.5
    expect(up.loss).toBeCloseTo(1.5, 12);
    expect(up.gradLogprobs[0]).toBeCloseTo(1.5, 6);
    expect(up.metrics.clipRatioRegion).toBe(0);
    const down = one(Math.log(0.5), 0, 1); // −min(0.5, 0.8) = −0.5
    expect(down.loss).toBeCloseTo(-0.5, 12);
    expect(down.gradLogprobs[0]).toBeCloseTo(-0.5, 6);
  });

  test('DAPO’s asymmetric clip: epsilonHigh 0.28 keeps ratio 1.25 unclipped', () => {
    const symmetric = one(Math.log(1.25), 0, 1);
    expect(symmetric.gradLogprobs[0]).toBe(0);
    const dapo = one(Math.log(1.25), 0, 1, { epsilonHigh: 0.28 });
    expect(dapo.loss).toBeCloseTo(-1.25, 12);
    expect(dapo.gradLogprobs[0]).toBeCloseTo(-1.25, 6);
  });

  test('ratio exactly on the clip edge is not clipped (strict >, as TRL): ε = 0, ratio 1', () => {
    const out = one(-0.7, -0.7, 3, { epsilonLow: 0, epsilonHigh: 0 });
    expect(out.loss).toBe(-3);
    expect(out.gradLogprobs[0]).toBe(-3);
    expect(out.metrics.clipRatioRegion).toBe(0);
  });

  // logprob −1, ref −1.5: log r = −0.5.
  const KL_CASES: Array<[KlEstimator, number, number]> = [
    ['k1', 0.5, 1],
    ['k2', 0.125, 0.5],
    ['k3', Math.exp(-0.5) - 1 + 0.5, 1 - Math.exp(-0.5)],
  ];
  test.each(KL_CASES)('KL %s: value and slope with A = 0 (a zero-std group), β = 0.1', (klEstimator, kl, slope) => {
    const out = one(-1, -1, 0, { refLogprobs: f64([-1.5]), beta: 0.1, klEstimator });
    expect(out.loss).toBeCloseTo(0.1 * kl, 12);
    expect(out.gradLogprobs[0]).toBeCloseTo(0.1 * slope, 7);
    expect(out.metrics.klMean).toBeCloseTo(kl, 12);
  });

  test('β = 0 with refLogprobs still reports klMean but adds nothing', () => {
    const out = one(-1, -1, 0, { refLogprobs: f64([-1.5]) });
    expect(out.loss).toBe(0);
    expect(out.gradLogprobs[0]).toBe(0);
    expect(out.metrics.klMean).toBeCloseTo(Math.exp(-0.5) - 0.5, 12);
  });

  test('a zero-std group has advantage 0: no policy gradient at all', () => {
    const adv = computeAdvantages([1, 1, 1, 0, 1, 0], 3);
    const out = grpoLoss({ logprobs: f32([-1, -2, -3, -1, -2, -3]), oldLogprobs: f32([-1.1, -2, -2.5, -1, -2.2, -3]), advantages: adv, lengths: [1, 1, 1, 1, 1, 1] });
    expect([...out.gradLogprobs.slice(0, 3)]).toEqual([0, 0, 0]);
    expect(out.gradLogprobs.slice(3).some((g) => g !== 0)).toBe(true);
  });
});

describe('grpoLoss: random odd shapes against TRL’s tensor code and finite differences', () => {
  type Case = [rows: number, T: number, seed: number, path: string];
  const CASES: Case[] = [
    [1, 1, 1, 'one token'],
    [3, 5, 2, 'ragged rows, one row fully masked'],
    [7, 13, 3, 'ratios spread over both clip edges'],
    [4, 9, 4, 'large advantages'],
  ];

  function inputs(rows: number, T: number, seed: number) {
    const rand = mulberry32(seed);
    const n = rows * T;
    const logprobs = Float64Array.from({ length: n }, () => -Math.abs(gaussian(rand)) - 0.05);
    const oldLogprobs = logprobs.map((x) => x - 0.25 * gaussian(rand));
    const refLogprobs = logprobs.map((x) => x - 0.5 * gaussian(rand));
    const advantages = Float64Array.from({ length: rows }, () => (seed === 4 ? 30 : 1.5) * gaussian(rand));
    const mask = new Float64Array(n);
    for (let r = 0; r < rows; r++) {
      const length = rows > 1 && r === 1 ? 0 : 1 + Math.floor(rand() * T);
      for (let t = 0; t < length; t++) mask[r * T + t] = 1;
    }
    for (let i = 0; i < n; i++) if (!mask[i]) logprobs[i] = NaN; // padding must never be read
    return { logprobs, oldLogprobs, refLogprobs, advantages, mask };
  }

  for (const [rows, T, seed, path] of CASES) {
    for (const lossType of LOSS_TYPES) {
      test.each(KL_ESTIMATORS)(`(${rows} × ${T}) ${lossType}, KL %s: ${path}`, (klEstimator) => {
        const data = inputs(rows, T, seed);
        const options = { lossType, klEstimator, beta: 0.04, epsilonLow: 0.2, epsilonHigh: 0.28, maxCompletionLength: T + 2 };
        const out = grpoLoss({ ...data, ...options });
        const want = trlReference({ ...data, ...options });
        expect(Math.abs(out.loss - want)).toBeLessThanOrEqual(1e-12 + 1e-12 * Math.abs(want));

        // Central differences of the float64 loss, away from the clip edges where it has a kink.
        const h = 1e-5;
        const analytic: number[] = [];
        const numeric: number[] = [];
        for (let i = 0; i < data.logprobs.length; i++) {
          if (!data.mask[i]) {
            expect(out.gradLogprobs[i]).toBe(0);
            continue;
          }
          const ratio = Math.exp(data.logprobs[i]! - data.oldLogprobs[i]!);
          if (Math.abs(ratio - 0.8) < 1e-3 || Math.abs(ratio - 1.28) < 1e-3) continue;
          const at = (x: number) => {
            const logprobs = Float64Array.from(data.logprobs);
            logprobs[i] = x;
            return grpoLoss({ ...data, ...options, logprobs }).loss;
          };
          numeric.push((at(data.logprobs[i]! + h) - at(data.logprobs[i]! - h)) / (2 * h));
          analytic.push(out.gradLogprobs[i]!);
        }
        expect(analytic.length).toBeGreaterThan(0);
        expectClose(`finite differences ${rows}x${T} ${lossType} ${klEstimator}`, analytic, numeric, TOLERANCES.finiteDifferences);
      });
    }
  }

  test('metrics follow TRL’s definitions on a random batch', () => {
    const data = inputs(7, 13, 3);
    const out = grpoLoss({ ...data, refLogprobs: data.refLogprobs, epsilonLow: 0.2, epsilonHigh: 0.28 });
    let low = 0;
    let high = 0;
    let ratioSum = 0;
    let tokens = 0;
    for (let i = 0; i < data.mask.length; i++) {
      if (!data.mask[i]) continue;
      const A = data.advantages[Math.floor(i / 13)]!;
      const ratio = Math.exp(data.logprobs[i]! - data.oldLogprobs[i]!);
      tokens++;
      ratioSum += ratio;
      if (ratio < 0.8 && A < 0) low++;
      if (ratio > 1.28 && A > 0) high++;
    }
    expect(low).toBeGreaterThan(0);
    expect(high).toBeGreaterThan(0);
    expect(out.metrics.tokens).toBe(tokens);
    expect(out.metrics.clipRatioLow).toBeCloseTo(low / tokens, 12);
    expect(out.metrics.clipRatioHigh).toBeCloseTo(high / tokens, 12);
    expect(out.metrics.clipRatioRegion).toBeCloseTo((low + high) / tokens, 12);
    expect(out.metrics.ratioMean).toBeCloseTo(ratioSum / tokens, 12);
  });
});

describe('grpoLoss: bad arguments', () => {
  const ok = { logprobs: f32([-1, -1, -1, -1]), advantages: f32([1, -1]), mask: f32([1, 1, 1, 0]) };
  test('each names the argument', () => {
    expect(() => grpoLoss({ ...ok, advantages: f32([]) })).toThrow(/advantages: expected a non-empty Float32Array or Float64Array/);
    expect(() => grpoLoss({ ...ok, logprobs: f32([-1, -1, -1]) })).toThrow(/logprobs: expected a Float32Array or Float64Array of rows·T elements \(rows = 2\)/);
    expect(() => grpoLoss({ ...ok, oldLogprobs: f32([0]) })).toThrow(/oldLogprobs: expected a Float32Array or Float64Array of 4 elements/);
    expect(() => grpoLoss({ ...ok, mask: f32([1, 0.5, 1, 0]) })).toThrow(/mask\[1\]: expected 0 or 1, got 0.5/);
    expect(() => grpoLoss({ logprobs: ok.logprobs, advantages: ok.advantages })).toThrow(/mask: expected a mask or lengths/);
    expect(() => grpoLoss({ ...ok, lengths: [2, 2] })).toThrow(/lengths\[1\]: expected to agree with mask row 1/);
    expect(() => grpoLoss({ ...ok, mask: undefined, lengths: [2, 3] })).toThrow(/lengths\[1\]: expected an integer in \[0, 2\]/);
    expect(() => grpoLoss({ ...ok, lossType: 'ppo' as never })).toThrow(/lossType: expected one of grpo, bnpo, dr_grpo, dapo/);
    expect(() => grpoLoss({ ...ok, klEstimator: 'k4' as never })).toThrow(/klEstimator: expected one of k1, k2, k3/);
    expect(() => grpoLoss({ ...ok, beta: 0.1 })).toThrow(/refLogprobs: expected log-probabilities of the reference model \(beta is 0.1\)/);
    expect(() => grpoLoss({ ...ok, epsilonLow: 1 })).toThrow(/epsilonLow: expected a number in \[0, 1\)/);
    expect(() => grpoLoss({ ...ok, maxCompletionLength: 0 })).toThrow(/maxCompletionLength: expected a positive integer/);
    expect(() => grpoLoss({ ...ok, numItemsInBatch: 2 })).toThrow(/numItemsInBatch: expected a number ≥ this call's 3 unmasked tokens/);
    expect(() => grpoLoss({ ...ok, logprobs: f32([-1, NaN, -1, NaN]) })).toThrow(/logprobs\[1\]: expected a finite number where mask is 1, got NaN/);
    expect(() => grpoLoss({ ...ok, advantages: f32([1, Infinity]) })).toThrow(/advantages\[1\]: expected a finite number/);
    expect(() => grpoLoss(null as never)).toThrow(IntuitorError);
  });
});
