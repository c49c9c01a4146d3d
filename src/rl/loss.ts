/**
 * The GRPO policy loss and its gradient with respect to the current policy's per-token
 * log-probabilities, on the host in float64.
 *
 * Layout: `rows` sequences × T completion positions, row-major (index r·T + t). logprobs,
 * oldLogprobs, refLogprobs and mask hold rows·T values; advantages holds one value per row.
 * Masked positions (mask 0) are never read, so padding may hold anything (NaN included).
 *
 * Per token (TRL's GRPOTrainer._compute_loss, trl/trainer/grpo_trainer.py):
 *   ratio  = exp(logprob − oldLogprob)                                   (coef_1)
 *   loss_t = −min(ratio·A, clip(ratio, 1 − εlow, 1 + εhigh)·A) + β·kl_t
 * and the batch loss aggregates Σ mask·loss_t by lossType, exactly as TRL does:
 *   grpo    mean over rows of (Σ_t mask·loss_t / max(1, Σ_t mask))  — a row with no tokens counts as 0
 *   bnpo    Σ mask·loss_t / max(1, Σ mask)                          — this call's tokens
 *   dr_grpo Σ mask·loss_t / (rows · maxCompletionLength)
 *   dapo    Σ mask·loss_t / numItemsInBatch                          — the tokens of the whole
 *           generation batch (all micro-batches and processes: TRL's num_items_in_batch)
 * TRL also divides grpo, bnpo and dr_grpo by the gradient-accumulation steps (dapo's global
 * normaliser already accounts for them); `gradientAccumulationSteps` does the same.
 *
 * KL(π‖π_ref) per token, Schulman's estimators with r = π_ref/π (http://joschu.net/blog/kl-approx.html):
 *   k1 = −log r,  k2 = (log r)²/2,  k3 = r − 1 − log r.
 * TRL's per_token_kl is k3; INTUITOR's verl runs use k3 too (kl_loss_type=low_var_kl, which also
 * clamps it to [−10, 10]; this does not clamp).
 *
 * Gradient: d(−min(ratio·A, clip(ratio)·A))/d logprob = −A·ratio where the unclipped term is the
 * minimum, and 0 where the clipped term is (ratio > 1 + εhigh with A > 0, or ratio < 1 − εlow
 * with A < 0): the clip is flat there. At a tie (ratio inside the clip range, or exactly on its
 * edge) both terms have slope −A·ratio, so the gradient is −A·ratio, as in torch's autograd.
 * d kl/d logprob: k1 → 1, k2 → logprob − refLogprob, k3 → 1 − r.
 */
import { InvalidArgumentError, describe } from '../errors.js';

export type LossType = 'grpo' | 'bnpo' | 'dr_grpo' | 'dapo';
export const LOSS_TYPES: readonly LossType[] = ['grpo', 'bnpo', 'dr_grpo', 'dapo'];
/** The one default of the loss aggregation, for `grpoLoss`, the trainer and the CLI. */
export const DEFAULT_LOSS_TYPE: LossType = 'grpo';
export type KlEstimator = 'k1' | 'k2' | 'k3';
export const KL_ESTIMATORS: readonly KlEstimator[] = ['k1', 'k2', 'k3'];

export type FloatArray = Float32Array | Float64Array;

export interface GrpoLossOptions {
  /** Aggregation of the per-token losses (see the file comment). Default 'grpo' (DEFAULT_LOSS_TYPE). */
  lossType?: LossType;
  /** Lower clip: ratio is clipped below at 1 − epsilonLow. Default 0.2. */
  epsilonLow?: number;
  /** Upper clip: ratio is clipped above at 1 + epsilonHigh. Default epsilonLow (DAPO uses 0.28). */
  epsilonHigh?: number;
  /**
   * KL coefficient β. Default 0 (TRL's default since 0.16: no reference model). INTUITOR's runs
   * used 0.005 (open-r1-intuitor recipes: `beta: 0.005`; verl-intuitor: kl_loss_coef=0.005).
   */
  beta?: number;
  /** Estimator of KL(π‖π_ref). Default 'k3' (TRL's). */
  klEstimator?: KlEstimator;
  /** dr_grpo's fixed length normaliser. Default T (the layout's width). */
  maxCompletionLength?: number;
  /** dapo's normaliser: unmasked tokens of the whole generation batch. Default this call's Σ mask. */
  numItemsInBatch?: number;
  /** grpo, bnpo and dr_grpo divide by this, as TRL does per micro-batch. Default 1. */
  gradientAccumulationSteps?: number;
}

export interface GrpoLossArgs extends GrpoLossOptions {
  /** Current policy's log-probabilities of the sampled tokens, rows·T. */
  logprobs: FloatArray;
  /** Log-probabilities under the policy that sampled the batch, rows·T. Default: logprobs (one update per batch, ratio 1). */
  oldLogprobs?: FloatArray;
  /** Reference model's log-probabilities, rows·T; required when beta ≠ 0. */
  refLogprobs?: FloatArray;
  /** One advantage per row. Its length sets `rows`. */
  advantages: FloatArray;
  /** 1 where a token counts, 0 where padding, rows·T. Give mask, lengths, or both (they must agree). */
  mask?: FloatArray;
  /** Completion length of each row: its first lengths[r] positions count. */
  lengths?: ArrayLike<number>;
}

export interface GrpoLossMetrics {
  /** Masked token mean of the KL estimate; null without refLogprobs. */
  klMean: number | null;
  /** Masked token mean of the policy term alone (loss without β·kl), unaggregated. */
  policyLossMean: number;
  /** Fraction of tokens with ratio < 1 − εlow and A < 0 (TRL clip_ratio/low_mean). */
  clipRatioLow: number;
  /** Fraction of tokens with ratio > 1 + εhigh and A > 0 (TRL clip_ratio/high_mean). */
  clipRatioHigh: number;
  /** Fraction clipped either way (TRL clip_ratio/region_mean). */
  clipRatioRegion: number;
  /** Masked token mean of the ratio. */
  ratioMean: number;
  /** Unmasked tokens in this call. */
  tokens: number;
  /** The divisor the loss used (before gradientAccumulationSteps). */
  normalizer: number;
}

export interface GrpoLossResult {
  loss: number;
  /** d loss / d logprobs, rows·T, zero where masked. */
  gradLogprobs: Float32Array;
  metrics: GrpoLossMetrics;
}

function checkArray(argument: string, value: unknown, length: number): FloatArray {
  if (!(value instanceof Float32Array || value instanceof Float64Array) || value.length !== length) {
    throw new InvalidArgumentError(argument, `a Float32Array or Float64Array of ${length} elements`, describe(value));
  }
  return value;
}

function checkNumber(argument: string, value: unknown, fallback: number, ok: (v: number) => boolean, expected: string): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw new InvalidArgumentError(argument, expected, describe(value));
  return v;
}

function checkChoice<T extends string>(argument: string, value: unknown, fallback: T, choices: readonly T[]): T {
  const v = value ?? fallback;
  if (!choices.includes(v as T)) throw new InvalidArgumentError(argument, `one of ${choices.join(', ')}`, describe(value));
  return v as T;
}

/** The mask as 0/1 bytes, from mask and/or lengths, checked to agree. */
function resolveMask(args: GrpoLossArgs, rows: number, T: number): Uint8Array {
  if (args.mask === undefined && args.lengths === undefined) throw new InvalidArgumentError('mask', 'a mask or lengths', 'neither');
  const out = new Uint8Array(rows * T);
  if (args.mask !== undefined) {
    const mask = checkArray('mask', args.mask, rows * T);
    for (let i = 0; i < mask.length; i++) {
      const m = mask[i]!;
      if (m !== 0 && m !== 1) throw new InvalidArgumentError(`mask[${i}]`, '0 or 1', describe(m));
      out[i] = m;
    }
  }
  if (args.lengths !== undefined) {
    const lengths = args.lengths;
    if (lengths === null || typeof lengths !== 'object' || lengths.length !== rows) throw new InvalidArgumentError('lengths', `${rows} lengths (one per row)`, describe(lengths));
    for (let r = 0; r < rows; r++) {
      const n = lengths[r];
      if (!Number.isSafeInteger(n) || n! < 0 || n! > T) throw new InvalidArgumentError(`lengths[${r}]`, `an integer in [0, ${T}]`, describe(n));
      for (let t = 0; t < T; t++) {
        const m = t < n! ? 1 : 0;
        if (args.mask !== undefined && out[r * T + t] !== m) throw new InvalidArgumentError(`lengths[${r}]`, `to agree with mask row ${r}`, `${n}`);
        out[r * T + t] = m;
      }
    }
  }
  return out;
}

/** Per-token KL estimate and its derivative with respect to logprob, for d = refLogprob − logprob (= log r). */
function klTerm(estimator: KlEstimator, d: number): [value: number, slope: number] {
  switch (estimator) {
    case 'k1':
      return [-d, 1];
    case 'k2':
      return [(d * d) / 2, -d];
    case 'k3': {
      const r = Math.exp(d);
      return [r - 1 - d, 1 - r];
    }
  }
}

/** The GRPO loss (see the file comment), its gradient with respect to logprobs, and TRL's metrics. */
export function grpoLoss(args: GrpoLossArgs): GrpoLossResult {
  if (args === null || typeof args !== 'object') throw new InvalidArgumentError('args', 'an object { logprobs, advantages, mask, ... }', describe(args));
  if (!(args.advantages instanceof Float32Array || args.advantages instanceof Float64Array) || args.advantages.length === 0) {
    throw new InvalidArgumentError('advantages', 'a non-empty Float32Array or Float64Array (one per row)', describe(args.advantages));
  }
  const advantages = args.advantages;
  const rows = advantages.length;
  if (!(args.logprobs instanceof Float32Array || args.logprobs instanceof Float64Array) || args.logprobs.length === 0 || args.logprobs.length % rows !== 0) {
    throw new InvalidArgumentError('logprobs', `a Float32Array or Float64Array of rows·T elements (rows = ${rows})`, describe(args.logprobs));
  }
  const logprobs = args.logprobs;
  const T = logprobs.length / rows;
  const n = rows * T;
  const oldLogprobs = args.oldLogprobs === undefined ? logprobs : checkArray('oldLogprobs', args.oldLogprobs, n);
  const refLogprobs = args.refLogprobs === undefined ? undefined : checkArray('refLogprobs', args.refLogprobs, n);
  const mask = resolveMask(args, rows, T);

  const lossType = checkChoice('lossType', args.lossType, DEFAULT_LOSS_TYPE, LOSS_TYPES);
  const klEstimator = checkChoice('klEstimator', args.klEstimator, 'k3', KL_ESTIMATORS);
  const epsilonLow = checkNumber('epsilonLow', args.epsilonLow, 0.2, (v) => v >= 0 && v < 1, 'a number in [0, 1)');
  const epsilonHigh = checkNumber('epsilonHigh', args.epsilonHigh, epsilonLow, (v) => v >= 0, 'a finite number ≥ 0');
  const beta = checkNumber('beta', args.beta, 0, (v) => v >= 0, 'a finite number ≥ 0');
  if (beta !== 0 && refLogprobs === undefined) throw new InvalidArgumentError('refLogprobs', `log-probabilities of the reference model (beta is ${beta})`, 'undefined');
  const maxCompletionLength = checkNumber('maxCompletionLength', args.maxCompletionLength, T, (v) => Number.isSafeInteger(v) && v >= 1, 'a positive integer');
  const accumulation = checkNumber('gradientAccumulationSteps', args.gradientAccumulationSteps, 1, (v) => Number.isSafeInteger(v) && v >= 1, 'a positive integer');
  for (let r = 0; r < rows; r++) {
    if (!Number.isFinite(advantages[r]!)) throw new InvalidArgumentError(`advantages[${r}]`, 'a finite number', describe(advantages[r]));
  }

  let tokens = 0;
  const rowTokens = new Float64Array(rows);
  for (let i = 0; i < n; i++) {
    if (!mask[i]) continue;
    for (const [name, array] of [['logprobs', logprobs], ['oldLogprobs', oldLogprobs], ['refLogprobs', refLogprobs]] as const) {
      if (array !== undefined && !Number.isFinite(array[i]!)) throw new InvalidArgumentError(`${name}[${i}]`, 'a finite number where mask is 1', describe(array[i]));
    }
    tokens++;
    rowTokens[Math.floor(i / T)] = rowTokens[Math.floor(i / T)]! + 1;
  }
  const numItemsInBatch = checkNumber('numItemsInBatch', args.numItemsInBatch, tokens, (v) => v >= tokens && v >= 0, `a number ≥ this call's ${tokens} unmasked tokens`);

  // Each token's weight in the aggregated loss.
  let normalizer: number;
  let tokenWeight: (row: number) => number;
  switch (lossType) {
    case 'grpo':
      normalizer = rows;
      tokenWeight = (row) => 1 / (rows * Math.max(1, rowTokens[row]!) * accumulation);
      break;
    case 'bnpo':
      normalizer = Math.max(1, tokens);
      tokenWeight = () => 1 / (normalizer * accumulation);
      break;
    case 'dr_grpo':
      normalizer = rows * maxCompletionLength;
      tokenWeight = () => 1 / (normalizer * accumulation);
      break;
    case 'dapo':
      normalizer = Math.max(1, numItemsInBatch);
      tokenWeight = () => 1 / normalizer;
      break;
  }

  const grad = new Float32Array(n);
  let loss = 0;
  let klSum = 0;
  let policySum = 0;
  let ratioSum = 0;
  let low = 0;
  let high = 0;
  for (let r = 0; r < rows; r++) {
    const A = advantages[r]!;
    const weight = tokenWeight(r);
    for (let t = 0; t < T; t++) {
      const i = r * T + t;
      if (!mask[i]) continue;
      const ratio = Math.exp(logprobs[i]! - oldLogprobs[i]!);
      const clipped = Math.min(Math.max(ratio, 1 - epsilonLow), 1 + epsilonHigh);
      const isLow = ratio < 1 - epsilonLow && A < 0;
      const isHigh = ratio > 1 + epsilonHigh && A > 0;
      const policy = -Math.min(ratio * A, clipped * A);
      let slope = isLow || isHigh ? 0 : 0 - A * ratio; // 0 − x: A = 0 gives +0, not −0
      let tokenLoss = policy;
      if (refLogprobs !== undefined) {
        const [kl, klSlope] = klTerm(klEstimator, refLogprobs[i]! - logprobs[i]!);
        klSum += kl;
        if (beta !== 0) {
          tokenLoss += beta * kl;
          slope += beta * klSlope;
        }
      }
      loss += weight * tokenLoss;
      grad[i] = weight * slope;
      policySum += policy;
      ratioSum += ratio;
      if (isLow) low++;
      if (isHigh) high++;
    }
  }
  const perToken = (x: number) => x / Math.max(1, tokens);
  return {
    loss,
    gradLogprobs: grad,
    metrics: {
      klMean: refLogprobs === undefined ? null : perToken(klSum),
      policyLossMean: perToken(policySum),
      clipRatioLow: perToken(low),
      clipRatioHigh: perToken(high),
      clipRatioRegion: perToken(low + high),
      ratioMean: perToken(ratioSum),
      tokens,
      normalizer,
    },
  };
}
