/** `intuitor build-base`: rebuilds the base model the main job starts from (see src/train/base-model.ts). */
import { join } from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import { GpuContext } from '../gpu/context.js';
import { PACKAGE_ROOT } from '../paths.js';
import { BASE_MODEL_DEFAULTS, baseModelSteps, buildBaseModel, type BaseModelRecord, type BaseModelTask } from '../train/base-model.js';
import { choiceOption, numberOption, positiveIntOption } from './inputs.js';
import { createProgress } from './progress.js';

export interface BuildBaseCommandOptions {
  task: string;
  out?: string;
  steps?: string;
  lr?: string;
  seed: string;
  scratchShare?: string;
  directNoise?: string;
}

/** Where a task's base model goes by default: its own folder, so that no task's build replaces another's (the shipped models/addition-base). */
export function defaultBaseModelDir(task: BaseModelTask): string {
  return join(PACKAGE_ROOT, 'models', `${task}-base`);
}

export async function buildBaseCommand(o: BuildBaseCommandOptions): Promise<void> {
  const task = choiceOption('--task', o.task, ['addition', 'arithmetic', 'addition-modes'] as const satisfies readonly BaseModelTask[]);
  const steps = o.steps === undefined ? undefined : positiveIntOption('--steps', o.steps);
  const lr = o.lr === undefined ? undefined : numberOption('--lr', o.lr, { min: 0 });
  const mixture: { scratchShare?: number; directNoise?: number } = {};
  for (const [key, flag] of [['scratchShare', '--scratch-share'], ['directNoise', '--direct-noise']] as const) {
    if (o[key] === undefined) continue;
    if (task !== 'addition-modes') throw new InvalidArgumentError(flag, 'only with --task addition-modes (the task with two answer modes)', `--task ${task}`);
    mixture[key] = numberOption(flag, o[key], { min: 0, max: 1 });
  }
  const out = o.out ?? defaultBaseModelDir(task);
  const ctx = await GpuContext.create();
  const progress = createProgress('intuitor build-base', steps ?? baseModelSteps(task), 0);
  try {
    const record = await buildBaseModel(ctx, {
      task, out, ...(steps === undefined ? {} : { steps }), ...(lr === undefined ? {} : { lr }), ...mixture, seed: numberOption('--seed', o.seed, { min: 0, integer: true }),
      onStep: (r) => progress.update(r.step, { loss: r.loss.toFixed(4) }),
    });
    progress.stop();
    process.stdout.write(`intuitor build-base: ${out}: ${task}${record.mixture ? ` (scratch share ${record.mixture.scratchShare}, direct noise ${record.mixture.directNoise})` : ''}, SFT ${record.sft.steps} steps in ${record.sft.seconds.toFixed(0)} s (final loss ${record.sft.finalLoss?.toFixed(4) ?? 'n/a'}); held-out greedy accuracy ${(100 * record.eval.accuracy).toFixed(1)}% on ${record.eval.prompts} test prompts${modeSummary(record)}\n`);
  } finally {
    progress.stop();
    ctx.close();
  }
}

export const BUILD_BASE_DEFAULTS = { seed: String(BASE_MODEL_DEFAULTS.seed) };

function modeSummary(record: BaseModelRecord): string {
  const modes = record.eval.modes;
  if (!modes) return '';
  const pct = (x: number | null) => (x === null ? 'n/a' : `${(100 * x).toFixed(1)}%`);
  return `; greedy answers by mode: ${Object.entries(modes).map(([mode, m]) => `${mode} ${pct(m.share)} (accuracy ${pct(m.accuracy)})`).join(', ')}`;
}
