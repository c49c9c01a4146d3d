/**
 * Learning-rate schedules with linear warmup, as Hugging Face transformers defines them
 * (transformers.optimization): get_constant_schedule_with_warmup and
 * get_cosine_with_min_lr_schedule_with_warmup with num_cycles = 0.5 (which, with minLrRatio 0, is
 * get_cosine_schedule_with_warmup).
 *
 * `step` counts the optimiser updates already taken, as the LambdaLR behind those schedules
 * counts scheduler.step() calls: the first update uses learningRate(0, ...), which is 0 when there
 * is any warmup, exactly as in the Hugging Face Trainer.
 */
import { InvalidArgumentError, describe } from '../errors.js';

export interface ScheduleOptions {
  /** 'constant': warmup, then lr. 'cosine': warmup, then half a cosine from lr down to minLrRatio·lr at totalSteps. */
  schedule: 'constant' | 'cosine';
  /** The peak learning rate. Finite and ≥ 0. */
  lr: number;
  /** Updates of linear warmup from 0 to lr (step / warmupSteps). 0 starts at lr. */
  warmupSteps: number;
  /** Updates in the whole run: the cosine reaches its floor here and stays there. */
  totalSteps: number;
  /** The cosine's floor as a fraction of lr, in [0, 1]. Default 0 (transformers' min_lr_rate). Ignored by 'constant'. */
  minLrRatio?: number;
}

function checkCount(name: string, value: unknown): number {
  if (!Number.isSafeInteger(value) || (value as number) < 0) throw new InvalidArgumentError(name, 'a non-negative integer', describe(value));
  return value as number;
}

/** The learning rate of the update that follows `step` earlier updates. */
export function learningRate(step: number, options: ScheduleOptions): number {
  checkCount('step', step);
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options', 'an object { schedule, lr, warmupSteps, totalSteps }', describe(options));
  const { schedule, lr, minLrRatio = 0 } = options;
  if (schedule !== 'constant' && schedule !== 'cosine') throw new InvalidArgumentError('schedule', "'constant' or 'cosine'", describe(schedule));
  if (typeof lr !== 'number' || !Number.isFinite(lr) || lr < 0) throw new InvalidArgumentError('lr', 'a finite number ≥ 0', describe(lr));
  const warmupSteps = checkCount('warmupSteps', options.warmupSteps);
  const totalSteps = checkCount('totalSteps', options.totalSteps);
  if (typeof minLrRatio !== 'number' || !(minLrRatio >= 0 && minLrRatio <= 1)) throw new InvalidArgumentError('minLrRatio', 'a number in [0, 1]', describe(minLrRatio));

  if (step < warmupSteps) return lr * (step / Math.max(1, warmupSteps));
  if (schedule === 'constant') return lr;
  // transformers lets the cosine rise again past totalSteps; a run that goes on stays at the floor.
  const progress = Math.min(1, (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps));
  const cosine = 0.5 * (1 + Math.cos(Math.PI * progress));
  return lr * Math.max(0, cosine * (1 - minLrRatio) + minLrRatio);
}
