/**
 * `intuitor run`, the main job, and `intuitor experiment rewards`: GRPO runs from the same base
 * model with the same seeds and budget, differing only in the reward, side by side.
 *
 * The main job runs INTUITOR (self-certainty, no labels) beside ground-truth GRPO (the accuracy
 * verifier) on the `addition-modes` task from models/addition-modes-q, the shipped base whose
 * latent reasoning mode (a scratchpad) is the reliable one (issue 15). `experiment rewards` adds the
 * spurious rewards of Shao et al. 2025 (random, format, incorrect) and runs every reward on every
 * base given (default: the Qwen-like and Llama-like mode bases and models/addition-base, the base
 * with no reasoning mode) for several seeds, with one recipe for all of them.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import { PACKAGE_ROOT } from '../paths.js';
import type { GrpoConfigInput } from '../rl/config.js';
import { collapseStop, probeDriftStop, probeModeSettledStop, spread, summarizeRun, type RunSummary, type StopRule } from '../rl/experiment.js';
import { saturationStop } from '../rl/monitors.js';
import { runPlot, type GrpoResult } from '../rl/trainer.js';
import { getTask } from '../tasks/index.js';
import { lineChartSvg } from '../train/plot.js';
import { BASE_MODEL_RECORD } from '../train/base-model.js';
import { consoleTable, markdownTable, type Cell } from '../train/summary.js';
import { positiveIntOption } from './inputs.js';
import { DEFAULT_JOBS, trainInPool } from './run-pool.js';
import { grpoInput, summaryRows, type TrainCommandOptions } from './train.js';

/** The shipped bases (built by `intuitor build-base`; their base_model.json says how). */
export const SHIPPED_BASES = {
  /** Qwen-like: 45% of its SFT answers use the scratchpad, which is always right; direct answers are 30% noisy. Greedy, it answers about half the prompts directly, mostly wrong. */
  q: join(PACKAGE_ROOT, 'models', 'addition-modes-q'),
  /** Llama-like: the scratchpad is the unreliable mode (50% scratch, 1400 SFT updates: its column sums not yet learned; direct answers more often right). */
  l: join(PACKAGE_ROOT, 'models', 'addition-modes-l'),
  /** The control: one answer mode, no latent reasoning to select. */
  none: join(PACKAGE_ROOT, 'models', 'addition-base'),
} as const;
export const SHIPPED_BASE_MODEL = SHIPPED_BASES.q;
export const SHIPPED_BASE_TASK = 'addition-modes';

/**
 * The main job's and the experiment's recipe (one for every reward and base), sized for minutes on
 * 2 CPU cores with lavapipe. INTUITOR's recipe: a KL penalty to the start model and μ = 2 updates per
 * batch. How each value was chosen (on the validation split of addition-modes) is in the README,
 * "The seeds' claims, in miniature".
 */
export const MAIN_JOB_DEFAULTS = {
  steps: '30', groupSize: '8',
  train: { promptsPerStep: '16', evalPrompts: '256', lr: '3e-5', maxCompletionLength: '12', beta: '0.05', mu: '2', evalEvery: '5', saveEvery: '5' },
};

/** The reward runs compared: name → reward spec. */
const MAIN_RUNS: Record<string, string> = { intuitor: 'self-certainty', 'ground-truth': 'accuracy' };
const EXPERIMENT_RUNS: Record<string, string> = { 'ground-truth': 'accuracy', 'self-certainty': 'self-certainty', random: 'random', format: 'format', incorrect: 'incorrect' };

/** The label-free stopping rules the experiment reports (each reads only metrics a user without labels has). */
export const STOP_RULES: Record<string, StopRule> = { monitors: collapseStop, saturation: saturationStop, 'probe drift': probeDriftStop, 'probe modes': probeModeSettledStop };

export type CompareOptions = Omit<TrainCommandOptions, 'reward'> & {
  /** Runs trained at once, each in a process of its own (./run-pool.ts). */
  jobs: string;
};

/** The task a base model folder was built for (its base_model.json), else `fallback`. */
function baseTask(model: string, fallback: string): string {
  const path = join(model, BASE_MODEL_RECORD);
  if (!existsSync(path)) return fallback;
  return (JSON.parse(readFileSync(path, 'utf8')) as { task: string }).task;
}

async function compare(runs: Record<string, string>, o: CompareOptions, title: string): Promise<void> {
  const base = grpoInput({ ...o, reward: 'accuracy' });
  const jobs = positiveIntOption('--jobs', o.jobs);
  const task = getTask(base.task);
  mkdirSync(o.out, { recursive: true });
  process.stdout.write(`${title}\nmodel ${o.model}, task ${base.task}, ${base.steps} steps × ${base.promptsPerStep} prompts × G = ${base.groupSize}, seed ${base.seed}; runs in ${o.out}/ (${jobs} at once)\n\n`);
  const started = performance.now();
  const named = Object.entries(runs).map(([name, rewards]) => ({ name: `${name} (${rewards})`, input: { ...base, rewards, out: join(o.out, name) }, label: name }));
  const trained = await trainInPool(named, jobs);
  const results = named.map(({ name }, i) => ({ name, result: trained[i]! }));
  const minutes = (performance.now() - started) / 60000;
  const { columns, rows } = summaryRows(results);
  const stops = stopRows(results.map(({ name, result }) => ({ name, summary: summarizeRun(result.records, STOP_RULES, task.reasoningMode) })));
  writeFileSync(join(o.out, 'plot.svg'), runPlot(results.map(({ name, result }) => ({ name, records: result.records })), task.reasoningMode));
  writeFileSync(join(o.out, 'summary.md'), `# ${title}\n\n${markdownTable(columns, rows)}\n\n${markdownTable(stops.columns, stops.rows)}\n\n${minutes.toFixed(1)} minutes.\n`);
  process.stdout.write(`\n${consoleTable(columns, rows)}\n\n${consoleTable(stops.columns, stops.rows)}\n\nHeld-out accuracy is greedy pass@1 on ${base.evalPrompts} test prompts, measured every ${base.evalEvery} steps. ${minutes.toFixed(1)} minutes. Plot: ${join(o.out, 'plot.svg')}; table: ${join(o.out, 'summary.md')}; per-step metrics in each run's metrics.jsonl.\n`);
}

function stopRows(runs: { name: string; summary: RunSummary }[]): { columns: string[]; rows: Cell[][] } {
  const rules = Object.keys(STOP_RULES);
  return {
    columns: ['run', 'peak (step)', ...rules.map((r) => `label-free stop: ${r} (step)`), 'final', 'sampled reasoning-mode share first → last'],
    rows: runs.map(({ name, summary: s }) => [name, `${pct(s.peak)} (${s.peakStep})`,
      ...rules.map((r) => `${pct(s.stops[r]!.accuracy)} (${s.stops[r]!.step ?? 'never'})`), pct(s.after), modeChange(s.modeBefore, s.modeAfter)]),
  };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const modeChange = (a: number | null, b: number | null) => (a === null || b === null ? 'n/a' : `${pct(a)} → ${pct(b)}`);

export async function runCommand(o: CompareOptions): Promise<void> {
  await compare(MAIN_RUNS, o, 'intuitor run: INTUITOR (self-certainty, no labels) beside ground-truth GRPO');
}

export interface ExperimentOptions extends CompareOptions {
  /** Comma-separated base model folders (default: the three shipped bases). */
  models?: string;
  seeds: string;
  quick?: boolean;
  /** Train nothing: tabulate the runs already finished in --out (an experiment cut short, or seeds run by separate processes). */
  collect?: boolean;
}

/** The --quick variant: every base, reward and seed, a couple of tiny steps (a check that it all runs; its numbers mean nothing). */
const QUICK = { steps: 2, promptsPerStep: 2, groupSize: 2, evalPrompts: 8, evalEvery: 1, saveEvery: 1, probePrompts: 2 };

export async function experimentRewardsCommand(o: ExperimentOptions): Promise<void> {
  const seeds = positiveIntOption('--seeds', o.seeds);
  const jobs = positiveIntOption('--jobs', o.jobs);
  const models = o.models === undefined ? Object.values(SHIPPED_BASES) : o.models.split(',').map((m) => m.trim()).filter((m) => m !== '');
  if (models.length === 0) throw new InvalidArgumentError('--models', 'one or more model folders, comma-separated', JSON.stringify(o.models));
  const first = grpoInput({ ...o, reward: 'accuracy' });
  const recipe: GrpoConfigInput = o.quick ? { ...first, ...QUICK } : first;
  mkdirSync(o.out, { recursive: true });
  const title = 'intuitor experiment rewards: every base, five rewards, the same recipe and seeds';
  process.stdout.write(`${title}\n${models.length} bases × ${Object.keys(EXPERIMENT_RUNS).length} rewards × ${seeds} seeds (${recipe.seed} … ${recipe.seed! + seeds - 1}); ${recipe.steps} steps × ${recipe.promptsPerStep} prompts × G = ${recipe.groupSize}, lr ${recipe.lr}, β ${recipe.beta}, μ ${recipe.mu}; runs in ${o.out}/ (${jobs} at once)\n\n`);
  const started = performance.now();
  const cells = models.flatMap((model) => {
    const task = baseTask(model, recipe.task);
    return Object.entries(EXPERIMENT_RUNS).map(([reward, spec]) => ({ base: basename(model), model, reward, spec, task, runs: [] as RunSummary[], verdicts: [] as string[], records: [] as GrpoResult['records'][] }));
  });
  for (const cell of cells) getTask(cell.task);
  // Every run in table order, seeds outermost (a run cut short leaves every base × reward cell its
  // first seeds); those already finished in --out with this recipe are taken as they are.
  const runs = Array.from({ length: seeds }, (_, i) => recipe.seed! + i).flatMap((seed) => cells.map((cell) => {
    const input: GrpoConfigInput = { ...recipe, model: cell.model, task: cell.task, rewards: cell.spec, seed, out: join(o.out, cell.base, cell.reward, `seed-${seed}`) };
    return { cell, input, label: `${cell.base} ${cell.reward} seed ${seed}`, result: finishedRun(input) };
  }));
  // The table is rewritten whenever a run finishes, from every run finished so far, in table order.
  const tabulate = () => {
    for (const cell of cells) Object.assign(cell, { runs: [], verdicts: [], records: [] });
    for (const { cell, result } of runs) {
      if (result === null) continue;
      cell.runs.push(summarizeRun(result.records, STOP_RULES, getTask(cell.task).reasoningMode));
      cell.verdicts.push(result.verdict);
      cell.records.push(result.records);
    }
    if (cells.some((c) => c.runs.length > 0)) writeExperiment(o.out, title, recipe, cells, o.collect ? null : (performance.now() - started) / 60000);
  };
  tabulate();
  if (!o.collect) {
    const pending = runs.filter((r) => r.result === null);
    await trainInPool(pending, jobs, (i, result) => {
      const run = pending[i]!;
      writeFileSync(join(run.input.out, EXPERIMENT_SETTINGS), runSettings(run.input));
      run.result = result;
      tabulate();
    });
  }
  if (!existsSync(join(o.out, 'summary.md'))) throw new InvalidArgumentError('--out', 'a folder with finished runs of this recipe (--collect)', `none in ${o.out}`);
  process.stdout.write(`\n${readFileSync(join(o.out, 'summary.md'), 'utf8')}\nPlot: ${join(o.out, 'plot.svg')}; per-run summaries: ${join(o.out, 'results.json')}.\n`);
}

/**
 * A run of this experiment already finished in its folder (its metrics reach the last step, and its
 * settings file matches this recipe): its records and verdict, so that an interrupted experiment, or
 * seeds run by separate processes into one --out, are taken as they are instead of rerun.
 */
function finishedRun(input: GrpoConfigInput): Pick<GrpoResult, 'records' | 'verdict'> | null {
  const metrics = join(input.out, 'metrics.jsonl');
  const settings = join(input.out, EXPERIMENT_SETTINGS);
  const wanted = runSettings(input);
  if (!existsSync(metrics) || !existsSync(settings) || readFileSync(settings, 'utf8') !== wanted) return null;
  const records = readFileSync(metrics, 'utf8').split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as GrpoResult['records'][number]);
  if (records.at(-1)?.step !== input.steps) return null;
  const collapsed = records.find((r) => r.collapse === 1);
  return { records, verdict: collapsed === undefined ? 'stable' : `collapsed at step ${collapsed.step as number}` };
}

/** A run's settings as finishedRun compares them: everything but the folder (a finished run may have been moved in). */
const runSettings = (input: GrpoConfigInput): string => JSON.stringify({ ...input, out: undefined });

/** Each experiment run's settings, beside its metrics (finishedRun compares them). */
const EXPERIMENT_SETTINGS = 'experiment-run.json';

type ExperimentCell = { base: string; reward: string; task: string; runs: RunSummary[]; verdicts: string[]; records: GrpoResult['records'][] };

/** The table (summary.md), the plot and results.json of the runs so far (rewritten after every run, so a cut-short experiment keeps what it measured). */
function writeExperiment(out: string, title: string, recipe: GrpoConfigInput, all: ExperimentCell[], minutes: number | null): void {
  const cells = all.filter((c) => c.runs.length > 0);
  const rules = Object.keys(STOP_RULES);
  const columns = ['base', 'reward', 'accuracy before', 'change: mean [min, max]', 'peak (mean)', ...rules.map((r) => `at label-free stop: ${r}`), 'reasoning-mode share (sampled) first → last', 'monitors'];
  const range = (xs: number[]) => {
    const s = spread(xs);
    return `${signed(s.mean)} [${signed(s.min)}, ${signed(s.max)}]`;
  };
  const rows: Cell[][] = cells.map((c) => {
    const mean = (f: (r: RunSummary) => number | null) => {
      const xs = c.runs.map(f).filter((x): x is number => x !== null);
      return xs.length === 0 ? null : spread(xs).mean;
    };
    const collapsed = c.verdicts.filter((v) => v !== 'stable');
    return [c.base, c.reward, pct(mean((r) => r.before)!), range(c.runs.map((r) => r.after - r.before)), pct(mean((r) => r.peak)!),
      ...rules.map((rule) => pct(mean((r) => r.stops[rule]!.accuracy)!)), modeChange(mean((r) => r.modeBefore), mean((r) => r.modeAfter)),
      collapsed.length === 0 ? `stable (${c.verdicts.length}/${c.verdicts.length})` : `${collapsed.length}/${c.verdicts.length} collapsed (${collapsed.map((v) => v.replace('collapsed at ', '')).join(', ')})`];
  });
  const note = `Recipe: ${recipe.steps} steps × ${recipe.promptsPerStep} prompts × G = ${recipe.groupSize}, lr ${recipe.lr}, β ${recipe.beta} (${recipe.klEstimator ?? 'k3'}), μ ${recipe.mu}, temperature ${recipe.sampling?.temperature ?? 1}, completions ≤ ${recipe.maxCompletionLength} tokens. Held-out accuracy: greedy pass@1 on ${recipe.evalPrompts} ${recipe.heldOutSplit ?? 'test'} prompts (seed ${recipe.evalSeed ?? 0}), every ${recipe.evalEvery} steps; changes in points, mean over the seeds run (n per cell: ${[...new Set(cells.map((c) => c.runs.length))].join(' or ')}) with [min, max]. A label-free stop keeps the checkpoint of the last evaluation before the rule fired (probe modes: the first at or after it; the final one if a rule never fired). ${minutes === null ? 'Tabulated from finished runs (--collect).' : `${minutes.toFixed(1)} minutes so far.`}`;
  writeFileSync(join(out, 'summary.md'), `# ${title}\n\n${markdownTable(columns, rows)}\n\n${note}\n`);
  writeFileSync(join(out, 'plot.svg'), experimentPlot(cells));
  writeFileSync(join(out, 'results.json'), `${JSON.stringify(cells.map(({ records: _r, ...c }) => c), null, 1)}\n`);
}

const signed = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(100 * x).toFixed(1)}`;

/** Per base, the seed-mean held-out accuracy and sampled reasoning-mode share against step, one line per reward. */
function experimentPlot(cells: { base: string; reward: string; task: string; records: GrpoResult['records'][] }[]): string {
  const meanSeries = (records: GrpoResult['records'][], key: string): Array<[number, number]> => {
    const byStep = new Map<number, number[]>();
    for (const run of records) for (const r of run) if (typeof r[key] === 'number') byStep.set(r.step as number, [...(byStep.get(r.step as number) ?? []), r[key] as number]);
    return [...byStep.entries()].sort((a, b) => a[0] - b[0]).map(([step, xs]) => [step, spread(xs).mean]);
  };
  const bases = [...new Set(cells.map((c) => c.base))];
  const panels = bases.flatMap((base) => {
    const mine = cells.filter((c) => c.base === base);
    const mode = getTask(mine[0]!.task).reasoningMode;
    return [
      { title: `${base}: held-out accuracy (seed mean)`, yLabel: 'accuracy', series: mine.map((c) => ({ name: c.reward, points: meanSeries(c.records, 'eval_accuracy') })) },
      ...(mode === undefined ? [] : [{ title: `${base}: sampled ${mode} share (seed mean)`, yLabel: 'share', series: mine.map((c) => ({ name: c.reward, points: meanSeries(c.records, `mode/${mode}`) })) }]),
    ];
  });
  return lineChartSvg({ title: 'intuitor experiment rewards', panels });
}
