/**
 * `intuitor train` (GRPO with any reward; see src/rl/config.ts for every option) and
 * `intuitor eval` (held-out greedy pass@1 and mean@k on a built-in task).
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { GpuContext } from '../gpu/context.js';
import { PolicyModel } from '../model/policy.js';
import { PolicyTokenizer } from '../model/tokenizer.js';
import { REWARD_AGGREGATIONS, REWARD_SCALINGS } from '../rl/advantages.js';
import { GRPO_DEFAULTS, type GrpoConfigInput } from '../rl/config.js';
import { evaluate } from '../tasks/evaluate.js';
import { KL_ESTIMATORS, LOSS_TYPES } from '../rl/loss.js';
import { runGrpo, type GrpoResult } from '../rl/trainer.js';
import { getTask, taskNames } from '../tasks/index.js';
import { consoleTable } from '../train/summary.js';
import { choiceOption, numberOption, positiveIntOption } from './inputs.js';
import { createProgress } from './progress.js';

/** The commander options of `train` (strings as typed; parsed by grpoInput). */
export interface TrainCommandOptions {
  model: string;
  task?: string;
  data?: string;
  reward: string;
  steps: string;
  groupSize: string;
  promptsPerStep: string;
  seed: string;
  out: string;
  lr: string;
  schedule: string;
  warmupSteps: string;
  maxGradNorm: string;
  weightDecay: string;
  mu: string;
  lossType: string;
  epsilonLow: string;
  epsilonHigh?: string;
  beta: string;
  klEstimator: string;
  temperature: string;
  topK: string;
  topP: string;
  minP: string;
  chatTemplate?: boolean;
  systemPrompt?: string;
  maxPromptLength: string;
  maxCompletionLength: string;
  maskTruncatedCompletions?: boolean;
  rewardAggregation: string;
  scaleRewards: string;
  randomProbability: string;
  evalEvery: string;
  evalPrompts: string;
  evalSeed: string;
  heldOutSplit: string;
  probePrompts: string;
  stopOnCollapse?: boolean;
  stopOnSaturation?: boolean;
  stopOnProbeModes?: boolean;
  saveEvery: string;
  keep: string;
  resume?: boolean;
  overwrite?: boolean;
}

const D = GRPO_DEFAULTS;

/** Option defaults as strings, by flag; a command may override some (the main job's budget). */
export type TrainDefaults = Partial<Record<'promptsPerStep' | 'lr' | 'maxCompletionLength' | 'evalPrompts' | 'probePrompts' | 'beta' | 'mu' | 'evalEvery' | 'saveEvery', string>>;

/** Registers train's tuning options on a commander command (shared by train, run and experiment rewards). */
export function trainOptions(cmd: Command, defaults: TrainDefaults = {}): Command {
  return cmd
    .option('--prompts-per-step <n>', 'prompts per GRPO step', defaults.promptsPerStep ?? String(D.promptsPerStep))
    .option('--lr <x>', 'AdamW peak learning rate', defaults.lr ?? String(D.lr))
    .option('--schedule <name>', 'constant | cosine (after warmup)', D.schedule)
    .option('--warmup-steps <n>', 'linear warmup updates', String(D.warmupSteps))
    .option('--max-grad-norm <x>', 'global gradient-norm clip (0: off)', String(D.maxGradNorm))
    .option('--weight-decay <x>', 'AdamW decoupled weight decay', String(D.weightDecay))
    .option('--mu <n>', 'optimiser updates per generation batch (TRL num_iterations)', defaults.mu ?? String(D.mu))
    .option('--loss-type <name>', LOSS_TYPES.join(' | '), D.lossType)
    .option('--epsilon-low <x>', 'ratio clip below 1 − ε', String(D.epsilonLow))
    .option('--epsilon-high <x>', 'ratio clip above 1 + ε (default: --epsilon-low; DAPO 0.28)')
    .option('--beta <x>', 'KL coefficient against the frozen start model (0: no reference)', defaults.beta ?? String(D.beta))
    .option('--kl-estimator <name>', KL_ESTIMATORS.join(' | '), D.klEstimator)
    .option('--temperature <t>', 'rollout sampling temperature (> 0)', String(D.sampling.temperature))
    .option('--top-k <k>', 'rollout top-k (0: off)', String(D.sampling.topK))
    .option('--top-p <p>', 'rollout top-p (1: off)', String(D.sampling.topP))
    .option('--min-p <p>', 'rollout min-p (0: off)', String(D.sampling.minP))
    .option('--chat-template', "wrap each prompt in the model's chat template as a user message (instruct checkpoints)")
    .option('--system-prompt <text>', 'the system message of --chat-template')
    .option('--max-prompt-length <n>', 'longest prompt in tokens (after the chat template)', String(D.maxPromptLength))
    .option('--max-completion-length <n>', 'longest completion in tokens', defaults.maxCompletionLength ?? String(D.maxCompletionLength))
    .option('--mask-truncated-completions', 'leave truncated completions out of the loss')
    .option('--reward-aggregation <mode>', REWARD_AGGREGATIONS.join(' | '), D.rewardAggregation)
    .option('--scale-rewards <mode>', REWARD_SCALINGS.join(' | '), D.scaleRewards)
    .option('--random-probability <p>', 'p of the random reward', String(D.randomProbability))
    .option('--eval-every <n>', 'held-out evaluation every n steps (0: start and end only)', defaults.evalEvery ?? String(D.evalEvery))
    .option('--eval-prompts <n>', 'held-out prompts evaluated', defaults.evalPrompts ?? String(D.evalPrompts))
    .option('--eval-seed <n>', 'seed of the held-out prompts (the same for every run seed)', String(D.evalSeed))
    .option('--held-out-split <name>', 'test | validation (choosing a recipe; tasks that have one)', D.heldOutSplit)
    .option('--probe-prompts <n>', "collapse monitor's fixed probe set (0: off)", defaults.probePrompts ?? String(D.probePrompts))
    .option('--stop-on-collapse', 'stop cleanly when the monitors call a collapse, keeping the last good checkpoint')
    .option('--stop-on-probe-modes', 'stop once the greedy answers to the probe prompts have settled in one answer mode (tasks with modes; no labels), keeping the next checkpoint')
    .option('--stop-on-saturation', 'stop cleanly once the sampled answers have settled on one answer mode (tasks with modes), keeping the last checkpoint before it')
    .option('--save-every <n>', 'checkpoint every n steps (0: only at the end)', defaults.saveEvery ?? String(D.saveEvery))
    .option('--keep <n>', 'checkpoints kept', String(D.keep))
    .option('--resume', 'continue from the latest checkpoint in --out')
    .option('--overwrite', 'remove a non-empty --out first (without it or --resume, such a folder is refused)');
}

/** Parses the flags into a GRPO config (bad values name their flag). */
export function grpoInput(o: Omit<TrainCommandOptions, 'reward' | 'out' | 'model'> & { model: string; out: string; reward: string }): GrpoConfigInput {
  const epsilonLow = numberOption('--epsilon-low', o.epsilonLow, { min: 0 });
  if (o.data === undefined && (o.task === undefined || o.task === 'math')) {
    throw new InvalidArgumentError('--task', 'a built-in task (addition, arithmetic, countdown, permutations), or --data FILE of {"prompt", "answer"} lines for math', o.task === undefined ? 'neither --task nor --data' : '"math" without --data');
  }
  if (o.systemPrompt !== undefined && !o.chatTemplate) throw new InvalidArgumentError('--system-prompt', 'given together with --chat-template', JSON.stringify(o.systemPrompt));
  return {
    model: o.model, task: o.task === undefined ? 'math' : choiceOption('--task', o.task, taskNames()), data: o.data, out: o.out, rewards: o.reward,
    steps: positiveIntOption('--steps', o.steps),
    groupSize: numberOption('--group-size', o.groupSize, { min: 2, integer: true }),
    promptsPerStep: numberOption('--prompts-per-step', o.promptsPerStep, { min: 2, integer: true }),
    seed: numberOption('--seed', o.seed, { min: 0, integer: true }),
    lr: numberOption('--lr', o.lr, { min: 0 }),
    schedule: choiceOption('--schedule', o.schedule, ['constant', 'cosine'] as const),
    warmupSteps: numberOption('--warmup-steps', o.warmupSteps, { min: 0, integer: true }),
    maxGradNorm: numberOption('--max-grad-norm', o.maxGradNorm, { min: 0 }),
    weightDecay: numberOption('--weight-decay', o.weightDecay, { min: 0 }),
    mu: positiveIntOption('--mu', o.mu),
    lossType: choiceOption('--loss-type', o.lossType, LOSS_TYPES),
    epsilonLow,
    epsilonHigh: o.epsilonHigh === undefined ? epsilonLow : numberOption('--epsilon-high', o.epsilonHigh, { min: 0 }),
    beta: numberOption('--beta', o.beta, { min: 0 }),
    klEstimator: choiceOption('--kl-estimator', o.klEstimator, KL_ESTIMATORS),
    sampling: {
      temperature: numberOption('--temperature', o.temperature, { above: 0 }),
      topK: numberOption('--top-k', o.topK, { min: 0, integer: true }),
      topP: numberOption('--top-p', o.topP, { above: 0, max: 1 }),
      minP: numberOption('--min-p', o.minP, { min: 0, max: 0.999999 }),
    },
    chatTemplate: o.chatTemplate ?? false,
    ...(o.systemPrompt === undefined ? {} : { systemPrompt: o.systemPrompt }),
    maxPromptLength: positiveIntOption('--max-prompt-length', o.maxPromptLength),
    maxCompletionLength: positiveIntOption('--max-completion-length', o.maxCompletionLength),
    maskTruncatedCompletions: o.maskTruncatedCompletions ?? false,
    rewardAggregation: choiceOption('--reward-aggregation', o.rewardAggregation, REWARD_AGGREGATIONS),
    scaleRewards: choiceOption('--scale-rewards', o.scaleRewards, REWARD_SCALINGS),
    randomProbability: numberOption('--random-probability', o.randomProbability, { min: 0, max: 1 }),
    evalEvery: numberOption('--eval-every', o.evalEvery, { min: 0, integer: true }),
    evalPrompts: positiveIntOption('--eval-prompts', o.evalPrompts),
    evalSeed: numberOption('--eval-seed', o.evalSeed, { min: 0, integer: true }),
    heldOutSplit: choiceOption('--held-out-split', o.heldOutSplit, ['test', 'validation'] as const),
    probePrompts: numberOption('--probe-prompts', o.probePrompts, { min: 0, integer: true }),
    stopOnCollapse: o.stopOnCollapse ?? false,
    stopOnSaturation: o.stopOnSaturation ?? false,
    stopOnProbeModes: o.stopOnProbeModes ?? false,
    saveEvery: numberOption('--save-every', o.saveEvery, { min: 0, integer: true }),
    keep: positiveIntOption('--keep', o.keep),
    resume: o.resume ?? false,
    overwrite: o.overwrite ?? false,
  };
}

/** Runs one GRPO run with a progress bar; returns its result. */
export async function trainWithProgress(ctx: GpuContext, input: GrpoConfigInput, label: string): Promise<GrpoResult> {
  const progress = createProgress(label, input.steps ?? D.steps, 0);
  try {
    return await runGrpo(ctx, input, {
      log: (line) => process.stderr.write(`${label}: ${line}\n`),
      onStep: (r) => progress.update(r.step, {
        reward: (r.reward_mean as number).toFixed(3), sc: (r.self_certainty_mean as number).toFixed(3),
        len: (r.completion_length_mean as number).toFixed(1), div: (r.answer_diversity as number).toFixed(2),
      }),
    });
  } finally {
    progress.stop();
  }
}

export function summaryRows(results: { name: string; result: GrpoResult }[]): { columns: string[]; rows: (string | number | null)[][] } {
  return {
    columns: ['run', 'accuracy before', 'accuracy after', 'change', 'self-certainty (last)', 'answer diversity (last)', 'probe agreement (last)', 'monitors'],
    rows: results.map(({ name, result }) => {
      const last = result.records.at(-1) ?? {};
      return [name, result.before.pass1, result.after.pass1, result.after.pass1 - result.before.pass1,
        (last.self_certainty_mean as number | undefined) ?? null, (last.answer_diversity as number | undefined) ?? null,
        (last.probe_agreement as number | undefined) ?? null,
        result.stoppedOnCollapse ? `${result.verdict} (stopped)` : result.verdict];
    }),
  };
}

export async function trainCommand(o: TrainCommandOptions): Promise<void> {
  const input = grpoInput(o);
  const ctx = await GpuContext.create();
  try {
    const result = await trainWithProgress(ctx, input, 'intuitor train');
    const { columns, rows } = summaryRows([{ name: input.rewards, result }]);
    process.stdout.write(`${consoleTable(columns, rows)}\nmetrics: ${result.out}/metrics.jsonl, ${result.out}/metrics.csv; plot: ${result.out}/plot.svg; last checkpoint: ${result.lastCheckpoint ?? 'none'}\n`);
  } finally {
    ctx.close();
  }
}

export interface EvalCommandOptions {
  model: string;
  task: string;
  n: string;
  prompts: string;
  maxNewTokens: string;
  temperature: string;
  seed: string;
  json?: boolean;
}

export async function evalCommand(o: EvalCommandOptions): Promise<void> {
  const task = getTask(o.task);
  const k = numberOption('--n', o.n, { min: 0, integer: true });
  const count = positiveIntOption('--prompts', o.prompts);
  const seed = numberOption('--seed', o.seed, { min: 0, integer: true });
  const examples = task.generate(seed, count, 'test');
  const tokenizer = PolicyTokenizer.load(o.model);
  examples.forEach((e, i) => tokenizer.checkEncodable(e.prompt, `held-out prompt ${i + 1} of task ${task.name}`));
  const ctx = await GpuContext.create();
  try {
    const model = await PolicyModel.load(ctx, o.model);
    try {
      const result = await evaluate(model, tokenizer, task, examples, {
        maxNewTokens: positiveIntOption('--max-new-tokens', o.maxNewTokens), k, seed,
        sampling: { temperature: numberOption('--temperature', o.temperature, { above: 0 }) },
      });
      const { greedyAnswers, greedyCompletions: _completions, ...summary } = result;
      if (o.json) process.stdout.write(`${JSON.stringify({ task: task.name, ...summary })}\n`);
      else {
        const rows: (string | number | null)[][] = [['greedy pass@1', result.pass1]];
        if (result.meanAtK !== null) rows.push([`mean@${k}`, result.meanAtK]);
        if (result.exploration) for (const [key, value] of Object.entries(result.exploration)) rows.push([key, value]);
        process.stdout.write(`${task.name}, ${result.examples} held-out prompts (${greedyAnswers.filter((a) => a === null).length} without an answer)\n${consoleTable(['metric', 'value'], rows)}\n`);
      }
    } finally {
      model.destroy();
    }
  } finally {
    ctx.close();
  }
}
