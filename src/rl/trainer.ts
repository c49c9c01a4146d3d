/**
 * The GRPO trainer (see ./config.ts for the variant and every option). One step:
 *
 *   1. rollout   sample G completions for each of the step's prompts (./rollout.ts);
 *   2. score     one training forward of the policy over prompt ++ completion gives, per
 *                completion token, the log-prob (the old log-probs of the ratio) and the
 *                self-certainty of the distribution it was drawn from: the INTUITOR reward comes
 *                from the same pass as the log-probs, no extra forward;
 *   3. reward    every reward function (./rewards.ts), combined into advantages (./advantages.ts);
 *   4. update    the loss's gradient with respect to each token's log-prob (./loss.ts) flows back
 *                through the token statistics into every parameter; AdamW; μ − 1 more updates
 *                re-run the forward on the same batch;
 *   5. monitor   answer diversity, cross-prompt dependence, length drift, probe agreement
 *                (./monitors.ts), on every step.
 *
 * Temperature: completions are sampled at `sampling.temperature` T, and both the log-probs of the
 * ratio and the self-certainty reward are computed on z / T, the distribution the tokens were
 * actually drawn from. The ratio needs the behaviour distribution to be a correct importance
 * weight (as TRL computes it), and the reward then scores the same distribution the policy
 * gradient moves, so reward and update agree. (Computing self-certainty on raw z while sampling
 * at T ≠ 1 scores a distribution that generated none of the tokens.) At T = 1 the choices agree.
 */
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { IntuitorError, InvalidArgumentError } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { NonFiniteError, type PreparedTrainStep } from '../model/training.js';
import { PolicyModel } from '../model/policy.js';
import { PolicyTokenizer } from '../model/tokenizer.js';
import { getTask } from '../tasks/index.js';
import { finalAnswer, readJsonlDataset, type Example, type Task } from '../tasks/dataset.js';
import { DataOrder, type DataOrderState } from '../train/data-order.js';
import { MetricsLog, type MetricValue } from '../train/metrics-log.js';
import { lineChartSvg } from '../train/plot.js';
import { TrainingSession } from '../train/session.js';
import { aggregateRewards } from './advantages.js';
import { resolveGrpoConfig, type GrpoConfig, type GrpoConfigInput } from './config.js';
import { evaluate, modeShares, type Evaluation } from '../tasks/evaluate.js';
import { grpoLoss } from './loss.js';
import { CollapseMonitor, collapseVerdict, otherPromptIndices, probeModeStop, saturationStop, type CollapseMonitorState, type CollapseReport } from './monitors.js';
import { evaluateReward, parseRewardSpec, resolveRewards, rewardRandom, type ResolvedReward } from './rewards.js';
import { completionMask, concatStats, readCompletionStats, rollout, rowGradients, scoreCompletions, scoringLayout, sequencesPerPass, sliceLayout, widestActivation, type Completion, type CompletionStats, type ScoringLayout } from './rollout.js';

export interface GrpoStepRecord extends Record<string, MetricValue> {
  step: number;
}

export interface GrpoResult {
  out: string;
  steps: number;
  /** Held-out evaluation before training and after the last step. */
  before: Evaluation;
  after: Evaluation;
  /** 'stable' or 'collapsed at step N'. */
  verdict: string;
  /** True when --stop-on-collapse, --stop-on-saturation or --stop-on-probe-modes ended the run early. */
  stoppedOnCollapse: boolean;
  lastCheckpoint: string | null;
  records: Record<string, MetricValue>[];
}

export interface GrpoHooks {
  /** After each step's record is written (progress bars; may throw to interrupt). */
  onStep?: (record: GrpoStepRecord, report: CollapseReport) => void;
  /** Collapse warnings and other notes. */
  log?: (line: string) => void;
}

interface TrainerState extends Record<string, unknown> {
  kind: 'grpo';
  step: number;
  data: DataOrderState;
  monitor: CollapseMonitorState;
  before: Evaluation;
}

const mean = (xs: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return xs.length ? s / xs.length : NaN;
};
const std = (xs: ArrayLike<number>): number => {
  const m = mean(xs);
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += (xs[i]! - m) ** 2;
  return xs.length > 1 ? Math.sqrt(s / (xs.length - 1)) : 0;
};

/** Train-split size drawn from a built-in task (the generators are infinite; this bounds an epoch). */
const TASK_TRAIN_EXAMPLES = 4096;

/**
 * The training prompts and the held-out set: a built-in task's train and test splits, or, with
 * --data, the file's lines with the last min(evalPrompts, 10%) held out.
 */
async function loadData(config: GrpoConfig, task: Task): Promise<{ train: Required<Example>[]; heldOut: Required<Example>[] }> {
  if (config.data === undefined) return { train: task.generate(config.seed, TASK_TRAIN_EXAMPLES, 'train'), heldOut: task.generate(config.evalSeed, config.evalPrompts, config.heldOutSplit) };
  const all = (await readJsonlDataset(config.data)).map((e) => ({ prompt: e.prompt, answer: String(e.answer) }));
  const held = Math.min(config.evalPrompts, Math.floor(all.length / 10));
  if (held < 1) throw new InvalidArgumentError('--data', 'at least 10 lines (a tenth is held out for evaluation)', `${all.length} lines in ${config.data}`);
  return { train: all.slice(0, all.length - held), heldOut: all.slice(all.length - held) };
}

export async function runGrpo(ctx: GpuContext, input: GrpoConfigInput, hooks: GrpoHooks = {}): Promise<GrpoResult> {
  const config = resolveGrpoConfig(input);
  const task = getTask(config.task);
  const rewards = await resolveRewards(parseRewardSpec(config.rewards), { randomProbability: config.randomProbability });
  const tokenizer = PolicyTokenizer.load(config.model);
  const asPrompt = promptFormat(config, tokenizer);
  const loaded = await loadData(config, task);
  const data = loaded.train.map((e) => ({ ...e, prompt: asPrompt(e.prompt) }));
  const heldOut = loaded.heldOut.map((e) => ({ ...e, prompt: asPrompt(e.prompt) }));
  const source = config.data ?? `task ${task.name}`;
  const encodedPrompts = data.map((e, i) => {
    const ids = tokenizer.encode(e.prompt, { source: `prompt ${i + 1} of ${source}` });
    if (ids.length === 0) throw new InvalidArgumentError(`prompt ${i + 1} of ${source}`, 'a prompt of at least one token', JSON.stringify(e.prompt));
    if (ids.length > config.maxPromptLength) {
      throw new InvalidArgumentError('maxPromptLength', `at least the ${ids.length} tokens of prompt ${i + 1} of ${source} (${JSON.stringify(e.prompt.slice(0, 60))})`, String(config.maxPromptLength));
    }
    return ids;
  });
  // Held-out prompts are encoded when evaluated: refuse what they cannot encode before any work.
  heldOut.forEach((e, i) => tokenizer.checkEncodable(e.prompt, `held-out prompt ${i + 1} of ${source}`));
  const probes = heldOut.slice(0, config.probePrompts);
  const seqLen = Math.max(...encodedPrompts.map((p) => p.length)) + config.maxCompletionLength;
  const G = config.groupSize;
  const P = config.promptsPerStep;
  const T = config.maxCompletionLength;
  const log = hooks.log ?? (() => undefined);

  const session = await TrainingSession.open(ctx, {
    model: config.model, out: config.out, resume: config.resume, overwrite: config.overwrite, keep: config.keep,
    optimizer: { lr: config.lr, schedule: config.schedule, warmupSteps: config.warmupSteps, totalSteps: config.steps * config.mu, maxGradNorm: config.maxGradNorm, weightDecay: config.weightDecay, beta1: 0.9, beta2: 0.999, eps: 1e-8 },
  });
  const policy = session.model;
  let reference: PolicyModel | null = null;
  let prepared: PreparedTrainStep | null = null;
  try {
    reference = config.beta > 0 ? await PolicyModel.load(ctx, config.model) : null;
    // Micro-batches: as many sequences per training pass as keep its widest activation within one
    // storage binding (the lm_head runs fused with the statistics: no logits bound a pass).
    const passes = Math.ceil(P * G / sequencesPerPass(ctx.maxBindingBytes, seqLen, widestActivation(policy.config), P * G));
    const passSize = Math.ceil(P * G / passes);
    prepared = await session.graph.prepareStep(passSize, seqLen, { temperature: config.sampling.temperature });
    const trainStep = prepared;
    const saved = session.resumedState as TrainerState | null;
    const order = new DataOrder(data.length, config.seed, saved?.data);
    const monitor = new CollapseMonitor(config.collapseThresholds, saved?.monitor);
    const metrics = new MetricsLog(config.out, GRPO_COLUMNS, session.startStep);
    const evalOptions = { maxNewTokens: T, batchSize: 64 };
    const before = saved?.before ?? await evaluate(policy, tokenizer, task, heldOut, evalOptions);
    // The start model's record (not on resume): the probe-modes rule's baseline.
    const startRecord: Record<string, MetricValue>[] = [];
    if (!saved) {
      // The probes are the first held-out prompts: the start model's greedy answers to them are in its evaluation.
      startRecord.push({ step: 0, eval_accuracy: before.pass1, ...modeColumns('eval_mode', before.modeShares), ...modeColumns('probe_mode', probes.length > 0 ? modeShares(task, before.greedyCompletions.slice(0, probes.length)) : null) });
      metrics.append(startRecord[0]!);
      log(`held-out greedy accuracy before training: ${(100 * before.pass1).toFixed(1)}% (${before.examples} prompts)`);
    }
    const reports: CollapseReport[] = [];
    // This run's step records, for the saturation rule (a resumed run judges from its resume point).
    const history: GrpoStepRecord[] = [];
    let lastEvaluation: { step: number; evaluation: Evaluation } | null = null;
    let lastCheckpoint: string | null = null;
    // --stop-on-probe-modes has fired: train on to the next checkpoint, keep it and stop.
    let stopAtCheckpoint = false;
    let stoppedOnCollapse = false;
    let step = session.startStep;
    while (step < config.steps) {
      step++;
      const started = performance.now();
      ctx.resetPeak();
      const batchIndices = Array.from({ length: P }, () => order.next());
      const prompts = batchIndices.map((i) => encodedPrompts[i]!);

      // 1. Rollout.
      const completions = await rollout(policy, tokenizer, prompts, { groupSize: G, maxNewTokens: T, sampling: config.sampling, seed: config.seed, step, stop: task.stop });
      const seqPrompts = completions.map((c) => prompts[c.prompt]!);
      const layout = scoringLayout(seqPrompts, completions.map((c) => c.tokens), seqLen);

      // Cross-prompt scoring (monitor, contrastive reward): each completion under another prompt of the batch.
      const other = otherPromptIndices(P);
      const shuffledLayout = scoringLayout(completions.map((c) => prompts[other[c.prompt]!]!), completions.map((c) => c.tokens), seqLen);
      const shuffledStats = await scoreCompletions(policy, shuffledLayout, T, config.sampling.temperature);

      // 2. Score: the training forward, pass by pass (the last pass's activations stay for its backward).
      const micro = Array.from({ length: passes }, (_, m) => passLayout(layout, m * passSize, passSize));
      const forwardAll = async (): Promise<CompletionStats> => {
        const parts: CompletionStats[] = [];
        for (const part of micro) {
          session.graph.writeBatch(trainStep, part.batch);
          await session.graph.forward(trainStep);
          parts.push(await readCompletionStats(ctx, 'grpo', trainStep.stats, part.layout, T));
        }
        return concatStats(parts);
      };
      const stats = await forwardAll();
      const refStats = reference ? await scoreCompletions(reference, layout, T, config.sampling.temperature) : null;

      // 3. Rewards and advantages.
      const perFunction: Record<string, Float64Array> = {};
      const weights: Record<string, number> = {};
      for (const reward of rewards) {
        perFunction[reward.name] = await rewardValues(reward, completions, batchIndices, data, stats, shuffledStats, config, step);
        weights[reward.name] = reward.weight;
      }
      const aggregated = aggregateRewards(perFunction, weights, G, config.rewardAggregation, { scaleRewards: config.scaleRewards });

      // 4. μ updates. The loss (and its gradient with respect to every log-prob) is over the whole
      // batch; each pass then back-propagates its share into the accumulated parameter gradients,
      // the resident last pass first, the others after re-running their forward.
      const lengths = completions.map((c) => c.tokens.length);
      const mask = completionMask(completions, T, config.maskTruncatedCompletions);
      const oldLogprobs = stats.logprob;
      let loss = grpoLossOf(stats.logprob);
      let update = { lr: 0, gradNorm: 0, clipScale: 1 };
      for (let iteration = 0; iteration < config.mu; iteration++) {
        if (iteration > 0) loss = grpoLossOf((await forwardAll()).logprob);
        if (!Number.isFinite(loss.loss)) throw new NonFiniteError(step, 'the GRPO loss', String(loss.loss));
        await session.graph.zeroGrads();
        for (let m = passes - 1; m >= 0; m--) {
          const part = micro[m]!;
          if (m < passes - 1) {
            session.graph.writeBatch(trainStep, part.batch);
            await session.graph.forward(trainStep);
          }
          const gLogprob = rowGradients(part.layout, loss.gradLogprobs, T, passSize * seqLen, part.start);
          session.graph.writeBatch(trainStep, { ...part.batch, gLogprob });
          await session.graph.backward(trainStep);
        }
        update = await session.optimizer.update((step - 1) * config.mu + iteration + 1);
      }
      function grpoLossOf(logprobs: Float32Array) {
        return grpoLoss({
          logprobs, oldLogprobs, refLogprobs: refStats?.logprob, advantages: aggregated.advantages, mask,
          lossType: config.lossType, epsilonLow: config.epsilonLow, epsilonHigh: config.epsilonHigh, beta: config.beta,
          klEstimator: config.klEstimator, maxCompletionLength: T,
        });
      }

      // 5. Monitors, evaluation, metrics.
      const answers = completions.map((c) => finalAnswer(task, c.text));
      const sampledModes = modeShares(task, completions.map((c) => c.text));
      const probeEvaluation = probes.length > 0 ? await evaluate(policy, tokenizer, task, probes, evalOptions) : null;
      const probeAnswers = probeEvaluation?.greedyAnswers;
      const report = monitor.update({
        step, answers, prompts: P, meanLength: mean(lengths),
        scTrue: stats.meanSelfCertainty, scShuffled: shuffledStats.meanSelfCertainty, probeAnswers,
      });
      reports.push(report);
      const evaluation = step === config.steps || (config.evalEvery > 0 && step % config.evalEvery === 0) ? await evaluate(policy, tokenizer, task, heldOut, evalOptions) : null;
      if (evaluation) lastEvaluation = { step, evaluation };
      const seconds = (performance.now() - started) / 1000;
      const record: GrpoStepRecord = {
        step,
        reward_mean: mean(aggregated.rewards), reward_std: std(aggregated.rewards),
        ...Object.fromEntries(rewards.flatMap((r) => [[`reward/${r.name}/mean`, mean(perFunction[r.name]!)], [`reward/${r.name}/std`, std(perFunction[r.name]!)]])),
        frac_reward_zero_std: aggregated.fracRewardZeroStd,
        advantage_mean: mean(aggregated.advantages), advantage_std: std(aggregated.advantages),
        loss: loss.loss, kl: loss.metrics.klMean,
        clip_ratio_low: loss.metrics.clipRatioLow, clip_ratio_high: loss.metrics.clipRatioHigh, clip_ratio_region: loss.metrics.clipRatioRegion,
        entropy: mean(stats.meanEntropy),
        self_certainty_mean: mean(stats.meanSelfCertainty), self_certainty_std: std(stats.meanSelfCertainty),
        self_certainty_min: Math.min(...stats.meanSelfCertainty), self_certainty_max: Math.max(...stats.meanSelfCertainty),
        completion_length_mean: mean(lengths), completion_length_max: Math.max(...lengths),
        frac_truncated: completions.filter((c) => c.truncated).length / completions.length,
        lr: update.lr, grad_norm: update.gradNorm, gpu_mib: ctx.memory.peakBytes / 2 ** 20,
        tokens_per_s: layout.lengths.reduce((a, b) => a + b, 0) * config.mu / seconds, step_s: seconds,
        answer_diversity: report.diversity, cross_prompt_sc: report.crossPromptSc, length_drift: report.lengthDrift, probe_agreement: report.probeAgreement,
        collapse: report.collapsed ? 1 : 0,
        eval_accuracy: evaluation?.pass1 ?? null,
        ...modeColumns('mode', sampledModes), ...modeColumns('eval_mode', evaluation?.modeShares ?? null),
        ...modeColumns('probe_mode', probeEvaluation?.modeShares ?? null),
      };
      // Warn when a collapse is called and when it ends; the per-step flag is in the metrics (collapse).
      const previous = reports.at(-2);
      if (report.collapsed && !previous?.collapsed) log(`step ${step}: collapse warning: ${report.reasons.join('; ')}`);
      if (!report.collapsed && previous?.collapsed) log(`step ${step}: the collapse signals have cleared`);
      history.push(record);
      const saturated = config.stopOnSaturation && saturationStop(history) === step;
      if (config.stopOnProbeModes && !stopAtCheckpoint && probeModeStop([...startRecord, ...history]) === step) {
        stopAtCheckpoint = true;
        log(`step ${step}: the greedy answers to the probe prompts have settled in one answer mode; stopping at the next checkpoint`);
      }
      if ((report.collapsed && config.stopOnCollapse) || saturated) {
        metrics.append(record);
        hooks.onStep?.(record, report);
        stoppedOnCollapse = true;
        log(`step ${step}: stopping on ${saturated ? 'a saturated answer mode' : 'collapse'}; the last checkpoint saved before it is kept${lastCheckpoint ? ` (${lastCheckpoint})` : ''}`);
        break;
      }
      metrics.append(record);
      const saving = step === config.steps || (config.saveEvery > 0 && step % config.saveEvery === 0) || (stopAtCheckpoint && config.saveEvery === 0);
      if (saving) {
        const state: TrainerState = { kind: 'grpo', step, data: order.state(), monitor: monitor.state(), before };
        lastCheckpoint = await session.save(step, state);
      }
      hooks.onStep?.(record, report);
      if (stopAtCheckpoint && saving && step < config.steps) {
        stoppedOnCollapse = true;
        log(`step ${step}: stopped on settled probe modes; this checkpoint is kept (${lastCheckpoint})`);
        break;
      }
    }
    const after = lastEvaluation?.step === step ? lastEvaluation.evaluation : await evaluate(policy, tokenizer, task, heldOut, evalOptions);
    const verdict = collapseVerdict(reports);
    writeFileSync(join(config.out, 'plot.svg'), runPlot([{ name: config.rewards, records: metrics.read() }], task.reasoningMode));
    return { out: config.out, steps: step, before, after, verdict, stoppedOnCollapse, lastCheckpoint, records: metrics.read() };
  } finally {
    prepared?.destroy();
    reference?.destroy();
    session.destroy();
  }
}

/** `prefix/<mode>` → share, for a task with answer modes (sampled completions: 'mode'; greedy held-out ones: 'eval_mode'; the greedy answers of the monitor's probe prompts, every step and label-free: 'probe_mode'). */
function modeColumns(prefix: string, shares: Record<string, number> | null): Record<string, number> {
  return shares === null ? {} : Object.fromEntries(Object.entries(shares).map(([mode, share]) => [`${prefix}/${mode}`, share]));
}

/** The text the model sees for a prompt: itself, or its chat-template rendering (config.chatTemplate). */
function promptFormat(config: GrpoConfig, tokenizer: PolicyTokenizer): (prompt: string) => string {
  if (!config.chatTemplate) return (prompt) => prompt;
  if (!tokenizer.hasChatTemplate) throw new InvalidArgumentError('chatTemplate', 'a model whose tokenizer_config.json has a chat_template', `none in ${config.model}`);
  const system = config.systemPrompt === undefined ? [] : [{ role: 'system', content: config.systemPrompt }];
  return (prompt) => tokenizer.applyChatTemplate([...system, { role: 'user', content: prompt }], { addGenerationPrompt: true });
}

/**
 * Sequences [start, start + size) of the step's layout as one training pass of exactly `size`
 * sequences: past the batch's end, padding sequences of one token whose rows are never scored and
 * get no gradient.
 */
function passLayout(layout: ScoringLayout, start: number, size: number): { start: number; layout: ScoringLayout; batch: { ids: Uint32Array; lengths: Uint32Array; targets: Uint32Array } } {
  const part = sliceLayout(layout, start, Math.min(size, layout.batch - start));
  const ids = new Uint32Array(size * layout.seqLen);
  const targets = new Uint32Array(size * layout.seqLen);
  const lengths = new Uint32Array(size).fill(1);
  ids.set(part.ids);
  targets.set(part.targets);
  lengths.set(part.lengths);
  return { start, layout: part, batch: { ids, lengths, targets } };
}

/**
 * One value per completion for `reward`: text rewards through evaluateReward (a failure names the
 * reward and the prompt's index in the training data), model-statistic rewards from the scoring forward.
 */
async function rewardValues(reward: ResolvedReward, completions: Completion[], batchIndices: number[], data: Required<Example>[], stats: CompletionStats, shuffled: CompletionStats, config: GrpoConfig, step: number): Promise<Float64Array> {
  const out = new Float64Array(completions.length);
  switch (reward.name) {
    case 'self-certainty':
      out.set(stats.meanSelfCertainty);
      return out;
    case 'contrastive-self-certainty':
      completions.forEach((_, i) => (out[i] = stats.meanSelfCertainty[i]! - shuffled.meanSelfCertainty[i]!));
      return out;
    case 'logprob':
      out.set(stats.meanLogprob);
      return out;
    case 'neg-entropy':
      completions.forEach((_, i) => (out[i] = -stats.meanEntropy[i]!));
      return out;
  }
  if (!reward.fn) throw new IntuitorError('REWARD', `reward ${reward.name} has no function`);
  const task = getTask(config.task);
  for (const [i, c] of completions.entries()) {
    const index = batchIndices[c.prompt]!;
    const example = data[index]!;
    out[i] = await evaluateReward(reward.name, reward.fn, { prompt: example.prompt, completion: c.text, answer: example.answer, task }, index,
      { rand: rewardRandom(config.seed, step, c.prompt, c.sample) });
  }
  return out;
}

/** The CSV columns (JSON lines carry the same fields, plus per-reward means and, for a task with answer modes, each mode's share of the sampled completions, mode/<name>, of the greedy held-out ones at evaluations, eval_mode/<name>, and of the greedy answers to the probe prompts every step, probe_mode/<name>). */
export const GRPO_COLUMNS = [
  'step', 'reward_mean', 'reward_std', 'frac_reward_zero_std', 'advantage_mean', 'advantage_std', 'loss', 'kl',
  'clip_ratio_low', 'clip_ratio_high', 'clip_ratio_region', 'entropy', 'self_certainty_mean', 'self_certainty_std', 'self_certainty_min', 'self_certainty_max',
  'completion_length_mean', 'completion_length_max', 'frac_truncated', 'lr', 'grad_norm', 'gpu_mib', 'tokens_per_s', 'step_s',
  'answer_diversity', 'cross_prompt_sc', 'length_drift', 'probe_agreement', 'collapse', 'eval_accuracy',
] as const;

/**
 * Reward, self-certainty, held-out accuracy (a point at every evaluation) and KL against step, one
 * line per run; with `reasoningMode` (a task with answer modes), also that mode's share of the
 * sampled completions.
 */
export function runPlot(runs: { name: string; records: Record<string, MetricValue>[] }[], reasoningMode?: string): string {
  const series = (key: string) => runs.map((run) => ({
    name: run.name,
    points: run.records.filter((r) => typeof r[key] === 'number').map((r) => [r.step as number, r[key] as number] as [number, number]),
  }));
  return lineChartSvg({
    title: 'intuitor GRPO',
    panels: [
      { title: 'reward (weighted sum)', yLabel: 'reward', series: series('reward_mean') },
      { title: 'self-certainty', yLabel: 'nats', series: series('self_certainty_mean') },
      { title: 'held-out accuracy (greedy)', yLabel: 'accuracy', series: series('eval_accuracy') },
      { title: 'KL to reference', yLabel: 'nats', series: series('kl') },
      ...(reasoningMode === undefined ? [] : [{ title: `sampled share of the ${reasoningMode} mode`, yLabel: 'share', series: series(`mode/${reasoningMode}`) }]),
    ],
  });
}
