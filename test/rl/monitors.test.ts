/**
 * Collapse monitors: each measure on hand-computed inputs, then CollapseMonitor on synthetic runs:
 * a healthy run (answers change, lengths grow), the "9501 for every prompt" collapse, length
 * collapses both ways, and noise that must not trigger (one bad batch, diversity loss alone,
 * length change alone, missing measurements).
 */
import { InvalidArgumentError } from '../../src/errors.js';
import {
  CollapseMonitor,
  DEFAULT_COLLAPSE_THRESHOLDS,
  answerDiversity,
  collapseVerdict,
  crossPromptDependence,
  lengthDrift,
  otherPromptIndices,
  probeAgreement,
  type CollapseMeasurements,
  type CollapseReport,
} from '../../src/rl/monitors.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

describe('measures', () => {
  test('answerDiversity: distinct canonical answers per prompt; all no-answers are one value', () => {
    expect(answerDiversity(['1', '2', '0.5', '1/2'], 2)).toBe(3 / 2);
    expect(answerDiversity([null, null, '', '\\boxed{}'], 4)).toBe(1 / 4);
    expect(answerDiversity([null, '9501', '9501', '9501.0'], 4)).toBe(2 / 4);
    expect(() => answerDiversity([], 1)).toThrow(/answers: expected a non-empty array/);
    expect(() => answerDiversity(['1'], 0)).toThrow(/prompts: expected a positive integer/);
    expect(() => answerDiversity([3 as never], 1)).toThrow(/answers\[0\]: expected a string or null/);
  });

  test('crossPromptDependence: the mean of own − other, in order', () => {
    expectClose('dependence', [crossPromptDependence([3, 2.5, 1], Float32Array.from([2, 2.5, 1.5]))], [(1 + 0 - 0.5) / 3], TOLERANCES.rlHost);
    expect(crossPromptDependence([1, 1], [1, 1])).toBe(0);
    expect(() => crossPromptDependence([1, 2], [1])).toThrow(/scShuffled: expected an array of 2 self-certainties/);
    expect(() => crossPromptDependence([], [])).toThrow(/scTrue: expected a non-empty array/);
    expect(() => crossPromptDependence([1, NaN], [1, 1])).toThrow(/scTrue\[1\]: expected a finite number, got NaN/);
  });

  test('otherPromptIndices: a rotation, never the prompt itself', () => {
    expect([...otherPromptIndices(4)]).toEqual([1, 2, 3, 0]);
    expect([...otherPromptIndices(2)]).toEqual([1, 0]);
    expect(() => otherPromptIndices(1)).toThrow(/prompts: expected an integer ≥ 2/);
  });

  test('lengthDrift: the ratio to the baseline', () => {
    expect(lengthDrift(30, 20)).toBe(1.5);
    expect(lengthDrift(0, 20)).toBe(0);
    expect(() => lengthDrift(10, 0)).toThrow(/baselineMeanLength: expected a finite number > 0/);
    expect(() => lengthDrift(-1, 5)).toThrow(/meanLength/);
  });

  test('probeAgreement: canonical equality per probe; no answer equals no answer', () => {
    expect(probeAgreement(['1', '0.5', null, '4'], ['1', '1/2', null, '5'])).toBe(3 / 4);
    expect(() => probeAgreement(['1'], ['1', '2'])).toThrow(/baselineAnswers: expected 1 answers/);
  });
});

// Synthetic runs: 8 prompts × 4 samples, 10 probe prompts.
const P = 8;
const G = 4;
const PROBES = 10;

/** Each prompt's samples answer 100p, 100p, 100p + 2, 100p + 3: 24 distinct answers, diversity 3. */
const healthyAnswers = (): string[] => Array.from({ length: P * G }, (_, i) => {
  const p = Math.floor(i / G);
  const g = i % G;
  return String(100 * p + (g < 2 ? 0 : g));
});
const BASE_PROBES = Array.from({ length: PROBES }, (_, i) => String(i));

interface Shape {
  answers?: (string | null)[];
  /** Own − other self-certainty of every response. */
  dependence?: number;
  meanLength?: number;
  probes?: (string | null)[];
}

function measure(step: number, shape: Shape = {}): CollapseMeasurements {
  const scTrue = new Float64Array(P * G).fill(2.5);
  return {
    step,
    answers: shape.answers ?? healthyAnswers(),
    prompts: P,
    meanLength: shape.meanLength ?? 40,
    scTrue,
    scShuffled: scTrue.map((v) => v - (shape.dependence ?? 0.5)),
    probeAnswers: shape.probes ?? BASE_PROBES,
  };
}

function run(monitor: CollapseMonitor, steps: CollapseMeasurements[]): CollapseReport[] {
  return steps.map((m) => monitor.update(m));
}

const collapsedFrom = (from: number) => (step: number): Shape =>
  step < from ? {} : { answers: new Array<string>(P * G).fill('9501'), dependence: 0.01, probes: new Array<string>(PROBES).fill('9501') };

describe('CollapseMonitor on synthetic runs', () => {
  test('the defaults are the documented ones', () => {
    expect({ ...DEFAULT_COLLAPSE_THRESHOLDS }).toEqual({
      diversityFraction: 0.25, crossPromptFraction: 0.25, crossPromptWindow: 5, crossPromptBaselineMin: 1e-3, probeAgreementMin: 0.5,
      lengthDriftMin: 0.5, lengthDriftMax: 2, lengthDiversityFraction: 0.5, patience: 2,
    });
  });

  test('a healthy run: answers change on most probes and responses grow 1.6× — stable', () => {
    const steps = Array.from({ length: 30 }, (_, step) => {
      const changed = Math.min(7, Math.floor(step / 4)); // up to 7 of 10 probe answers change as the policy learns
      const probes = BASE_PROBES.map((a, i) => (i < changed ? String(Number(a) + 100) : a));
      // Answers converge on some prompts (diversity 3 → 2), dependence grows, length grows.
      const answers = healthyAnswers().map((a, i) => (step > 15 && i % G === 3 ? String(100 * Math.floor(i / G)) : a));
      return measure(step, { probes, answers, dependence: 0.5 + step / 60, meanLength: 40 * (1 + (0.6 * step) / 29) });
    });
    const history = run(new CollapseMonitor(), steps);
    expect(history.every((r) => !r.collapsed && r.reasons.length === 0)).toBe(true);
    expect(history[29]).toMatchObject({ diversity: 2, probeAgreement: 0.3 });
    expectClose('length drift', [history[29]!.lengthDrift], [1.6], TOLERANCES.rlHost);
    expect(collapseVerdict(history)).toBe('stable');
  });

  test('"9501 for every prompt" from step 5: suspect at 5, collapsed at 6 (patience 2), every signal named', () => {
    const shape = collapsedFrom(5);
    const history = run(new CollapseMonitor(), Array.from({ length: 10 }, (_, step) => measure(step, shape(step))));
    expect(history.slice(0, 5).every((r) => r.reasons.length === 0)).toBe(true);
    expect(history[5]).toMatchObject({ step: 5, collapsed: false, diversity: 1 / 8, probeAgreement: 0 });
    expect(history[6]!.collapsed).toBe(true);
    expect(history[6]!.reasons).toEqual(['answer diversity 0.125 < 0.25 × baseline 3', 'probe agreement 0 < 0.5']);
    // The cross-prompt signal is a 5-step mean: it joins once the window holds collapsed steps only.
    expect(history[7]!.reasons).toHaveLength(2);
    expect(history[9]!.reasons).toEqual([
      'answer diversity 0.125 < 0.25 × baseline 3',
      'cross-prompt self-certainty (mean of 5 steps) 0.0100 < 0.25 × baseline 0.500',
      'probe agreement 0 < 0.5',
    ]);
    expect(collapseVerdict(history)).toBe('collapsed at step 6');
  });

  test('the collapse is caught by either companion signal alone', () => {
    // Dependence 0 from step 5: the 5-step mean falls below 0.25 × 0.5 at step 8 (0.1).
    const onlyCross = (step: number): Shape => (step < 5 ? {} : { answers: new Array<string>(P * G).fill('9501'), dependence: 0 });
    expect(collapseVerdict(run(new CollapseMonitor(), Array.from({ length: 12 }, (_, s) => measure(s, onlyCross(s)))))).toBe('collapsed at step 9');
    const onlyProbes = (step: number): Shape => (step < 3 ? {} : { answers: new Array<string>(P * G).fill('9501'), probes: new Array<string>(PROBES).fill('9501') });
    expect(collapseVerdict(run(new CollapseMonitor(), Array.from({ length: 6 }, (_, s) => measure(s, onlyProbes(s)))))).toBe('collapsed at step 4');
  });

  test('collapse into noise: diversity rises, but responses stop depending on the prompt and the probes drift', () => {
    const noise = (step: number): Shape => (step < 5 ? {} : { answers: Array.from({ length: P * G }, (_, i) => String(7000 + i)), dependence: 0, probes: BASE_PROBES.map((a) => `x${a}`) });
    const history = run(new CollapseMonitor(), Array.from({ length: 12 }, (_, s) => measure(s, noise(s))));
    expect(history[8]).toMatchObject({ diversity: 4, crossPromptScMean: 0.1 });
    expect(history[8]!.reasons).toEqual(['cross-prompt self-certainty (mean of 5 steps) 0.100 < 0.25 × baseline 0.500', 'probe agreement 0 < 0.5']);
    expect(collapseVerdict(history)).toBe('collapsed at step 9');
    // Runaway length with drifted probes is caught even while the prompt still matters.
    const runaway = (step: number): Shape => (step < 5 ? {} : { answers: Array.from({ length: P * G }, (_, i) => String(7000 + i)), meanLength: 90, probes: BASE_PROBES.map((a) => `x${a}`) });
    const long = run(new CollapseMonitor(), Array.from({ length: 8 }, (_, s) => measure(s, runaway(s))));
    expect(long[5]!.reasons).toEqual(['length drift 2.25 outside [0.5, 2]', 'probe agreement 0 < 0.5']);
    expect(collapseVerdict(long)).toBe('collapsed at step 6');
  });

  test('replays of two measured runs (GRPO on the shipped addition base, 16 prompts × 8, probes 16): ground truth stays stable, self-certainty collapses', () => {
    // Per-step cross-prompt dependence, probe answers still as at step 0 (of 16), and length ÷ step 0, steps 1–40.
    const groundTruth = {
      cross: [0.33, 0.1, 0.14, 0.27, -0.06, 0.24, 0.11, 0.14, 0.28, 0.42, 0.3, 0.22, -0.03, 0.22, 0.19, 0.02, 0.07, 0.05, 0.17, 0.14, 0.36, 0.2, 0.26, 0.17, 0.23, 0.03, 0.34, 0.22, 0.11, 0.28, 0.39, 0.18, 0.24, 0.22, 0.3, 0.33, 0.23, 0.14, 0.26, 0.11],
      same: [16, 16, 14, 14, 13, 14, 14, 13, 13, 12, 12, 12, 12, 11, 11, 11, 10, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 9, 9, 8, 8],
      length: [1, 0.93, 0.96, 1.05, 1.07, 1.02, 0.91, 1.0, 0.97, 0.99, 1.05, 0.98, 0.99, 0.99, 0.96, 1.01, 1.02, 0.95, 1.05, 0.97, 1.06, 0.96, 1.02, 0.96, 1.02, 1.0, 0.96, 0.89, 0.99, 0.91, 1.07, 1.01, 1.05, 1.05, 1.02, 1.06, 1.07, 0.99, 0.98, 0.98],
    };
    const selfCertainty = {
      cross: [0.33, 0.13, 0.12, 0.37, 0.3, 0.38, 0.28, 0.52, 0.16, 0.26, 0.31, 0.19, -0.01, 0.25, -0.29, 0.05, 0.3, 0.26, -0.18, 0.1, -0.01, 0.09, -0.09, -0.31, -0.08, -0.05, -0.07, -0.06, -0.08, 0.2, -0.03, -0.02, 0, 0, -0.04, 0.15, -0.03, 0.01, -0.08, 0.06],
      same: [16, 16, 16, 15, 13, 12, 10, 9, 8, 8, 7, 7, 6, 5, 4, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
      length: [1, 0.94, 0.96, 1.09, 1.12, 1.07, 0.95, 1.02, 0.99, 1.05, 1.09, 1.04, 1.12, 1.15, 1.12, 1.27, 1.25, 1.22, 1.34, 1.3, 1.4, 1.32, 1.56, 1.5, 1.63, 1.68, 1.82, 1.78, 1.92, 1.8, 2.03, 2.07, 2.04, 2.1, 2.11, 2.16, 2.15, 2.18, 2.18, 2.18],
    };
    const probes16 = Array.from({ length: 16 }, (_, i) => String(i));
    const replay = (trace: typeof groundTruth) => run(new CollapseMonitor(), trace.cross.map((dependence, i) => ({
      ...measure(i + 1, { dependence, meanLength: 40 * trace.length[i]! }),
      probeAnswers: probes16.map((a, k) => (k < trace.same[i]! ? a : `x${a}`)),
    })));
    expect(collapseVerdict(replay(groundTruth))).toBe('stable');
    expect(collapseVerdict(replay(selfCertainty))).toBe('collapsed at step 17');
  });

  test('length collapse: 0.3× length, answers lost to "no answer" (diversity 9/24 of baseline), prompts still read — the length rule alone fires', () => {
    const lost = healthyAnswers().map((a, i) => (i % G === 0 ? a : null)); // 8 answers + no answer = 9 distinct
    const shape = (step: number): Shape => (step < 4 ? {} : { answers: lost, meanLength: 12 });
    const history = run(new CollapseMonitor(), Array.from({ length: 8 }, (_, s) => measure(s, shape(s))));
    expect(history[4]!.reasons).toEqual(['length drift 0.300 outside [0.5, 2]', 'answer diversity 1.13 < 0.5 × baseline 3']);
    expect(collapseVerdict(history)).toBe('collapsed at step 5');
    const long = (step: number): Shape => (step < 4 ? {} : { answers: lost, meanLength: 100 });
    expect(collapseVerdict(run(new CollapseMonitor(), Array.from({ length: 8 }, (_, s) => measure(s, long(s)))))).toBe('collapsed at step 5');
  });

  test('noise does not trigger: one bad batch, alternating bad batches, diversity loss alone, length change alone', () => {
    const oneBad = collapsedFrom(4);
    const single = run(new CollapseMonitor(), Array.from({ length: 10 }, (_, s) => measure(s, s === 4 ? oneBad(s) : {})));
    expect(single[4]!.reasons.length).toBeGreaterThan(0);
    expect(collapseVerdict(single)).toBe('stable');
    const alternating = run(new CollapseMonitor(), Array.from({ length: 12 }, (_, s) => measure(s, s % 2 === 1 ? oneBad(s) : {})));
    expect(collapseVerdict(alternating)).toBe('stable');
    // Every prompt's answer becomes "0" (a task whose answers converge), yet responses still depend on prompts and probes hold.
    const converged = run(new CollapseMonitor(), Array.from({ length: 10 }, (_, s) => measure(s, s < 2 ? {} : { answers: new Array<string>(P * G).fill('0') })));
    expect(converged.slice(2).every((r) => r.diversity < 0.25 * 3 && r.reasons.length === 0)).toBe(true);
    const lengthOnly = run(new CollapseMonitor(), Array.from({ length: 10 }, (_, s) => measure(s, s < 2 ? {} : { meanLength: s % 2 ? 10 : 150 })));
    expect(collapseVerdict(lengthOnly)).toBe('stable');
  });

  test('missing measurements never count as collapse; baselines are the first values seen', () => {
    const monitor = new CollapseMonitor();
    const bare = (step: number, answers: string[]): CollapseMeasurements => ({ step, answers, prompts: P, meanLength: 40 });
    monitor.update(bare(0, healthyAnswers()));
    const collapsed = new Array<string>(P * G).fill('9501');
    for (let s = 1; s < 5; s++) expect(monitor.update(bare(s, collapsed))).toMatchObject({ crossPromptSc: null, probeAgreement: null, reasons: [], collapsed: false });
    // The first probe run becomes the probe baseline, so it agrees with itself.
    expect(monitor.update({ ...bare(5, collapsed), probeAnswers: BASE_PROBES }).probeAgreement).toBe(1);
    expect(monitor.update({ ...bare(6, collapsed), probeAnswers: BASE_PROBES.map(() => '9501') }).reasons.length).toBe(2);
  });

  test('a baseline that never read the prompt (dependence ≤ 1e-3) disables the cross-prompt test', () => {
    const shape = (step: number): Shape => (step < 2 ? { dependence: 0.0005 } : { answers: new Array<string>(P * G).fill('9501'), dependence: 0 });
    expect(collapseVerdict(run(new CollapseMonitor(), Array.from({ length: 6 }, (_, s) => measure(s, shape(s)))))).toBe('stable');
  });

  test('state() and restore: a resumed monitor judges exactly as an uninterrupted one', () => {
    const shape = collapsedFrom(5);
    const steps = Array.from({ length: 10 }, (_, s) => measure(s, shape(s)));
    const whole = run(new CollapseMonitor({ patience: 3 }), steps);
    const first = new CollapseMonitor({ patience: 3 });
    const before = run(first, steps.slice(0, 6)); // stops mid-streak (suspect at 5)
    const resumed = new CollapseMonitor({ patience: 3 }, JSON.parse(JSON.stringify(first.state())));
    expect([...before, ...run(resumed, steps.slice(6))]).toEqual(whole);
    expect(collapseVerdict(whole)).toBe('collapsed at step 7');
  });

  test('bad thresholds, measurements and state name the argument', () => {
    expect(() => new CollapseMonitor({ diversityFraction: 2 })).toThrow(/thresholds\.diversityFraction: expected a number in \[0, 1\]/);
    expect(() => new CollapseMonitor({ patience: 0 })).toThrow(/thresholds\.patience/);
    expect(() => new CollapseMonitor({ lengthDriftMax: 0.9 })).toThrow(/thresholds\.lengthDriftMax/);
    expect(() => new CollapseMonitor({}, { baseline: {}, streak: -1 } as never)).toThrow(/state: expected a CollapseMonitorState/);
    const monitor = new CollapseMonitor();
    expect(() => monitor.update({ ...measure(0), meanLength: 0 })).toThrow(/meanLength \(the baseline step\)/);
    expect(() => monitor.update({ ...measure(0), step: -1 })).toThrow(/measurements\.step/);
    const { scShuffled: _dropped, ...noShuffled } = measure(0);
    expect(() => monitor.update(noShuffled)).toThrow(/measurements\.scShuffled: expected given together with scTrue/);
    expect(() => monitor.update(measure(0))).not.toThrow();
    expect(() => monitor.update({ ...measure(1), probeAnswers: ['1'] })).toThrow(InvalidArgumentError);
    // A refused first step takes no baselines.
    const fresh = new CollapseMonitor();
    expect(() => fresh.update({ ...measure(0), scShuffled: [1] })).toThrow(/scShuffled: expected an array of 32/);
    expect(fresh.state()).toEqual({ baseline: { diversity: null, crossPromptSc: null, meanLength: null, probeAnswers: null }, crossPromptFirst: [], crossPromptRecent: [], streak: 0 });
    expect(() => new CollapseMonitor({ crossPromptWindow: 0 })).toThrow(/thresholds\.crossPromptWindow: expected a positive integer/);
    expect(() => collapseVerdict(null as never)).toThrow(/history/);
  });
});
