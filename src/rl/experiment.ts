/**
 * The arithmetic of `intuitor experiment rewards` (src/cli/run.ts), kept pure for tests: what one
 * run's metrics say (held-out accuracy curve, peak, where a label-free rule would have stopped and
 * the accuracy of the checkpoint it would have kept, the sampled share of the reasoning mode before
 * and after), and the aggregate over seeds of a base × reward cell.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import type { MetricValue } from '../train/metrics-log.js';
import { probeModeStop } from './monitors.js';

export type RunRecords = readonly Record<string, MetricValue>[];

/**
 * A label-free stopping rule: the first step (≥ 1) at which it fires, or null. It reads only
 * label-free metrics. `keeps` says which checkpoint stopping there keeps: 'last-before' (default;
 * a collapse rule: the weights of the step it fires on are the suspect ones) or 'next' (a rule that
 * says the run has done what it can: train on to the next checkpoint, at most evalEvery − 1 more
 * steps, and keep that one).
 */
export type StopRule = ((records: RunRecords) => number | null) & { keeps?: 'last-before' | 'next' };

const num = (r: Record<string, MetricValue>, key: string): number | null => (typeof r[key] === 'number' && Number.isFinite(r[key]) ? (r[key] as number) : null);

/** The collapse monitors' call (src/rl/monitors.ts): the first step flagged `collapse`, where --stop-on-collapse stops. */
export const collapseStop: StopRule = (records) => {
  const hit = records.find((r) => num(r, 'step')! >= 1 && r.collapse === 1);
  return hit === undefined ? null : (hit.step as number);
};

/**
 * Probe drift: the first step at which the greedy answers of the collapse monitor's fixed probe set
 * (labels unseen) have agreed with the start model's on fewer than PROBE_DRIFT_AGREEMENT of the
 * probes for 2 consecutive steps. Cheap and label-free, but it cannot tell learning from harm: it
 * stops a verifier-driven run that is improving as readily as a collapsing one. Its threshold was
 * set after looking at the recorded runs of issue 15 (not chosen on a validation split).
 */
export const probeDriftStop: StopRule = (records) => {
  let streak = 0;
  for (const r of records) {
    const agreement = num(r, 'probe_agreement');
    if (num(r, 'step') === null || (r.step as number) < 1 || agreement === null) continue;
    streak = agreement < PROBE_DRIFT_AGREEMENT ? streak + 1 : 0;
    if (streak >= 2) return r.step as number;
  }
  return null;
};

/** 0.75: a quarter of 16 probe answers changed. */
export const PROBE_DRIFT_AGREEMENT = 0.75;

/** [step, accuracy] of every held-out evaluation of a run (step 0 is the start model), in step order. */
export function accuracyCurve(records: RunRecords): Array<[number, number]> {
  return records.filter((r) => num(r, 'eval_accuracy') !== null && num(r, 'step') !== null).map((r) => [r.step as number, r.eval_accuracy as number]);
}

/**
 * The held-out accuracy of the checkpoint a rule stopping at `stopStep` keeps: with 'last-before',
 * the last evaluation strictly before it (checkpoints are saved where evaluations are, every
 * evalEvery steps; the stopping step's own weights are the suspect ones), the start model's when
 * none; with 'next', the first evaluation at or after it (the run trains on to its next checkpoint);
 * the final accuracy when the rule never fired.
 */
export function accuracyAtStop(curve: ReadonlyArray<readonly [number, number]>, stopStep: number | null, keeps: 'last-before' | 'next' = 'last-before'): number {
  if (curve.length === 0) throw new InvalidArgumentError('curve', 'at least one evaluation', describe(curve));
  if (stopStep === null) return curve.at(-1)![1];
  if (keeps === 'next') return (curve.find(([step]) => step >= stopStep) ?? curve.at(-1)!)[1];
  let kept = curve[0]![1];
  for (const [step, accuracy] of curve) if (step < stopStep) kept = accuracy;
  return kept;
}

export interface RunSummary {
  before: number;
  after: number;
  peak: number;
  peakStep: number;
  /** Per rule name: the step it fired (null: never) and the accuracy of the checkpoint it keeps. */
  stops: Record<string, { step: number | null; accuracy: number }>;
  /** Sampled share of the reasoning mode at the first and the last step (null for tasks without modes). */
  modeBefore: number | null;
  modeAfter: number | null;
}

export function summarizeRun(records: RunRecords, rules: Record<string, StopRule>, reasoningMode?: string): RunSummary {
  const curve = accuracyCurve(records);
  if (curve.length === 0) throw new InvalidArgumentError('records', 'metrics with at least one eval_accuracy', describe(records.length));
  let [peakStep, peak] = curve[0]!;
  for (const [step, accuracy] of curve) if (accuracy > peak) [peakStep, peak] = [step, accuracy];
  const steps = records.filter((r) => num(r, 'step')! >= 1);
  const key = reasoningMode === undefined ? null : `mode/${reasoningMode}`;
  return {
    before: curve[0]![1], after: curve.at(-1)![1], peak, peakStep,
    stops: Object.fromEntries(Object.entries(rules).map(([name, rule]) => {
      const step = rule(records);
      return [name, { step, accuracy: accuracyAtStop(curve, step, rule.keeps) }];
    })),
    modeBefore: key === null ? null : num(steps[0] ?? {}, key), modeAfter: key === null ? null : num(steps.at(-1) ?? {}, key),
  };
}

export interface Spread {
  mean: number;
  min: number;
  max: number;
}

export function spread(values: readonly number[]): Spread {
  if (values.length === 0) throw new InvalidArgumentError('values', 'at least one value', '[]');
  let sum = 0;
  for (const v of values) sum += v;
  return { mean: sum / values.length, min: Math.min(...values), max: Math.max(...values) };
}

/**
 * Probe modes settled (probeModeStop in src/rl/monitors.ts): the greedy answers to the monitor's 16
 * fixed probe prompts (no labels) have all but switched to one answer mode. Keeps the next
 * checkpoint: the selection of a mode is what a label-free reward can do on such a base, and it is
 * done; the collapse that may follow is what the run should not wait for.
 */
export const probeModeSettledStop: StopRule = Object.assign((records: RunRecords) => probeModeStop(records), { keeps: 'next' as const });
