/** `intuitor build-base`: rebuilds the base model the main job starts from (see src/train/base-model.ts). */
import { join } from 'node:path';
import { GpuContext } from '../gpu/context.js';
import { PACKAGE_ROOT } from '../paths.js';
import { BASE_MODEL_DEFAULTS, buildBaseModel, type BaseModelTask } from '../train/base-model.js';
import { choiceOption, numberOption, positiveIntOption } from './inputs.js';
import { createProgress } from './progress.js';

export interface BuildBaseCommandOptions {
  task: string;
  out?: string;
  steps: string;
  lr: string;
  seed: string;
}

/** Where a task's base model goes by default: its own folder, so that no task's build replaces another's (the shipped models/addition-base). */
export function defaultBaseModelDir(task: BaseModelTask): string {
  return join(PACKAGE_ROOT, 'models', `${task}-base`);
}

export async function buildBaseCommand(o: BuildBaseCommandOptions): Promise<void> {
  const task = choiceOption('--task', o.task, ['addition', 'arithmetic'] as const satisfies readonly BaseModelTask[]);
  const out = o.out ?? defaultBaseModelDir(task);
  const steps = positiveIntOption('--steps', o.steps);
  const ctx = await GpuContext.create();
  const progress = createProgress('intuitor build-base', steps, 0);
  try {
    const record = await buildBaseModel(ctx, {
      task, out, steps, lr: numberOption('--lr', o.lr, { min: 0 }), seed: numberOption('--seed', o.seed, { min: 0, integer: true }),
      onStep: (r) => progress.update(r.step, { loss: r.loss.toFixed(4) }),
    });
    progress.stop();
    process.stdout.write(`intuitor build-base: ${out}: ${task}, SFT ${record.sft.steps} steps in ${record.sft.seconds.toFixed(0)} s (final loss ${record.sft.finalLoss?.toFixed(4) ?? 'n/a'}); held-out greedy accuracy ${(100 * record.eval.accuracy).toFixed(1)}% on ${record.eval.prompts} test prompts\n`);
  } finally {
    progress.stop();
    ctx.close();
  }
}

export const BUILD_BASE_DEFAULTS = { steps: String(BASE_MODEL_DEFAULTS.steps), lr: String(BASE_MODEL_DEFAULTS.lr), seed: String(BASE_MODEL_DEFAULTS.seed) };
