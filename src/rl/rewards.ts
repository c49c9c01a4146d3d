/**
 * The reward registry. Text rewards are pure functions of { prompt, completion, answer?, task? };
 * model-statistic rewards (self-certainty and kin) are only named here, flagged needsModelStats,
 * and computed by the trainer from the policy's token statistics. User rewards are JavaScript
 * modules loaded with loadUserReward. A reward spec string such as
 * "self-certainty,accuracy:0.5,./my.mjs:2" picks rewards and their weights (default 1).
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { FileFormatError, InvalidArgumentError, describe } from '../errors.js';
import type { Task } from '../tasks/dataset.js';
import { deriveSeed, mulberry32 } from '../util/random.js';
import { answersEqual, extractAnswer, lastBoxed, normalizeAnswer, parseNumericAnswer } from './verifier.js';

export interface RewardSample {
  prompt: string;
  completion: string;
  /** Reference answer (required by accuracy and incorrect). */
  answer?: string;
  /** The built-in task the prompt came from; without one, the free-form math verifier is used. */
  task?: Task;
}

export interface RewardContext {
  /**
   * Uniform draws in [0, 1) for 'random'. Seed it per (seed, step, prompt, sample), e.g. with
   * rewardRandom, so a resumed run draws the same rewards.
   */
  rand?: () => number;
}

export type RewardFunction = (sample: RewardSample, context: RewardContext) => number | Promise<number>;

export const TEXT_REWARDS = ['accuracy', 'format', 'random', 'incorrect'] as const;
export const MODEL_STAT_REWARDS = ['self-certainty', 'contrastive-self-certainty', 'logprob', 'neg-entropy'] as const;
export type TextRewardName = (typeof TEXT_REWARDS)[number];
export type ModelStatRewardName = (typeof MODEL_STAT_REWARDS)[number];
export type BuiltinRewardName = TextRewardName | ModelStatRewardName;

export interface RewardInfo {
  name: BuiltinRewardName;
  description: string;
  /** Computed by the trainer from the policy's per-token statistics, not from text. */
  needsModelStats: boolean;
  /** Needs the example's reference answer. */
  needsAnswer: boolean;
}

export const REWARDS: Readonly<Record<BuiltinRewardName, RewardInfo>> = Object.freeze({
  accuracy: {
    name: 'accuracy',
    description: "1 if the completion is right, else 0: the task's verifier (countdown: evaluates the expression; permutations: all three exploration scores perfect), or without a task the extracted final answer equals the reference",
    needsModelStats: false,
    needsAnswer: true,
  },
  format: {
    name: 'format',
    description: "1 if the completion's answer has the task's format (task.formatOk), or without a task contains a \\boxed{...} answer, else 0",
    needsModelStats: false,
    needsAnswer: false,
  },
  random: {
    name: 'random',
    description: 'Bernoulli(p) noise, p = 0.5 by default, independent of the completion (the random-reward control of Shao et al., 2025, "Spurious Rewards")',
    needsModelStats: false,
    needsAnswer: false,
  },
  incorrect: {
    name: 'incorrect',
    description: "1 if the completion matches a fixed WRONG label derived from the reference (task.wrongAnswer, or the numeric answer + 1), else 0 (the incorrect-label control of Shao et al., 2025)",
    needsModelStats: false,
    needsAnswer: true,
  },
  'self-certainty': {
    name: 'self-certainty',
    description: "mean over completion tokens of KL(Uniform ‖ π(·|prefix)), the policy's self-certainty (INTUITOR, Zhao et al., 2025)",
    needsModelStats: true,
    needsAnswer: false,
  },
  'contrastive-self-certainty': {
    name: 'contrastive-self-certainty',
    description: 'self-certainty contrasted against a reference context, computed by the trainer',
    needsModelStats: true,
    needsAnswer: false,
  },
  logprob: {
    name: 'logprob',
    description: 'mean log-probability of the completion tokens under the policy',
    needsModelStats: true,
    needsAnswer: false,
  },
  'neg-entropy': {
    name: 'neg-entropy',
    description: "minus the mean entropy of the policy's next-token distributions over the completion",
    needsModelStats: true,
    needsAnswer: false,
  },
});

function isBuiltin(name: string): name is BuiltinRewardName {
  return Object.hasOwn(REWARDS, name);
}

function requireAnswer(reward: string, sample: RewardSample): string {
  if (typeof sample.answer !== 'string') throw new InvalidArgumentError('answer', `a reference answer (the '${reward}' reward needs one)`, describe(sample.answer));
  return sample.answer;
}

/** The fixed wrong label of a free-form numeric answer: its value plus one. */
export function numericWrongAnswer(answer: string): string {
  const value = parseNumericAnswer(normalizeAnswer(answer));
  if (value === null) throw new InvalidArgumentError('answer', "a numeric answer (the 'incorrect' reward derives its wrong label as answer + 1 without a task)", describe(answer));
  return String(value + 1);
}

function freeFormCorrect(completion: string, label: string): boolean {
  const extracted = extractAnswer(completion);
  return extracted !== null && answersEqual(extracted, label);
}

/** The function of a text reward. `randomProbability` is p of 'random' (default 0.5). */
export function builtinReward(name: TextRewardName, options: { randomProbability?: number } = {}): RewardFunction {
  switch (name) {
    case 'accuracy':
      return (sample) => {
        const answer = requireAnswer(name, sample);
        if (sample.task) return sample.task.score(sample.completion, answer);
        return freeFormCorrect(sample.completion, answer) ? 1 : 0;
      };
    case 'format':
      return (sample) => {
        if (sample.task) return sample.task.formatOk(sample.completion) ? 1 : 0;
        return lastBoxed(sample.completion) !== null ? 1 : 0;
      };
    case 'random': {
      const p = options.randomProbability ?? 0.5;
      if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw new InvalidArgumentError('randomProbability', 'a number in [0, 1]', describe(p));
      return (_sample, context) => {
        if (typeof context?.rand !== 'function') throw new InvalidArgumentError('context.rand', "a seeded () => number for the 'random' reward", describe(context?.rand));
        return context.rand() < p ? 1 : 0;
      };
    }
    case 'incorrect':
      return (sample) => {
        const answer = requireAnswer(name, sample);
        if (sample.task) return sample.task.score(sample.completion, sample.task.wrongAnswer(answer));
        return freeFormCorrect(sample.completion, numericWrongAnswer(answer)) ? 1 : 0;
      };
    default: {
      const unknown: string = name;
      const known = isBuiltin(unknown) && REWARDS[unknown].needsModelStats;
      throw new InvalidArgumentError('name', `one of the text rewards ${TEXT_REWARDS.join(', ')}`, known ? `'${unknown}', which the trainer computes from model statistics` : describe(unknown));
    }
  }
}

/**
 * A fresh uniform generator for one (seed, step, prompt, sample): mulberry32 seeded by
 * deriveSeed of the four, so rewards do not depend on the order they are computed in.
 */
export function rewardRandom(seed: number, step: number, promptIndex: number, sampleIndex: number): () => number {
  return mulberry32(deriveSeed(seed, step, promptIndex, sampleIndex));
}

/** A reward's call failed or returned something other than a finite number. */
/**
 * A reward that threw or returned something other than a finite number: bad input (most often
 * from a user's module), naming the reward, the prompt and what came; `cause` holds the throw.
 */
export class RewardError extends InvalidArgumentError {
  readonly reward: string;
  readonly promptIndex: number;
  constructor(reward: string, promptIndex: number, prompt: string, received: string, options?: { cause?: unknown }) {
    super(`reward '${reward}'`, `a finite number for prompt ${promptIndex} (${describe(prompt)})`, received, { ...options, code: 'REWARD_FAILED' });
    this.reward = reward;
    this.promptIndex = promptIndex;
  }
}

/** Calls a reward and checks its value: a throw, a non-number, NaN or ±Infinity becomes a RewardError naming the reward and prompt. */
export async function evaluateReward(name: string, reward: RewardFunction, sample: RewardSample, promptIndex: number, context: RewardContext = {}): Promise<number> {
  let value: unknown;
  try {
    value = await reward(sample, context);
  } catch (error) {
    throw new RewardError(name, promptIndex, sample.prompt, `a throw: ${error instanceof Error ? error.message : describe(error)}`, { cause: error });
  }
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new RewardError(name, promptIndex, sample.prompt, describe(value));
  return value;
}

/** What a user reward module receives: the sample with the task given by name. */
export interface UserRewardSample {
  prompt: string;
  completion: string;
  answer?: string;
  task?: string;
}

/**
 * Loads a user reward: a JavaScript ES module (.mjs, or .js inside a "type": "module" package)
 * whose default export, or else named export `reward`, is `(sample) => number | Promise<number>`.
 * The function receives { prompt, completion, answer?, task? (the task's name) }.
 */
export async function loadUserReward(modulePath: string): Promise<RewardFunction> {
  if (typeof modulePath !== 'string' || modulePath === '') throw new InvalidArgumentError('path', 'a path to a reward module', describe(modulePath));
  const absolute = path.resolve(modulePath);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(absolute).href)) as Record<string, unknown>;
  } catch (error) {
    throw new FileFormatError(modulePath, 'an importable JavaScript module', error instanceof Error ? error.message : describe(error));
  }
  const fn = typeof mod.default === 'function' ? mod.default : mod.reward;
  if (typeof fn !== 'function') {
    const exported = Object.keys(mod);
    throw new FileFormatError(modulePath, 'a default or named `reward` function export', exported.length ? `exports ${exported.join(', ')}` : 'no exports');
  }
  const user = fn as (sample: UserRewardSample) => unknown;
  return (sample) => {
    const plain: UserRewardSample = { prompt: sample.prompt, completion: sample.completion };
    if (sample.answer !== undefined) plain.answer = sample.answer;
    if (sample.task !== undefined) plain.task = sample.task.name;
    return user(plain) as number | Promise<number>;
  };
}

export interface RewardSpec {
  /** A built-in reward's name, or a module path as written. */
  name: string;
  weight: number;
  kind: 'builtin' | 'module';
}

const NUMBER = /^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$/;
const MODULE_PATH = /[\\/]|\.(?:m?js|cjs)$/;

/**
 * Parses "name[:weight],..." into specs. A name is a built-in reward or a path to a JS module
 * (anything with a slash or a .js/.mjs/.cjs ending); a weight is a finite number (default 1).
 */
export function parseRewardSpec(spec: string): RewardSpec[] {
  if (typeof spec !== 'string' || spec.trim() === '') throw new InvalidArgumentError('rewards', 'a comma-separated list such as "self-certainty,accuracy:0.5"', describe(spec));
  const known = Object.keys(REWARDS).join(', ');
  const out: RewardSpec[] = [];
  for (const raw of spec.split(',')) {
    const item = raw.trim();
    if (item === '') throw new InvalidArgumentError('rewards', 'no empty entries between commas', JSON.stringify(spec));
    let name = item;
    let weight = 1;
    const colon = item.lastIndexOf(':');
    if (colon >= 0) {
      const suffix = item.slice(colon + 1).trim();
      if (NUMBER.test(suffix)) {
        name = item.slice(0, colon).trim();
        weight = Number(suffix);
        if (!Number.isFinite(weight)) throw new InvalidArgumentError(`rewards: weight of '${name}'`, 'a finite number', suffix);
      } else if (!(MODULE_PATH.test(item) && MODULE_PATH.test(suffix))) {
        // Not a weight, and not a colon inside a module path (C:\dir\reward.mjs).
        throw new InvalidArgumentError(`rewards: weight of '${item.slice(0, colon).trim()}'`, 'a finite number after the colon', JSON.stringify(suffix));
      }
    }
    if (name === '') throw new InvalidArgumentError('rewards', `a reward name before ':${weight}'`, JSON.stringify(item));
    let kind: RewardSpec['kind'];
    if (isBuiltin(name)) kind = 'builtin';
    else if (MODULE_PATH.test(name)) kind = 'module';
    else throw new InvalidArgumentError('rewards', `a known reward (${known}) or a path to a .js/.mjs module`, JSON.stringify(name));
    if (out.some((s) => s.name === name)) throw new InvalidArgumentError('rewards', 'each reward at most once', `'${name}' twice`);
    out.push({ name, weight, kind });
  }
  return out;
}

export interface ResolvedReward extends RewardSpec {
  /** Computed by the trainer from model statistics; `fn` is null then. */
  needsModelStats: boolean;
  needsAnswer: boolean;
  fn: RewardFunction | null;
}

/** Attaches each spec's function: built-in text rewards, loaded user modules, or null for model-statistic rewards. */
export async function resolveRewards(specs: readonly RewardSpec[], options: { randomProbability?: number } = {}): Promise<ResolvedReward[]> {
  const out: ResolvedReward[] = [];
  for (const spec of specs) {
    if (spec.kind === 'module') {
      out.push({ ...spec, needsModelStats: false, needsAnswer: false, fn: await loadUserReward(spec.name) });
      continue;
    }
    if (!isBuiltin(spec.name)) throw new InvalidArgumentError('rewards', `a known reward (${Object.keys(REWARDS).join(', ')})`, JSON.stringify(spec.name));
    const info = REWARDS[spec.name];
    out.push({ ...spec, needsModelStats: info.needsModelStats, needsAnswer: info.needsAnswer, fn: info.needsModelStats ? null : builtinReward(spec.name as TextRewardName, options) });
  }
  return out;
}
