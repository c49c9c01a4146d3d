/**
 * Every option of a GRPO run, with its default, its effect and where the default comes from.
 * The variant is GRPO as TRL's GRPOTrainer implements it (Shao et al. 2024, DeepSeekMath; TRL
 * 0.2x): G sampled completions per prompt, group-relative advantages, a clipped importance ratio
 * per token against the policy that sampled the batch, an optional KL penalty to a frozen
 * reference, μ updates per generation batch. INTUITOR (Zhao et al. 2025) is this trainer with the
 * `self-certainty` reward.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import type { SamplingOptions } from '../sampling/sample.js';
import type { CollapseThresholds } from './monitors.js';
import type { RewardScaling, RewardAggregation } from './advantages.js';
import { DEFAULT_LOSS_TYPE, type KlEstimator, type LossType } from './loss.js';

export interface GrpoConfig {
  /** Hugging Face model folder the policy (and the reference, when beta > 0) start from. */
  model: string;
  /** Built-in task name (src/tasks): its train split is the data, its test split the evaluation. 'math' (free-form answers) needs `data`. */
  task: string;
  /** JSON lines of {prompt, answer} to train on instead of the task's generator (the task still scores); the last min(evalPrompts, 10%) lines are held out. */
  data?: string;
  /** Output folder: checkpoints, metrics.jsonl/.csv, plot.svg, summary.md. */
  out: string;
  /**
   * Rewards as "name[:weight],...": self-certainty (INTUITOR), accuracy (RLVR), format, random,
   * incorrect, contrastive-self-certainty, logprob, neg-entropy, or a path to a JS module.
   */
  rewards: string;
  /** How several rewards combine: 'normalize-then-sum' (each normalised in its group, then weighted and summed) or 'sum-then-normalize' (TRL's). Default 'sum-then-normalize'. */
  rewardAggregation: RewardAggregation;
  /** Advantage scaling: 'group' std (GRPO, TRL's default), 'batch' std, or 'none' (Dr. GRPO, Liu et al. 2025). */
  scaleRewards: RewardScaling;
  /** GRPO steps: each samples a batch of prompts × G completions and takes μ optimiser updates on it. */
  steps: number;
  /** G, completions per prompt (≥ 2: the advantage is relative to the group). Default 8 (the INTUITOR miniature's). */
  groupSize: number;
  /** Prompts per step. Default 16. */
  promptsPerStep: number;
  /** Run seed: data order, per-sample sampling seeds (seed, step, prompt, sample), random rewards. */
  seed: number;
  /** Peak learning rate of AdamW. Default 1e-4 (tiny models; INTUITOR used 3e-6 on Qwen2.5). */
  lr: number;
  /** 'constant' or 'cosine' after linear warmup. Default 'constant'. */
  schedule: 'constant' | 'cosine';
  warmupSteps: number;
  /** Global gradient-norm clip (0: off). Default 1.0 (TRL's max_grad_norm). */
  maxGradNorm: number;
  /** AdamW decoupled weight decay on matrices. Default 0 (TRL). */
  weightDecay: number;
  /** μ: optimiser updates per generation batch, reusing its old log-probs (TRL num_iterations). Default 1. */
  mu: number;
  /** Per-token loss aggregation: grpo | bnpo | dr_grpo | dapo (src/rl/loss.ts). Default 'grpo' (the original per-sequence mean). */
  lossType: LossType;
  /** Ratio clip below 1 − ε_low. Default 0.2 (PPO, TRL). */
  epsilonLow: number;
  /** Ratio clip above 1 + ε_high. Default 0.2; DAPO (Yu et al. 2025) uses 0.28. */
  epsilonHigh: number;
  /** KL coefficient β against the frozen start model; 0 loads no reference. Default 0 (TRL); INTUITOR used 0.005. */
  beta: number;
  /** KL estimator (Schulman 2020): k1, k2 or k3. Default 'k3' (TRL, GRPO paper). */
  klEstimator: KlEstimator;
  /** Rollout sampling. Default temperature 1, no top-k/p, no min-p (TRL's defaults). */
  sampling: Required<SamplingOptions>;
  /**
   * Wrap every prompt (training, held-out, probes) in the model's chat template as a user message,
   * after `systemPrompt` when given, with the generation prompt: what TRL does for conversational
   * datasets and what an instruct checkpoint (e.g. Qwen2.5-Instruct) expects. Default false: the
   * prompt text as it is (the built-in tasks' completion format, base models).
   */
  chatTemplate: boolean;
  /** The system message of `chatTemplate` (none by default). */
  systemPrompt?: string;
  /** Longest prompt in tokens (after the chat template); longer prompts are refused by name. Default 64. */
  maxPromptLength: number;
  /** Longest completion in tokens (truncated beyond). Default 16. */
  maxCompletionLength: number;
  /** Drop truncated completions from the loss (DAPO's overlong filtering; TRL mask_truncated_completions). Default false. */
  maskTruncatedCompletions: boolean;
  /** p of the `random` reward's Bernoulli(p). Default 0.5 (Shao et al. 2025). */
  randomProbability: number;
  /** Evaluate on the held-out split every this many steps (and at the start and end). 0: start and end only. Default 0. */
  evalEvery: number;
  /** Held-out prompts evaluated (greedy pass@1). Default 64. */
  evalPrompts: number;
  /**
   * Seed of the held-out prompts drawn from a built-in task. Default 0, whatever the run's seed, so
   * that runs of different seeds are measured on the same prompts (runs of seed 0 drew from it before).
   */
  evalSeed: number;
  /**
   * The split of a built-in task evaluated as held-out: 'test' (reported results) or 'validation'
   * (choosing a recipe without looking at 'test'; only tasks that have one, e.g. addition-modes).
   * Default 'test'.
   */
  heldOutSplit: 'test' | 'validation';
  /** The fixed probe set of the collapse monitor (greedy answers compared with step 0's). Default 16; 0 turns the probe off. */
  probePrompts: number;
  /** Stop cleanly, keeping the last checkpoint saved before the collapse, when the monitors call a collapse. Default false. */
  stopOnCollapse: boolean;
  /**
   * Stop cleanly, keeping the last checkpoint saved before it, once the sampled completions have
   * settled on one answer mode (saturationStop in src/rl/monitors.ts; tasks with answer modes
   * only, never fires on others). A label-free stop for INTUITOR on a base with a latent reasoning
   * mode: what self-certainty can do there is select the mode (issue 15). Default false.
   */
  stopOnSaturation: boolean;
  /**
   * Stop once the greedy answers to the collapse monitor's probe prompts (no labels) have settled in
   * one answer mode (probeModeStop in src/rl/monitors.ts; tasks with answer modes and probePrompts > 0
   * only), training on to the next checkpoint (saveEvery; at once when 0) and keeping it. The
   * label-free stop of the main job (issue 15): held-out accuracy is greedy, so what self-certainty
   * can gain by selecting the reasoning mode is won when the greedy answers have switched to it.
   * Default false.
   */
  stopOnProbeModes: boolean;
  /** Overrides of the collapse monitor's thresholds (src/rl/monitors.ts). */
  collapseThresholds: Partial<CollapseThresholds>;
  /** Save a checkpoint every this many steps (and at the end). 0: only at the end. */
  saveEvery: number;
  /** Checkpoints kept. Default 2. */
  keep: number;
  /** Continue from the latest checkpoint in `out`. */
  resume: boolean;
  /** Remove a non-empty `out` first; without it (or `resume`) such a folder is refused, so two runs never mix. */
  overwrite: boolean;
}

export type GrpoConfigInput = Pick<GrpoConfig, 'model' | 'task' | 'out' | 'rewards'> & Partial<GrpoConfig>;

export const GRPO_DEFAULTS: Omit<GrpoConfig, 'model' | 'task' | 'out' | 'rewards'> = {
  rewardAggregation: 'sum-then-normalize',
  scaleRewards: 'group',
  steps: 50,
  groupSize: 8,
  promptsPerStep: 16,
  seed: 0,
  lr: 1e-4,
  schedule: 'constant',
  warmupSteps: 0,
  maxGradNorm: 1.0,
  weightDecay: 0,
  mu: 1,
  lossType: DEFAULT_LOSS_TYPE,
  epsilonLow: 0.2,
  epsilonHigh: 0.2,
  beta: 0,
  klEstimator: 'k3',
  sampling: { temperature: 1, topK: 0, topP: 1, minP: 0 },
  chatTemplate: false,
  maxPromptLength: 64,
  maxCompletionLength: 16,
  maskTruncatedCompletions: false,
  randomProbability: 0.5,
  evalEvery: 0,
  evalPrompts: 64,
  evalSeed: 0,
  heldOutSplit: 'test',
  probePrompts: 16,
  stopOnCollapse: false,
  stopOnSaturation: false,
  stopOnProbeModes: false,
  collapseThresholds: {},
  saveEvery: 0,
  keep: 2,
  resume: false,
  overwrite: false,
};

/** Fills defaults and checks the numbers the trainer relies on (rewards and task are checked where they resolve). */
export function resolveGrpoConfig(input: GrpoConfigInput): GrpoConfig {
  const c: GrpoConfig = { ...GRPO_DEFAULTS, ...input, sampling: { ...GRPO_DEFAULTS.sampling, ...input.sampling } };
  const int = (name: keyof GrpoConfig, min: number) => {
    const v = c[name];
    if (!Number.isSafeInteger(v) || (v as number) < min) throw new InvalidArgumentError(name, `an integer ≥ ${min}`, describe(v));
  };
  int('steps', 1);
  int('groupSize', 2);
  // Each step re-scores every completion under another prompt of its batch (the monitors, the contrastive reward).
  int('promptsPerStep', 2);
  int('seed', 0);
  int('mu', 1);
  int('warmupSteps', 0);
  int('maxPromptLength', 1);
  int('maxCompletionLength', 1);
  int('evalEvery', 0);
  int('evalPrompts', 1);
  int('evalSeed', 0);
  if (c.heldOutSplit !== 'test' && c.heldOutSplit !== 'validation') throw new InvalidArgumentError('heldOutSplit', "'test' or 'validation'", describe(c.heldOutSplit));
  int('probePrompts', 0);
  int('saveEvery', 0);
  int('keep', 1);
  for (const name of ['lr', 'maxGradNorm', 'weightDecay', 'epsilonLow', 'epsilonHigh', 'beta'] as const) {
    if (typeof c[name] !== 'number' || !Number.isFinite(c[name]) || c[name] < 0) throw new InvalidArgumentError(name, 'a finite number ≥ 0', describe(c[name]));
  }
  if (!(c.randomProbability >= 0 && c.randomProbability <= 1)) throw new InvalidArgumentError('randomProbability', 'a number in [0, 1]', describe(c.randomProbability));
  if (c.systemPrompt !== undefined && (typeof c.systemPrompt !== 'string' || !c.chatTemplate)) {
    throw new InvalidArgumentError('systemPrompt', 'a string, given together with chatTemplate', describe(c.systemPrompt));
  }
  if (c.sampling.temperature <= 0) throw new InvalidArgumentError('sampling.temperature', 'a number > 0 (GRPO needs different completions within a group)', describe(c.sampling.temperature));
  return c;
}
