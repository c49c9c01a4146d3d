/**
 * Held-out evaluation of a policy on a task: greedy pass@1, mean@k over k sampled completions per
 * prompt, and the exploration scores (validity, effectiveness, necessity: Lu et al. 2025,
 * "Reasoning LLMs are Wandering Solution Explorers") where the task defines them.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import type { PolicyModel } from '../model/policy.js';
import type { PolicyTokenizer } from '../model/tokenizer.js';
import type { SamplingOptions } from '../sampling/sample.js';
import { finalAnswer, type Example, type ExplorationScores, type Task } from './dataset.js';
import { deriveSeed } from '../util/random.js';

export interface Evaluation {
  examples: number;
  /** Greedy accuracy (pass@1). */
  pass1: number;
  /** Mean accuracy over k samples per prompt (null when k = 0). */
  meanAtK: number | null;
  k: number;
  /** Means over the greedy completions, for tasks with exploration scores. */
  exploration: ExplorationScores | null;
  /** The greedy completions, and their answers (answer regions; null when empty), in example order. */
  greedyCompletions: string[];
  greedyAnswers: (string | null)[];
  /** Tasks with answer modes: the share of greedy completions in each mode, and in none ('none'). */
  modeShares: Record<string, number> | null;
}

/** The share of `completions` in each of the task's answer modes, and in none ('none'); null for a task without modes. */
export function modeShares(task: Task, completions: readonly string[]): Record<string, number> | null {
  if (!task.modeOf || !task.modes) return null;
  const shares: Record<string, number> = Object.fromEntries([...task.modes, 'none'].map((m) => [m, 0]));
  for (const c of completions) shares[task.modeOf(c) ?? 'none']! += 1 / completions.length;
  return shares;
}

export interface EvaluateOptions {
  maxNewTokens: number;
  /** Samples per prompt for mean@k (0: greedy only). */
  k?: number;
  sampling?: SamplingOptions;
  seed?: number;
  /** Prompts decoded per batch. Default 64. */
  batchSize?: number;
}

/** Greedy (or sampled, with seeds) completions of `prompts`, in batches, cut at the task's stop string. */
export async function complete(model: PolicyModel, tokenizer: PolicyTokenizer, task: Task, prompts: readonly string[], options: { maxNewTokens: number; sampling?: SamplingOptions; seeds?: number[]; batchSize?: number }): Promise<string[]> {
  const batchSize = options.batchSize ?? 64;
  const eos = new Set(model.config.eosTokenIds);
  const out: string[] = [];
  for (let start = 0; start < prompts.length; start += batchSize) {
    const chunk = prompts.slice(start, start + batchSize).map((p, i) => tokenizer.encode(p, { source: `prompt ${start + i + 1} of task ${task.name}` }));
    const { tokens } = await model.generate(chunk, {
      maxNewTokens: options.maxNewTokens, sampling: options.sampling, seeds: options.seeds?.slice(start, start + batchSize),
      shouldStop: tokenizer.stopWhenTextContains(task.stop),
    });
    out.push(...tokens.map((ids) => tokenizer.decode(ids.filter((id) => !eos.has(id)))));
  }
  return out;
}

export async function evaluate(model: PolicyModel, tokenizer: PolicyTokenizer, task: Task, examples: readonly Required<Example>[], options: EvaluateOptions): Promise<Evaluation> {
  if (!Array.isArray(examples) || examples.length === 0) throw new InvalidArgumentError('examples', 'at least one held-out example', describe(examples));
  const k = options.k ?? 0;
  const prompts = examples.map((e) => e.prompt);
  const greedy = await complete(model, tokenizer, task, prompts, { maxNewTokens: options.maxNewTokens, batchSize: options.batchSize });
  const pass1 = greedy.reduce((sum, text, i) => sum + task.score(text, examples[i]!.answer), 0) / examples.length;
  let meanAtK: number | null = null;
  if (k > 0) {
    const repeated = prompts.flatMap((p) => new Array<string>(k).fill(p));
    const seeds = repeated.map((_, i) => deriveSeed(options.seed ?? 0, Math.floor(i / k), i % k));
    const sampled = await complete(model, tokenizer, task, repeated, { maxNewTokens: options.maxNewTokens, sampling: options.sampling ?? { temperature: 1 }, seeds, batchSize: options.batchSize });
    meanAtK = sampled.reduce((sum, text, i) => sum + task.score(text, examples[Math.floor(i / k)]!.answer), 0) / sampled.length;
  }
  let exploration: ExplorationScores | null = null;
  if (task.explorationScores) {
    const scores = greedy.map((text, i) => task.explorationScores!(text, examples[i]!.answer));
    const mean = (key: keyof ExplorationScores) => scores.reduce((s, x) => s + x[key], 0) / scores.length;
    exploration = { validity: mean('validity'), effectiveness: mean('effectiveness'), necessity: mean('necessity') };
  }
  return {
    examples: examples.length, pass1, meanAtK, k, exploration, greedyCompletions: greedy, modeShares: modeShares(task, greedy),
    greedyAnswers: greedy.map((text) => finalAnswer(task, text)),
  };
}
