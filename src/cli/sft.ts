/** `intuitor sft`: supervised fine-tuning on prompt/completion JSON lines (see src/train/sft.ts). */
import { GpuContext } from '../gpu/context.js';
import { runSft, type SftOptions } from '../train/sft.js';
import { createProgress } from './progress.js';
import { choiceOption, numberOption, positiveIntOption } from './inputs.js';

export interface SftCommandOptions {
  model: string;
  data: string;
  out: string;
  steps: string;
  lr: string;
  batchSize: string;
  gradAccum: string;
  schedule: string;
  warmupSteps: string;
  maxGradNorm: string;
  weightDecay: string;
  seed: string;
  saveEvery: string;
  keep: string;
  maxLength?: string;
  resume?: boolean;
  overwrite?: boolean;
}

export async function sftCommand(o: SftCommandOptions): Promise<void> {
  const steps = positiveIntOption('--steps', o.steps);
  const schedule = choiceOption('--schedule', o.schedule, ['constant', 'cosine'] as const);
  const options: SftOptions = {
    model: o.model, data: o.data, out: o.out, steps,
    batchSize: positiveIntOption('--batch-size', o.batchSize),
    gradAccum: positiveIntOption('--grad-accum', o.gradAccum),
    optimizer: {
      lr: numberOption('--lr', o.lr, { min: 0 }), schedule,
      warmupSteps: numberOption('--warmup-steps', o.warmupSteps, { min: 0, integer: true }),
      maxGradNorm: numberOption('--max-grad-norm', o.maxGradNorm, { min: 0 }),
      weightDecay: numberOption('--weight-decay', o.weightDecay, { min: 0 }),
    },
    seed: numberOption('--seed', o.seed, { min: 0, integer: true }),
    saveEvery: numberOption('--save-every', o.saveEvery, { min: 0, integer: true }),
    keep: positiveIntOption('--keep', o.keep),
    maxLength: o.maxLength === undefined ? undefined : positiveIntOption('--max-length', o.maxLength),
    resume: o.resume ?? false,
    overwrite: o.overwrite ?? false,
  };
  const ctx = await GpuContext.create();
  const progress = createProgress('intuitor sft', steps, 0);
  try {
    const { checkpoint, last } = await runSft(ctx, {
      ...options,
      onStep: (r) => progress.update(r.step, { loss: r.loss.toFixed(4), lr: r.lr.toExponential(2), 'tok/s': r.tokens_per_s.toFixed(0) }),
    });
    progress.stop();
    process.stdout.write(last ? `intuitor sft: step ${last.step}, loss ${last.loss.toFixed(4)}; checkpoint ${checkpoint}; metrics in ${o.out}/metrics.jsonl\n` : `intuitor sft: nothing to do (the run already reached ${steps} steps)\n`);
  } finally {
    progress.stop();
    ctx.close();
  }
}
