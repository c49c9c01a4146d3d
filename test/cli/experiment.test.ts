/**
 * The reward experiment and the two-mode bases from the command line (issue 15): bad input is
 * refused by flag before any work (a mixture or noise outside [0, 1], seeds < 1, an unknown task),
 * and `experiment rewards --quick` runs every reward on a base and writes its table and plot.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeGpu } from '../helpers.js';
import { ROOT, cli } from './run-cli.js';

describe('bad input names the flag', () => {
  test.each([
    [['build-base', '--task', 'addition-modes', '--scratch-share', '1.5'], '--scratch-share: expected a number ≥ 0, ≤ 1, got "1.5"'],
    [['build-base', '--task', 'addition-modes', '--direct-noise', '-0.1'], '--direct-noise: expected a number ≥ 0, ≤ 1, got "-0.1"'],
    [['build-base', '--task', 'addition', '--scratch-share', '0.5'], '--scratch-share: expected only with --task addition-modes (the task with two answer modes), got --task addition'],
    [['build-base', '--task', 'subtraction'], '--task: expected one of addition, arithmetic, addition-modes, got "subtraction"'],
    [['experiment', 'rewards', '--seeds', '0'], '--seeds: expected a positive integer, got "0"'],
    [['experiment', 'rewards', '--jobs', '0'], '--jobs: expected a positive integer, got "0"'],
    [['run', '--jobs', '1.5'], '--jobs: expected a positive integer, got "1.5"'],
    [['run', '--task', 'subtraction'], '--task: expected one of arithmetic, addition, addition-modes, countdown, permutations, math, got "subtraction"'],
  ])('%j', async (args, message) => {
    const r = await cli(args);
    expect(r.status).toBe(2);
    expect(r.messages).toEqual([`intuitor: error: ${message}`]);
  });
});

describeGpu('experiment rewards --quick', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'intuitor-experiment-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  test('runs the five rewards on a base and writes the table, the plot and the per-run summaries', async () => {
    const out = join(tmp, 'quick');
    const r = await cli(['experiment', 'rewards', '--quick', '--seeds', '1', '--models', join(ROOT, 'models', 'addition-modes-q'), '--out', out], ROOT, 300_000);
    expect(r.status).toBe(0);
    const summary = readFileSync(join(out, 'summary.md'), 'utf8');
    for (const reward of ['ground-truth', 'self-certainty', 'random', 'format', 'incorrect']) expect(summary).toContain(`| addition-modes-q | ${reward} |`);
    expect(existsSync(join(out, 'plot.svg'))).toBe(true);
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as { runs: unknown[] }[];
    expect(results.map((c) => c.runs.length)).toEqual([1, 1, 1, 1, 1]);
  }, 300_000);
});
