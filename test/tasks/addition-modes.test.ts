/**
 * The two-mode addition task (issue 15): the mode parser and verifier on edge cases, the three
 * disjoint splits, the base builder's SFT mixture (seeded, with its share and noise), and the pure
 * arithmetic of the reward experiment (label-free stops, accuracy at a stop, per-run summaries).
 */
import { InvalidArgumentError } from '../../src/errors.js';
import { accuracyAtStop, collapseStop, probeDriftStop, probeModeSettledStop, summarizeRun } from '../../src/rl/experiment.js';
import { modeSettledStep, probeModeStop, saturationStop } from '../../src/rl/monitors.js';
import { additionModesTask as task, answerModeOf, finalAnswerOf, modeCompletion } from '../../src/tasks/addition-modes.js';
import { splitOf } from '../../src/tasks/dataset.js';
import { modeShares } from '../../src/tasks/evaluate.js';
import { getTask } from '../../src/tasks/index.js';
import { sftExamples, unitFraction } from '../../src/train/base-model.js';

describe('addition-modes: modes and verifier', () => {
  test('both modes of a sum, the scratchpad least significant digit first, padded to 3 digits', () => {
    expect(modeCompletion(132, 'direct')).toBe('132');
    expect(modeCompletion(132, 'scratch')).toBe('R231>132');
    expect(modeCompletion(57, 'scratch')).toBe('R750>57');
    expect(modeCompletion(0, 'scratch')).toBe('R000>0');
    expect(modeCompletion(198, 'scratch')).toBe('R891>198');
    expect(() => modeCompletion(1000, 'scratch')).toThrow(InvalidArgumentError);
    expect(() => modeCompletion(-1, 'direct')).toThrow(InvalidArgumentError);
    expect(() => modeCompletion(5, 'code' as 'direct')).toThrow(/mode/);
  });

  test.each([
    ['579\n', 'direct', '579'],
    ['579', 'direct', '579'], // no stop: the whole completion is the answer region
    [' 579 \n', 'direct', '579'],
    ['0579\n', 'direct', '0579'],
    ['R9750>579\n', 'scratch', '579'],
    ['R9750>579\nR1>2', 'scratch', '579'], // only the text before the first newline counts
    ['R1>579\n', 'scratch', '579'], // the scratch digits are not checked
    ['R>579\n', null, null],
    ['R9750>\n', null, null],
    ['R9750579\n', null, null],
    ['R97>50>579\n', null, null],
    ['9750>579\n', null, null],
    ['r9750>579\n', null, null],
    ['-5\n', null, null],
    ['\n', null, null],
    ['', null, null],
    ['57 9\n', null, null],
  ])('%j: mode %s, final answer %s', (completion, mode, final) => {
    expect(answerModeOf(completion)).toBe(mode);
    expect(task.modeOf!(completion)).toBe(mode);
    expect(finalAnswerOf(completion)).toBe(final);
    expect(task.formatOk(completion)).toBe(mode !== null);
  });

  test('the verifier grades the final answer in either mode, numerically', () => {
    expect(task.score('579\n', '579')).toBe(1);
    expect(task.score('R9750>579\n', '579')).toBe(1);
    expect(task.score('0579\n', '579')).toBe(1);
    expect(task.score('R9750>580\n', '579')).toBe(0);
    expect(task.score('578\n', '579')).toBe(0);
    expect(task.score('R9750>\n', '579')).toBe(0);
    expect(task.score('', '579')).toBe(0);
    expect(() => task.score('579', 'x')).toThrow(InvalidArgumentError);
    expect(task.wrongAnswer('579')).toBe('580');
    expect(getTask('addition-modes')).toBe(task);
  });

  test('mode shares count each mode and the malformed ones', () => {
    expect(modeShares(task, ['1\n', 'R1000>1\n', 'R1000>1\n', 'x'])).toEqual({ direct: 0.25, scratch: 0.5, none: 0.25 });
    expect(modeShares(getTask('addition'), ['1\n'])).toBeNull();
  });

  test('train, validation and test are disjoint and seeded; tasks without a validation split refuse it by name', () => {
    const keys = (split: 'train' | 'validation' | 'test') => new Set(task.generate(5, 2000, split).map((e) => e.prompt));
    const [train, validation, test] = [keys('train'), keys('validation'), keys('test')];
    for (const p of validation) expect(train.has(p) || test.has(p)).toBe(false);
    for (const p of test) expect(train.has(p)).toBe(false);
    expect(task.generate(5, 50, 'validation')).toEqual(task.generate(5, 50, 'validation'));
    for (const e of task.generate(1, 200, 'test')) expect(Number(e.answer)).toBe(e.prompt.slice(0, -1).split('+').map(Number).reduce((a, b) => a + b));
    expect(splitOf('k', 0.1)).not.toBe('validation');
    expect(() => getTask('addition').generate(0, 1, 'validation')).toThrow(/no validation split/);
  });
});

describe('addition-modes: the base builder\'s SFT mixture', () => {
  const settings = { seed: 3, trainExamples: 4000, scratchShare: 0.5, directNoise: 0.3 };

  test('seeded: the same settings give the same lines', () => {
    expect(sftExamples('addition-modes', settings)).toEqual(sftExamples('addition-modes', settings));
    expect(sftExamples('addition-modes', { ...settings, seed: 4 })).not.toEqual(sftExamples('addition-modes', settings));
  });

  test('the share of scratch lines and the direct-mode noise are as asked; scratch lines are always right, noisy ones off by ±1 or ±10', () => {
    const lines = sftExamples('addition-modes', settings);
    const scratch = lines.filter((l) => l.mode === 'scratch');
    const direct = lines.filter((l) => l.mode === 'direct');
    expect(scratch.length / lines.length).toBeCloseTo(0.5, 1);
    expect(direct.filter((l) => l.noisy).length / direct.length).toBeCloseTo(0.3, 1);
    const sum = (prompt: string) => prompt.slice(0, -1).split('+').map(Number).reduce((a, b) => a + b);
    for (const l of scratch) expect(l.completion).toBe(modeCompletion(sum(l.prompt), 'scratch'));
    for (const l of direct) {
      const off = Number(l.completion) - sum(l.prompt);
      expect(l.noisy ? [-10, -1, 1, 10] : [0]).toContain(off);
      expect(Number(l.completion)).toBeGreaterThanOrEqual(0);
    }
    expect(sftExamples('addition-modes', { ...settings, scratchShare: 0, directNoise: 0 }).every((l) => l.mode === 'direct' && !l.noisy)).toBe(true);
    expect(sftExamples('addition-modes', { ...settings, scratchShare: 1 }).every((l) => l.mode === 'scratch')).toBe(true);
  });

  test.each([-0.1, 1.5, NaN, Infinity, '0.5'])('a fraction %p outside [0, 1] is refused by name', (value) => {
    expect(() => unitFraction('scratchShare', value)).toThrow(/scratchShare/);
  });
});

describe('the reward experiment\'s arithmetic', () => {
  const records: Record<string, number>[] = [
    { step: 0, eval_accuracy: 0.5 },
    { step: 1, collapse: 0, 'mode/scratch': 0.5, 'mode/direct': 0.5, 'mode/none': 0 },
    { step: 2, collapse: 0, 'mode/scratch': 0.96, 'mode/direct': 0.04, 'mode/none': 0, eval_accuracy: 0.7 },
    { step: 3, collapse: 0, 'mode/scratch': 0.97, 'mode/direct': 0.03, 'mode/none': 0 },
    { step: 4, collapse: 1, 'mode/scratch': 1, 'mode/direct': 0, 'mode/none': 0, eval_accuracy: 0.6 },
    { step: 5, collapse: 1, 'mode/scratch': 1, 'mode/direct': 0, 'mode/none': 0, eval_accuracy: 0.1 },
  ];

  test('stops: the monitors at their first collapsed step, saturation after two saturated steps of a mode that was open at the start', () => {
    expect(collapseStop(records)).toBe(4);
    expect(saturationStop(records)).toBe(3);
    expect(saturationStop(records.map((r) => ({ ...r, 'mode/scratch': 0.99 })))).toBeNull(); // saturated from the start: nothing to select
    expect(saturationStop([{ step: 0 }, { step: 1, 'mode/none': 1 }])).toBeNull();
    expect(collapseStop(records.slice(0, 3))).toBeNull();
    const probes = [0, 1, 0.7, 0.8, 0.7, 0.6].map((probe_agreement, step) => ({ step, probe_agreement }));
    expect(probeDriftStop(probes)).toBe(5);
    expect(probeDriftStop(probes.slice(0, 5))).toBeNull();
  });

  test('the accuracy a stop keeps is the last evaluation before it; the final one when it never fires', () => {
    const curve: Array<[number, number]> = [[0, 0.5], [2, 0.7], [4, 0.6], [5, 0.1]];
    expect(accuracyAtStop(curve, 4)).toBe(0.7);
    expect(accuracyAtStop(curve, 3)).toBe(0.7);
    expect(accuracyAtStop(curve, 1)).toBe(0.5);
    expect(accuracyAtStop(curve, null)).toBe(0.1);
    expect(() => accuracyAtStop([], 1)).toThrow(InvalidArgumentError);
  });

  test('a rule that keeps the next checkpoint keeps the first evaluation at or after its step (the final one past the last)', () => {
    const curve: Array<[number, number]> = [[0, 0.5], [5, 0.8], [10, 0.95], [15, 0.9]];
    expect(accuracyAtStop(curve, 7, 'next')).toBe(0.95);
    expect(accuracyAtStop(curve, 5, 'next')).toBe(0.8);
    expect(accuracyAtStop(curve, 16, 'next')).toBe(0.9);
    expect(accuracyAtStop(curve, null, 'next')).toBe(0.9);
    expect(accuracyAtStop(curve, 7)).toBe(0.8);
  });

  test('probe modes: the greedy probe answers settled on a mode that was open at step 0, on 2 consecutive steps; the next checkpoint is kept', () => {
    const probe = (step: number, scratch: number, extra: Record<string, number> = {}) => ({ step, 'probe_mode/scratch': scratch, 'probe_mode/direct': 1 - scratch, 'probe_mode/none': 0, ...extra });
    const run = [probe(0, 0.5, { eval_accuracy: 0.6 }), probe(1, 0.6), probe(2, 0.9375), probe(3, 0.875), probe(4, 0.9375), probe(5, 1, { eval_accuracy: 0.9 }), probe(6, 1), probe(10, 1, { eval_accuracy: 0.4 })];
    expect(probeModeStop(run)).toBe(5);
    expect(probeModeSettledStop(run)).toBe(5);
    expect(probeModeSettledStop.keeps).toBe('next');
    expect(summarizeRun(run, { 'probe modes': probeModeSettledStop }).stops['probe modes']).toEqual({ step: 5, accuracy: 0.9 });
    expect(probeModeStop(run.map((r) => ({ ...r, 'probe_mode/scratch': 1, 'probe_mode/direct': 0 })))).toBeNull(); // settled from the start
    expect(probeModeStop(run.slice(0, 4))).toBeNull();
    expect(probeModeStop([{ step: 0 }, { step: 1, eval_accuracy: 1 }])).toBeNull(); // no probe columns
    // Without a step-0 record the first step is the baseline; another prefix is another rule.
    expect(modeSettledStep(run.slice(1), 'probe_mode', 0.9, 2)).toBe(5);
    expect(modeSettledStep(run, 'mode', 0.9, 2)).toBeNull();
  });

  test('a run\'s summary: before, after, peak, stops, the sampled reasoning-mode share first → last', () => {
    expect(summarizeRun(records, { monitors: collapseStop, saturation: saturationStop }, 'scratch')).toEqual({
      before: 0.5, after: 0.1, peak: 0.7, peakStep: 2, modeBefore: 0.5, modeAfter: 1,
      stops: { monitors: { step: 4, accuracy: 0.7 }, saturation: { step: 3, accuracy: 0.7 } },
    });
    expect(summarizeRun(records, {}).modeBefore).toBeNull();
  });
});
