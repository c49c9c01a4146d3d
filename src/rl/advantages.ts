/**
 * Group-relative advantages (GRPO). Rewards are laid out group-major: prompt i's G completions
 * are rewards[i·G .. i·G + G). A completion's advantage is its reward minus its group's mean,
 * divided by a standard deviation (its group's, the whole batch's, or none) plus eps.
 *
 * Matches TRL's GRPOTrainer._generate_and_score_completions (trl/trainer/grpo_trainer.py):
 *   mean_grouped = rewards.view(-1, G).mean(1);  std = rewards.view(-1, G).std(1)  (scale_rewards="group")
 *   or std = rewards.std()  (scale_rewards="batch": the batch std, the mean stays the group's)
 *   advantages = (rewards − mean_grouped) / (std + 1e-4), no division for scale_rewards="none".
 * torch.std is the UNBIASED (Bessel-corrected, divide by n − 1) estimator, and so is every std
 * here; a group of one completion (or a batch of one) has std 0, as in TRL, so its advantage is 0.
 * Sums run in float64 in index order, so results are reproducible bit for bit.
 */
import { InvalidArgumentError, describe } from '../errors.js';

export type RewardScaling = 'group' | 'batch' | 'none';
export const REWARD_SCALINGS: readonly RewardScaling[] = ['group', 'batch', 'none'];

export interface AdvantageOptions {
  /** Which standard deviation divides the centred rewards. Default 'group' (TRL's default). */
  scaleRewards?: RewardScaling;
  /** Added to the std before dividing. Default 1e-4 (TRL's constant). */
  eps?: number;
}

/** A group's std at or below this counts as zero (torch.isclose(std, 0)'s default atol, 1e-8). */
export const ZERO_STD = 1e-8;

export type RewardArray = Float32Array | Float64Array | readonly number[];

export interface GroupStats {
  /** Mean reward of each group, float64. */
  mean: Float64Array;
  /** Unbiased std of each group (0 for a group of one), float64. */
  std: Float64Array;
  /** Fraction of groups whose std is zero (≤ ZERO_STD): every completion of the prompt got the same reward, so its advantages are 0. */
  fracRewardZeroStd: number;
}

function checkGroupSize(groupSize: unknown): number {
  if (!Number.isSafeInteger(groupSize) || (groupSize as number) < 1) throw new InvalidArgumentError('groupSize', 'a positive integer', describe(groupSize));
  return groupSize as number;
}

function checkRewards(argument: string, rewards: unknown, groupSize: number): RewardArray {
  const ok = Array.isArray(rewards) || rewards instanceof Float32Array || rewards instanceof Float64Array;
  if (!ok) throw new InvalidArgumentError(argument, 'a Float32Array, Float64Array or number[]', describe(rewards));
  const values = rewards as RewardArray;
  if (values.length === 0 || values.length % groupSize !== 0) {
    throw new InvalidArgumentError(argument, `a non-empty length that is a multiple of groupSize ${groupSize}`, describe(rewards));
  }
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new InvalidArgumentError(`${argument}[${i}]`, 'a finite number', describe(v));
  }
  return values;
}

function checkOptions(options: AdvantageOptions): { scaleRewards: RewardScaling; eps: number } {
  const scaleRewards = options.scaleRewards ?? 'group';
  if (!REWARD_SCALINGS.includes(scaleRewards)) throw new InvalidArgumentError('scaleRewards', `one of ${REWARD_SCALINGS.join(', ')}`, describe(scaleRewards));
  const eps = options.eps ?? 1e-4;
  if (typeof eps !== 'number' || !Number.isFinite(eps) || eps < 0) throw new InvalidArgumentError('eps', 'a finite number ≥ 0', describe(eps));
  return { scaleRewards, eps };
}

/** Unbiased std of values[start .. start + n), given their mean; 0 when n = 1. */
function unbiasedStd(values: RewardArray, start: number, n: number, mean: number): number {
  if (n < 2) return 0;
  let s = 0;
  for (let i = 0; i < n; i++) s += (values[start + i]! - mean) ** 2;
  return Math.sqrt(s / (n - 1));
}

function meanOf(values: RewardArray, start: number, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += values[start + i]!;
  return s / n;
}

function groupStatsOf(rewards: RewardArray, groupSize: number): GroupStats {
  const groups = rewards.length / groupSize;
  const mean = new Float64Array(groups);
  const std = new Float64Array(groups);
  let zero = 0;
  for (let g = 0; g < groups; g++) {
    mean[g] = meanOf(rewards, g * groupSize, groupSize);
    std[g] = unbiasedStd(rewards, g * groupSize, groupSize, mean[g]!);
    if (std[g]! <= ZERO_STD) zero++;
  }
  return { mean, std, fracRewardZeroStd: zero / groups };
}

/** Per-group mean and unbiased std of group-major rewards, and the fraction of groups with zero std. */
export function groupRewardStats(rewards: RewardArray, groupSize: number): GroupStats {
  const g = checkGroupSize(groupSize);
  return groupStatsOf(checkRewards('rewards', rewards, g), g);
}

function advantagesOf(rewards: RewardArray, groupSize: number, scaleRewards: RewardScaling, eps: number, stats: GroupStats): Float64Array {
  const out = new Float64Array(rewards.length);
  const batchStd = scaleRewards === 'batch' ? unbiasedStd(rewards, 0, rewards.length, meanOf(rewards, 0, rewards.length)) : 0;
  for (let i = 0; i < rewards.length; i++) {
    const g = Math.floor(i / groupSize);
    const centred = rewards[i]! - stats.mean[g]!;
    if (scaleRewards === 'none') out[i] = centred;
    else out[i] = centred / ((scaleRewards === 'group' ? stats.std[g]! : batchStd) + eps);
  }
  return out;
}

/**
 * GRPO advantages of group-major rewards: (r − mean_group) / (std + eps), with std the group's
 * unbiased std ('group'), the whole batch's unbiased std ('batch'), or no division ('none').
 */
export function computeAdvantages(rewards: RewardArray, groupSize: number, options: AdvantageOptions = {}): Float32Array {
  const g = checkGroupSize(groupSize);
  const values = checkRewards('rewards', rewards, g);
  const { scaleRewards, eps } = checkOptions(options);
  return Float32Array.from(advantagesOf(values, g, scaleRewards, eps, groupStatsOf(values, g)));
}

export type RewardAggregation = 'normalize-then-sum' | 'sum-then-normalize';
export const REWARD_AGGREGATIONS: readonly RewardAggregation[] = ['sum-then-normalize', 'normalize-then-sum'];

export interface AggregatedRewards {
  /** Σ_k w_k·r_k per completion (what a reward curve plots), float32. */
  rewards: Float32Array;
  /** One advantage per completion, float32. */
  advantages: Float32Array;
  /**
   * Fraction of groups that carry no learning signal: with 'sum-then-normalize' the groups whose
   * summed reward has zero std (TRL's frac_reward_zero_std); with 'normalize-then-sum' the groups
   * in which every reward of non-zero weight has zero std, so every advantage of the group is 0.
   */
  fracRewardZeroStd: number;
  /** Each reward's fraction of zero-std groups, by name (all groups count, whatever the weight). */
  fracZeroStdByReward: Record<string, number>;
}

/**
 * Combines several rewards (each group-major, one value per completion) into advantages.
 *
 * 'sum-then-normalize' (TRL's GRPOTrainer and GRPO as published): r = Σ_k w_k·r_k, then
 *   computeAdvantages(r, G, options).
 * 'normalize-then-sum': each reward is normalised within its own group first, then the weighted
 *   normalised rewards are summed, and that sum IS the advantage (no second normalisation):
 *     A_i = Σ_k w_k · (r_k,i − mean_group(r_k)) / (std_k + eps),
 *   with std_k the group's unbiased std ('group'), reward k's batch std ('batch') or 1 with eps
 *   ignored ('none'). A reward that is constant over a group contributes 0 there instead of
 *   being swamped by, or swamping, another reward's scale. This is GDPO's decoupled normalisation
 *   (Liu et al., "GDPO: Group reward-Decoupled Normalization Policy Optimization", 2026); TRL's
 *   multi_objective_aggregation="normalize_then_sum" additionally re-normalises the sum by its
 *   batch std, which this function does not.
 */
export function aggregateRewards(
  perFunction: Record<string, RewardArray>,
  weights: Record<string, number>,
  groupSize: number,
  mode: RewardAggregation,
  options: AdvantageOptions = {},
): AggregatedRewards {
  const g = checkGroupSize(groupSize);
  if (!REWARD_AGGREGATIONS.includes(mode)) throw new InvalidArgumentError('mode', `one of ${REWARD_AGGREGATIONS.join(', ')}`, describe(mode));
  const { scaleRewards, eps } = checkOptions(options);
  if (perFunction === null || typeof perFunction !== 'object') throw new InvalidArgumentError('perFunction', 'an object of reward name → rewards', describe(perFunction));
  const names = Object.keys(perFunction);
  if (names.length === 0) throw new InvalidArgumentError('perFunction', 'at least one reward', 'none');
  for (const name of Object.keys(weights)) {
    if (!(name in perFunction)) throw new InvalidArgumentError(`weights.${name}`, `a weight for one of the rewards ${names.join(', ')}`, 'a reward with no values');
  }
  const columns = names.map((name) => checkRewards(`perFunction.${name}`, perFunction[name], g));
  const n = columns[0]!.length;
  columns.forEach((column, k) => {
    if (column.length !== n) throw new InvalidArgumentError(`perFunction.${names[k]}`, `${n} values (as many as perFunction.${names[0]})`, describe(column));
  });
  const w = names.map((name) => {
    const value = weights[name] ?? 1;
    if (typeof value !== 'number' || !Number.isFinite(value)) throw new InvalidArgumentError(`weights.${name}`, 'a finite number', describe(value));
    return value;
  });

  const summed = new Float64Array(n);
  for (let i = 0; i < n; i++) for (let k = 0; k < names.length; k++) summed[i] = summed[i]! + w[k]! * columns[k]![i]!;
  const statsByReward = columns.map((column) => groupStatsOf(column, g));
  const fracZeroStdByReward = Object.fromEntries(names.map((name, k) => [name, statsByReward[k]!.fracRewardZeroStd]));

  if (mode === 'sum-then-normalize') {
    const stats = groupStatsOf(summed, g);
    return {
      rewards: Float32Array.from(summed),
      advantages: Float32Array.from(advantagesOf(summed, g, scaleRewards, eps, stats)),
      fracRewardZeroStd: stats.fracRewardZeroStd,
      fracZeroStdByReward,
    };
  }

  const advantages = new Float64Array(n);
  columns.forEach((column, k) => {
    if (w[k] === 0) return;
    const normalised = advantagesOf(column, g, scaleRewards, eps, statsByReward[k]!);
    for (let i = 0; i < n; i++) advantages[i] = advantages[i]! + w[k]! * normalised[i]!;
  });
  const groups = n / g;
  let silent = 0;
  for (let group = 0; group < groups; group++) {
    if (columns.every((_, k) => w[k] === 0 || statsByReward[k]!.std[group]! <= ZERO_STD)) silent++;
  }
  return { rewards: Float32Array.from(summed), advantages: Float32Array.from(advantages), fracRewardZeroStd: silent / groups, fracZeroStdByReward };
}
