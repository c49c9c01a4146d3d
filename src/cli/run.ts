/**
 * `intuitor run`, the main job, and `intuitor experiment rewards`: GRPO runs from the same base
 * model with the same seeds and budget, differing only in the reward, side by side.
 *
 * The main job runs INTUITOR (self-certainty, no labels) beside ground-truth GRPO (the accuracy
 * verifier) on the built-in addition task, from the base model this project builds and ships
 * (models/addition-base: a tiny Qwen2-architecture character-level model, SFT'd to partial
 * accuracy and still learning; rebuild it with `intuitor build-base`). `experiment rewards` adds the spurious rewards
 * of Shao et al. 2025 (random, format, incorrect). Each run writes its own folder; the comparison
 * writes plot.svg and summary.md beside them and prints the table.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GpuContext } from '../gpu/context.js';
import { PACKAGE_ROOT } from '../paths.js';
import type { GrpoConfigInput } from '../rl/config.js';
import { runPlot, type GrpoResult } from '../rl/trainer.js';
import { consoleTable, markdownTable } from '../train/summary.js';
import { grpoInput, summaryRows, trainWithProgress, type TrainCommandOptions } from './train.js';

/** The base model the project ships, the task it was built for, and the main job's embedded defaults (sized for a few minutes on 2 CPU cores with lavapipe). */
export const SHIPPED_BASE_MODEL = join(PACKAGE_ROOT, 'models', 'addition-base');
export const SHIPPED_BASE_TASK = 'addition';
export const MAIN_JOB_DEFAULTS = { steps: '60', groupSize: '8', train: { promptsPerStep: '16', evalPrompts: '256', lr: '3e-4', maxCompletionLength: '8' } };

/** The reward runs compared: name → reward spec. */
const MAIN_RUNS: Record<string, string> = { intuitor: 'self-certainty', 'ground-truth': 'accuracy' };
const EXPERIMENT_RUNS: Record<string, string> = { 'ground-truth': 'accuracy', 'self-certainty': 'self-certainty', random: 'random', format: 'format', incorrect: 'incorrect' };

export type CompareOptions = Omit<TrainCommandOptions, 'reward'>;

async function compare(runs: Record<string, string>, o: CompareOptions, title: string): Promise<void> {
  const base = grpoInput({ ...o, reward: 'accuracy' });
  mkdirSync(o.out, { recursive: true });
  process.stdout.write(`${title}\nmodel ${o.model}, task ${base.task}, ${base.steps} steps × ${base.promptsPerStep} prompts × G = ${base.groupSize}, seed ${base.seed}; runs in ${o.out}/\n\n`);
  const ctx = await GpuContext.create();
  const results: { name: string; result: GrpoResult }[] = [];
  try {
    for (const [name, rewards] of Object.entries(runs)) {
      const input: GrpoConfigInput = { ...base, rewards, out: join(o.out, name) };
      results.push({ name: `${name} (${rewards})`, result: await trainWithProgress(ctx, input, name) });
    }
  } finally {
    ctx.close();
  }
  const { columns, rows } = summaryRows(results);
  writeFileSync(join(o.out, 'plot.svg'), runPlot(results.map(({ name, result }) => ({ name, records: result.records }))));
  writeFileSync(join(o.out, 'summary.md'), `# ${title}\n\n${markdownTable(columns, rows)}\n`);
  process.stdout.write(`\n${consoleTable(columns, rows)}\n\nHeld-out accuracy is greedy pass@1 on ${base.evalPrompts} test prompts. Plot: ${join(o.out, 'plot.svg')}; table: ${join(o.out, 'summary.md')}; per-step metrics in each run's metrics.jsonl.\n`);
}

export async function runCommand(o: CompareOptions): Promise<void> {
  await compare(MAIN_RUNS, o, 'intuitor run: INTUITOR (self-certainty, no labels) beside ground-truth GRPO');
}

export async function experimentRewardsCommand(o: CompareOptions): Promise<void> {
  await compare(EXPERIMENT_RUNS, o, 'intuitor experiment rewards: one base model, the same seeds and budget, five rewards');
}
