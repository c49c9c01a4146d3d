/**
 * Collapse monitors. Self-certainty is a reward the policy can raise without solving anything: on
 * tiny models trained from scratch, GRPO on self-certainty alone drifts within ~50 steps to one
 * confident, prompt-independent answer (e.g. "9501" for every prompt). INTUITOR (Zhao et al., 2025)
 * reports such reward hacking when self-certainty comes from a fixed (offline) model, and Shao et
 * al. (2025) show rewards unrelated to correctness still move a policy strongly, so a rising reward
 * says little about a run's health. These monitors make collapse visible every step and let the
 * trainer stop:
 *
 * - answer diversity: distinct final answers per prompt in the batch (collapse → 1/prompts);
 * - cross-prompt dependence: how much more self-certain a response is under its own prompt than
 *   under another prompt of the batch (collapse → 0: the prompt no longer matters), averaged over
 *   a window of steps because one batch's value is noisy;
 * - length drift: mean response length relative to the first step (collapse to empty or to
 *   max-length loops);
 * - probe agreement: the share of a fixed probe set whose greedy answer is still the first step's.
 *
 * A policy can collapse two ways, and both have been seen: onto one confident answer for every
 * prompt (the PyTorch miniature of this project's brief), or into noise that no longer depends on
 * the prompt (intuitor's own self-certainty run on the shipped addition base: responses ran to the
 * length limit, every probe answer changed and cross-prompt dependence fell from 0.33 to ≈ 0, while
 * answer diversity ROSE because every garbled answer is distinct).
 *
 * CollapseMonitor compares each step with the start of the run (the baselines) and raises
 * `collapsed` when its rule (see the class), with thresholds DEFAULT_COLLAPSE_THRESHOLDS unless
 * given, holds on `patience` consecutive checks.
 * All measures are pure functions of their inputs, summed in index order (reproducible bit for bit).
 */
import { InvalidArgumentError, describe } from '../errors.js';
import { canonicalAnswer } from './selection.js';

function checkAnswers(name: string, answers: readonly (string | null)[]): void {
  if (!Array.isArray(answers) || answers.length === 0) throw new InvalidArgumentError(name, 'a non-empty array of answers (string or null)', describe(answers));
  answers.forEach((a, i) => {
    if (a !== null && typeof a !== 'string') throw new InvalidArgumentError(`${name}[${i}]`, 'a string or null', describe(a));
  });
}

function checkPositive(name: string, value: number): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new InvalidArgumentError(name, 'a finite number > 0', describe(value));
}

/**
 * Distinct final answers in the batch ÷ the number of prompts. Answers are grouped by
 * canonicalAnswer ("0.5" = "1/2"). "No answer" (null, or empty after normalisation) counts as ONE
 * distinct value: a policy that stops answering has collapsed onto one behaviour just as one that
 * always answers "9501" has, and counting it keeps the step-0 value of a weak policy (mostly no
 * answers) above zero, so ratios to it stay defined. With G samples per prompt the value can exceed
 * 1; a healthy batch of distinct problems sits near or above 1, a collapsed one at 1/prompts.
 */
export function answerDiversity(answers: readonly (string | null)[], prompts: number): number {
  checkAnswers('answers', answers);
  if (!Number.isSafeInteger(prompts) || prompts < 1) throw new InvalidArgumentError('prompts', 'a positive integer', describe(prompts));
  const distinct = new Set(answers.map((a) => canonicalAnswer(a)));
  return distinct.size / prompts;
}

/**
 * Mean over responses of SC(response | its prompt) − SC(response | another prompt of the batch).
 * A policy that reads its prompt is more certain of a response under the prompt that produced it;
 * near 0 means the responses no longer depend on the prompt. Pair each response with another
 * prompt with otherPromptIndices.
 */
export function crossPromptDependence(scTrue: ArrayLike<number>, scShuffled: ArrayLike<number>): number {
  if (scTrue === null || typeof scTrue !== 'object' || typeof scTrue.length !== 'number' || scTrue.length === 0) throw new InvalidArgumentError('scTrue', 'a non-empty array of self-certainties', describe(scTrue));
  if (scShuffled === null || typeof scShuffled !== 'object' || scShuffled.length !== scTrue.length) {
    throw new InvalidArgumentError('scShuffled', `an array of ${scTrue.length} self-certainties (one per response, like scTrue)`, describe(scShuffled));
  }
  let sum = 0;
  for (let i = 0; i < scTrue.length; i++) {
    const own = scTrue[i]!;
    const other = scShuffled[i]!;
    if (!Number.isFinite(own)) throw new InvalidArgumentError(`scTrue[${i}]`, 'a finite number', describe(own));
    if (!Number.isFinite(other)) throw new InvalidArgumentError(`scShuffled[${i}]`, 'a finite number', describe(other));
    sum += own - other;
  }
  return sum / scTrue.length;
}

/**
 * For each prompt, the prompt whose context re-scores its responses in crossPromptDependence: the
 * next one, cyclically (i → i + 1 mod P). A rotation always picks ANOTHER prompt, needs no random
 * state (so a resumed run re-scores the same pairs) and uses every prompt once as the "other".
 */
export function otherPromptIndices(prompts: number): Int32Array {
  if (!Number.isSafeInteger(prompts) || prompts < 2) throw new InvalidArgumentError('prompts', 'an integer ≥ 2 (a response needs another prompt to be re-scored under)', describe(prompts));
  return Int32Array.from({ length: prompts }, (_, i) => (i + 1) % prompts);
}

/** Mean response length ÷ its baseline (the first step's): 1 = unchanged. */
export function lengthDrift(meanLength: number, baselineMeanLength: number): number {
  if (typeof meanLength !== 'number' || !Number.isFinite(meanLength) || meanLength < 0) throw new InvalidArgumentError('meanLength', 'a finite number ≥ 0', describe(meanLength));
  checkPositive('baselineMeanLength', baselineMeanLength);
  return meanLength / baselineMeanLength;
}

/**
 * The fraction of probe prompts whose greedy answer (canonicalAnswer) equals the baseline
 * policy's. Two "no answer"s agree: the behaviour did not change.
 */
export function probeAgreement(answers: readonly (string | null)[], baselineAnswers: readonly (string | null)[]): number {
  checkAnswers('answers', answers);
  checkAnswers('baselineAnswers', baselineAnswers);
  if (baselineAnswers.length !== answers.length) throw new InvalidArgumentError('baselineAnswers', `${answers.length} answers (one per probe prompt, like answers)`, describe(baselineAnswers));
  let same = 0;
  for (let i = 0; i < answers.length; i++) if (canonicalAnswer(answers[i]!) === canonicalAnswer(baselineAnswers[i]!)) same++;
  return same / answers.length;
}

/**
 * When CollapseMonitor calls a step collapsed. The values are judgement calls, set against the
 * failure they target (one confident answer for every prompt) and the healthy changes they must
 * let through (answers changing as the policy learns, responses growing longer under INTUITOR);
 * each is relative to the run's own first step, so tasks with few distinct answers are judged
 * against themselves.
 */
export interface CollapseThresholds {
  /**
   * Diversity is "collapsed" below this fraction of the baseline. 0.25: the "9501" collapse takes a
   * batch of P distinct problems from ≈1 to 1/P (0.03 at P = 32), far below; sampling noise and
   * honest convergence (many problems sharing small answers) move it by far less than 4×.
   * Every collapse rule needs this (or, for length, lengthDiversityFraction): diversity loss is
   * the one signal that is never a sign of healthy learning.
   */
  diversityFraction: number;
  /**
   * Cross-prompt dependence is "gone" when its mean over the last `crossPromptWindow` steps is
   * below this fraction of the baseline (the mean of the first `crossPromptWindow` steps). 0.25: a
   * collapsed policy scores a response the same under any prompt (→ 0); learning makes responses
   * more specific to their prompts, not less, so a 4× drop of a windowed mean is not noise.
   */
  crossPromptFraction: number;
  /**
   * Steps averaged for cross-prompt dependence, in the baseline and in each check. 5: one batch of
   * 16 prompts measured 0.33 at the start of a healthy ground-truth run and then anywhere in
   * −0.06 … 0.46 (three steps in a row below a quarter of 0.33), while its 5-step means stayed in
   * 0.089 … 0.27 (baseline 0.16); the self-certainty run's fell below a quarter of its baseline
   * at step 16.
   */
  crossPromptWindow: number;
  /**
   * A baseline cross-prompt dependence at or below this (nats) disables that test: the first-step
   * policy already ignored its prompt and a ratio would compare noise with noise. 1e-3 nats: over a
   * thousand times the float32 rounding of a mean self-certainty of a few nats, yet far below a
   * dependence that says a policy reads its prompt.
   */
  crossPromptBaselineMin: number;
  /**
   * Probe answers have "drifted" below this agreement with the baseline. 0.5: most probe answers
   * changed. Learning changes answers too (ground-truth GRPO on the shipped base, +13 points of
   * held-out accuracy, ended at exactly 0.5), which is why drift only counts together with
   * another signal.
   */
  probeAgreementMin: number;
  /**
   * Mean length relative to the baseline outside [min, max] is a length collapse when diversity is
   * also below lengthDiversityFraction, or the probes have drifted. [0.5, 2]: halving (towards empty
   * answers) or doubling (towards max-length loops); healthy INTUITOR runs lengthen responses,
   * gradually, so length alone never counts.
   */
  lengthDriftMin: number;
  lengthDriftMax: number;
  /**
   * The diversity loss that, with length out of range, marks a length collapse. 0.5: looser than
   * diversityFraction because a length collapse (empty or truncated responses) loses answers into
   * one "no answer" value gradually, and the length change is itself strong evidence.
   */
  lengthDiversityFraction: number;
  /** Consecutive checks the rule must hold before `collapsed`. 2: one noisy batch never stops a run; a real collapse persists. */
  patience: number;
}

export const DEFAULT_COLLAPSE_THRESHOLDS: Readonly<CollapseThresholds> = Object.freeze({
  diversityFraction: 0.25,
  crossPromptFraction: 0.25,
  crossPromptWindow: 5,
  crossPromptBaselineMin: 1e-3,
  probeAgreementMin: 0.5,
  lengthDriftMin: 0.5,
  lengthDriftMax: 2,
  lengthDiversityFraction: 0.5,
  patience: 2,
});

/** One step's raw measurements. The optional ones may be taken only on some steps. */
export interface CollapseMeasurements {
  step: number;
  /** The batch's final answers (null = none), every sample of every prompt. */
  answers: readonly (string | null)[];
  /** Prompts in the batch. */
  prompts: number;
  /** Mean response length (tokens) over the batch. */
  meanLength: number;
  /** Each response's self-certainty under its own prompt, and under another prompt (otherPromptIndices). */
  scTrue?: ArrayLike<number>;
  scShuffled?: ArrayLike<number>;
  /** Greedy answers on the fixed probe set, in probe order. */
  probeAnswers?: readonly (string | null)[];
}

export interface CollapseReport {
  step: number;
  diversity: number;
  /** Cross-prompt dependence (nats) of this step's batch, null when not measured this step. */
  crossPromptSc: number | null;
  /** Its mean over the last crossPromptWindow measured steps (null when not measured this step). */
  crossPromptScMean: number | null;
  lengthDrift: number;
  /** Null when the probe set was not run this step. */
  probeAgreement: number | null;
  /** The rule has held on `patience` consecutive checks up to this one. */
  collapsed: boolean;
  /** Why the rule holds this step (empty when it does not), for logs. */
  reasons: string[];
}

/** Baselines and streak: everything a resumed run needs to carry on judging as before (JSON-safe). */
export interface CollapseMonitorState {
  baseline: {
    diversity: number | null;
    /** The mean of the first crossPromptWindow measurements (null until there are that many). */
    crossPromptSc: number | null;
    meanLength: number | null;
    probeAnswers: (string | null)[] | null;
  };
  /** The cross-prompt measurements the baseline is still collecting, and the last window of them. */
  crossPromptFirst: number[];
  crossPromptRecent: number[];
  streak: number;
}

const fmt = (x: number): string => (Number.isInteger(x) ? String(x) : x.toPrecision(3));

/** Mean in index order (bit-reproducible). */
function meanOf(values: readonly number[]): number {
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}

/**
 * Watches a run for collapse. Each baseline is the first value of its measurement the monitor
 * sees (step 0 in a fresh run; restore the state on resume). The rule, with t = thresholds:
 *
 *   diversityLow   = diversity < t.diversityFraction · baseline
 *   promptIgnored  = mean of the last window of crossPromptSc < t.crossPromptFraction · baseline
 *                    (baseline: mean of the first window, > t.crossPromptBaselineMin)
 *   probesDrifted  = probeAgreement < t.probeAgreementMin
 *   lengthOut      = lengthDrift ∉ [t.lengthDriftMin, t.lengthDriftMax]
 *   suspect        = diversityLow and (promptIgnored or probesDrifted)                one answer for all
 *                 or promptIgnored and probesDrifted                                   noise for all
 *                 or lengthOut and (diversity < t.lengthDiversityFraction · baseline  empty or runaway
 *                                   or probesDrifted)
 *
 * and `collapsed` once `suspect` held on t.patience consecutive checks. No signal counts alone: a
 * task whose answers truly converge (or a tiny batch) loses diversity while the policy still reads
 * its prompts, learning changes probe answers, and INTUITOR lengthens responses. Measurements
 * absent on a step (no scTrue, no probeAnswers) count as not showing collapse, so the rule never
 * fires on missing data.
 */
export class CollapseMonitor {
  readonly thresholds: Readonly<CollapseThresholds>;
  private baseline: CollapseMonitorState['baseline'] = { diversity: null, crossPromptSc: null, meanLength: null, probeAnswers: null };
  private crossPromptFirst: number[] = [];
  private crossPromptRecent: number[] = [];
  private streak = 0;

  constructor(thresholds: Partial<CollapseThresholds> = {}, state?: CollapseMonitorState) {
    const t = { ...DEFAULT_COLLAPSE_THRESHOLDS, ...thresholds };
    for (const key of ['diversityFraction', 'crossPromptFraction', 'lengthDiversityFraction', 'probeAgreementMin'] as const) {
      if (!(t[key] >= 0 && t[key] <= 1)) throw new InvalidArgumentError(`thresholds.${key}`, 'a number in [0, 1]', describe(t[key]));
    }
    if (!(t.crossPromptBaselineMin >= 0 && Number.isFinite(t.crossPromptBaselineMin))) throw new InvalidArgumentError('thresholds.crossPromptBaselineMin', 'a finite number ≥ 0', describe(t.crossPromptBaselineMin));
    if (!(t.lengthDriftMin >= 0 && t.lengthDriftMin <= 1)) throw new InvalidArgumentError('thresholds.lengthDriftMin', 'a number in [0, 1]', describe(t.lengthDriftMin));
    if (!(t.lengthDriftMax >= 1)) throw new InvalidArgumentError('thresholds.lengthDriftMax', 'a number ≥ 1', describe(t.lengthDriftMax));
    if (!Number.isSafeInteger(t.patience) || t.patience < 1) throw new InvalidArgumentError('thresholds.patience', 'a positive integer', describe(t.patience));
    if (!Number.isSafeInteger(t.crossPromptWindow) || t.crossPromptWindow < 1) throw new InvalidArgumentError('thresholds.crossPromptWindow', 'a positive integer', describe(t.crossPromptWindow));
    this.thresholds = Object.freeze(t);
    if (state !== undefined) {
      if (state === null || typeof state !== 'object' || typeof state.baseline !== 'object' || !Number.isSafeInteger(state.streak) || state.streak < 0
        || !Array.isArray(state.crossPromptFirst) || !Array.isArray(state.crossPromptRecent)) {
        throw new InvalidArgumentError('state', 'a CollapseMonitorState from state()', describe(state));
      }
      this.baseline = { ...state.baseline, probeAnswers: state.baseline.probeAnswers === null ? null : [...state.baseline.probeAnswers] };
      this.crossPromptFirst = [...state.crossPromptFirst];
      this.crossPromptRecent = [...state.crossPromptRecent];
      this.streak = state.streak;
    }
  }

  /** A JSON-safe copy of the baselines and streak, for checkpoints. */
  state(): CollapseMonitorState {
    return {
      baseline: { ...this.baseline, probeAnswers: this.baseline.probeAnswers === null ? null : [...this.baseline.probeAnswers] },
      crossPromptFirst: [...this.crossPromptFirst], crossPromptRecent: [...this.crossPromptRecent], streak: this.streak,
    };
  }

  /** Judges one step's measurements (see the class comment). */
  update(m: CollapseMeasurements): CollapseReport {
    if (m === null || typeof m !== 'object') throw new InvalidArgumentError('measurements', 'a CollapseMeasurements object', describe(m));
    if (!Number.isSafeInteger(m.step) || m.step < 0) throw new InvalidArgumentError('measurements.step', 'an integer ≥ 0', describe(m.step));
    const t = this.thresholds;
    const diversity = answerDiversity(m.answers, m.prompts);
    if ((m.scTrue === undefined) !== (m.scShuffled === undefined)) throw new InvalidArgumentError('measurements.scShuffled', 'given together with scTrue, or neither', describe(m.scShuffled));
    const crossPromptSc = m.scTrue === undefined ? null : crossPromptDependence(m.scTrue, m.scShuffled!);
    // Zero-length responses are possible at a collapse, but not as the baseline a ratio divides by.
    if (this.baseline.meanLength === null) checkPositive('measurements.meanLength (the baseline step)', m.meanLength);
    const drift = lengthDrift(m.meanLength, this.baseline.meanLength ?? m.meanLength);
    const agreement = m.probeAnswers === undefined ? null : probeAgreement(m.probeAnswers, this.baseline.probeAnswers ?? m.probeAnswers);
    // Every input is valid: only now take the baselines this step provides, so a refused step leaves the monitor as it was.
    const b = this.baseline;
    b.meanLength ??= m.meanLength;
    b.diversity ??= diversity;
    if (m.probeAnswers !== undefined) b.probeAnswers ??= [...m.probeAnswers];
    let crossPromptScMean: number | null = null;
    if (crossPromptSc !== null) {
      if (b.crossPromptSc === null) {
        this.crossPromptFirst.push(crossPromptSc);
        if (this.crossPromptFirst.length === t.crossPromptWindow) {
          b.crossPromptSc = meanOf(this.crossPromptFirst);
          this.crossPromptFirst = [];
        }
      }
      this.crossPromptRecent = [...this.crossPromptRecent, crossPromptSc].slice(-t.crossPromptWindow);
      crossPromptScMean = meanOf(this.crossPromptRecent);
    }

    const diversityLow = diversity < t.diversityFraction * b.diversity;
    const promptIgnored = crossPromptScMean !== null && b.crossPromptSc !== null && b.crossPromptSc > t.crossPromptBaselineMin && crossPromptScMean < t.crossPromptFraction * b.crossPromptSc;
    const probesDrifted = agreement !== null && agreement < t.probeAgreementMin;
    const lengthOut = drift < t.lengthDriftMin || drift > t.lengthDriftMax;
    const lengthDiversityLow = diversity < t.lengthDiversityFraction * b.diversity;
    const why = {
      diversity: `answer diversity ${fmt(diversity)} < ${t.diversityFraction} × baseline ${fmt(b.diversity)}`,
      prompt: () => `cross-prompt self-certainty (mean of ${this.crossPromptRecent.length} steps) ${fmt(crossPromptScMean!)} < ${t.crossPromptFraction} × baseline ${fmt(b.crossPromptSc!)}`,
      probes: `probe agreement ${fmt(agreement ?? 1)} < ${t.probeAgreementMin}`,
      length: `length drift ${fmt(drift)} outside [${t.lengthDriftMin}, ${t.lengthDriftMax}]`,
      lengthDiversity: `answer diversity ${fmt(diversity)} < ${t.lengthDiversityFraction} × baseline ${fmt(b.diversity)}`,
    };
    const reasons = new Set<string>();
    if (diversityLow && (promptIgnored || probesDrifted)) {
      reasons.add(why.diversity);
      if (promptIgnored) reasons.add(why.prompt());
      if (probesDrifted) reasons.add(why.probes);
    }
    if (promptIgnored && probesDrifted) {
      reasons.add(why.prompt());
      reasons.add(why.probes);
    }
    if (lengthOut && (lengthDiversityLow || probesDrifted)) {
      reasons.add(why.length);
      reasons.add(lengthDiversityLow ? why.lengthDiversity : why.probes);
    }
    this.streak = reasons.size > 0 ? this.streak + 1 : 0;
    return { step: m.step, diversity, crossPromptSc, crossPromptScMean, lengthDrift: drift, probeAgreement: agreement, collapsed: this.streak >= t.patience, reasons: [...reasons] };
  }
}

/**
 * The end-of-run summary of a run's reports: 'collapsed at step N' with N the first step reported
 * collapsed (where a stopping trainer stops), else 'stable'.
 */
export function collapseVerdict(history: readonly CollapseReport[]): string {
  if (!Array.isArray(history)) throw new InvalidArgumentError('history', 'an array of CollapseReport', describe(history));
  const first = history.find((r) => r.collapsed);
  return first === undefined ? 'stable' : `collapsed at step ${first.step}`;
}

/**
 * A label-free stopping rule for tasks with answer modes (issue 15): stop once the sampled
 * completions have settled on one mode, i.e. one mode's share (the metrics' `mode/<name>`
 * columns; 'none' excluded) is at least SATURATION_SHARE on SATURATION_PATIENCE consecutive steps,
 * for a mode that was below that share at the first step. What a label-free reward can do on such a
 * base is select among the behaviours the base already has; once one has won, further updates only
 * sharpen it and, on self-certainty, drift towards the confident-noise collapse the other monitors
 * catch later. Returns that step, or null (never, or no mode columns).
 */
export function saturationStop(records: readonly Record<string, unknown>[]): number | null {
  return modeSettledStep(records, 'mode', SATURATION_SHARE, SATURATION_PATIENCE);
}

/**
 * The first step (≥ 1) at which one answer mode's share in the `prefix/<mode>` columns ('none'
 * excluded) is at least `share` on `patience` consecutive steps that carry those columns, for a mode
 * that was below `share` in the first record that carries them (step 0, the start model, where it
 * does); null when never (or no such columns).
 */
export function modeSettledStep(records: readonly Record<string, unknown>[], prefix: string, share: number, patience: number): number | null {
  const carrying = records.filter((r) => typeof r.step === 'number' && r.step >= 0 && Object.keys(r).some((k) => k.startsWith(`${prefix}/`) && typeof r[k] === 'number'));
  const steps = carrying.filter((r) => (r.step as number) >= 1);
  if (steps.length === 0) return null;
  const first = carrying[0]!;
  const modes = Object.keys(first).filter((k) => k.startsWith(`${prefix}/`) && k !== `${prefix}/none` && typeof first[k] === 'number');
  const open = modes.filter((k) => (first[k] as number) < share);
  let streak = 0;
  for (const r of steps) {
    streak = open.some((k) => typeof r[k] === 'number' && (r[k] as number) >= share) ? streak + 1 : 0;
    if (streak >= patience) return r.step as number;
  }
  return null;
}

/**
 * A label-free stopping rule for tasks with answer modes that reads the greedy answers rather than
 * the samples: stop once the greedy answers to the collapse monitor's fixed probe prompts (no labels;
 * the `probe_mode/<name>` columns, every step) have settled on one mode, i.e. one mode's share is at
 * least PROBE_MODE_SHARE on PROBE_MODE_PATIENCE consecutive steps, for a mode below that at the first
 * step. Held-out accuracy is greedy, so what a label-free reward can gain on such a base is won
 * when the greedy answers have switched mode; the sampled share (saturationStop) lags behind them.
 */
export function probeModeStop(records: readonly Record<string, unknown>[]): number | null {
  return modeSettledStep(records, 'probe_mode', PROBE_MODE_SHARE, PROBE_MODE_PATIENCE);
}

/** 0.95: with 128 samples a step, a mode that has all but 6 of them; below that a minority mode is still sampled and still being selected against. */
export const SATURATION_SHARE = 0.95;
/** 2 consecutive steps, as the collapse rule's patience: one lucky batch does not stop a run. */
export const SATURATION_PATIENCE = 2;
/** Chosen on validation runs (bench/results/recipe-search-addition-modes-node-2core-2026-12-06.md). */
export const PROBE_MODE_SHARE = 0.9;
export const PROBE_MODE_PATIENCE = 2;
