/** Learning-rate schedules against hand values of transformers' warmup schedules (step = updates already taken). */
import { learningRate, type ScheduleOptions } from '../../src/optim/schedule.js';

type Case = [options: ScheduleOptions, expected: [step: number, lr: number][], path: string];

const CASES: Case[] = [
  [{ schedule: 'constant', lr: 1, warmupSteps: 4, totalSteps: 100 }, [[0, 0], [1, 0.25], [2, 0.5], [3, 0.75], [4, 1], [5, 1], [1000, 1]], 'constant after a linear warmup from 0'],
  [{ schedule: 'constant', lr: 3e-4, warmupSteps: 0, totalSteps: 10 }, [[0, 3e-4], [9, 3e-4]], 'no warmup: lr from the first update'],
  [{ schedule: 'cosine', lr: 2, warmupSteps: 2, totalSteps: 10 }, [[0, 0], [1, 1], [2, 2], [4, 1 + Math.SQRT1_2], [6, 1], [8, 1 - Math.SQRT1_2], [10, 0], [12, 0]],
    'cosine to 0: half-way at step 6 of (2, 10), the floor from totalSteps on'],
  [{ schedule: 'cosine', lr: 2, warmupSteps: 2, totalSteps: 10, minLrRatio: 0.1 }, [[1, 1], [2, 2], [6, 2 * (0.5 * 0.9 + 0.1)], [10, 0.2], [50, 0.2]], 'cosine to a floor of 0.1·lr'],
  [{ schedule: 'cosine', lr: 1, warmupSteps: 0, totalSteps: 1 }, [[0, 1], [1, 0]], 'one update: lr, then the floor'],
  [{ schedule: 'cosine', lr: 1, warmupSteps: 5, totalSteps: 5 }, [[4, 0.8], [5, 1], [6, 0]], 'warmup as long as the run: lr once more (max(1, total − warmup)), then the floor'],
];

describe('learningRate', () => {
  test.each(CASES)('%j: %s', (options, expected) => {
    for (const [step, lr] of expected) expect(learningRate(step, options)).toBeCloseTo(lr, 14);
  });

  test('bad arguments are refused', () => {
    const options: ScheduleOptions = { schedule: 'cosine', lr: 1, warmupSteps: 1, totalSteps: 10 };
    expect(() => learningRate(-1, options)).toThrow(/step: expected a non-negative integer, got -1/);
    expect(() => learningRate(1.5, options)).toThrow(/step: expected a non-negative integer, got 1.5/);
    expect(() => learningRate(0, { ...options, schedule: 'linear' as 'cosine' })).toThrow(/schedule: expected 'constant' or 'cosine', got "linear"/);
    expect(() => learningRate(0, { ...options, lr: -1 })).toThrow(/lr: expected a finite number ≥ 0, got -1/);
    expect(() => learningRate(0, { ...options, warmupSteps: NaN })).toThrow(/warmupSteps: expected a non-negative integer, got NaN/);
    expect(() => learningRate(0, { ...options, minLrRatio: 2 })).toThrow(/minLrRatio: expected a number in \[0, 1\], got 2/);
  });
});
