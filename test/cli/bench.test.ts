/**
 * `intuitor bench`: the quick kernel run writes one schema with ceilings and ratios; the policy
 * suites (training step, decode) run on a small model; bad choices are listed; unavailable
 * backends and sizes that don't fit are reported as skipped while the run goes on. Time limits
 * here only stop a hung run: speed is measured by the benchmarks themselves.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchReport } from '../../bench/run.js';
import type { BenchRow } from '../../bench/schema.js';
import { SKIP_GPU, SKIP_NATIVE } from '../helpers.js';
import { cli, expectSuccess } from './run-cli.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'intuitor-bench-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ROW_FIELDS = ['kernel', 'backend', 'dtype', 'shape', 'device', 'method', 'medianMs', 'p20Ms', 'p80Ms', 'samples', 'gbps', 'gflops',
  'rowsPerSecond', 'ceiling', 'fractionOfCeiling', 'ratios', 'version', 'timestamp'];

const backends = ['js', ...(SKIP_NATIVE ? [] : ['native']), ...(SKIP_GPU ? [] : ['webgpu'])];

test('--quick writes the JSON, Markdown and chart it was asked for', async () => {
  const kernels = 'token_stats_forward,token_stats_backward,linear,attention';
  const r = await cli(['bench', '--quick', '--kernels', kernels, '--backends', [...backends, 'gpujs'].join(','), '--json', join(dir, 'q.json'), '--markdown', join(dir, 'q.md'), '--chart', join(dir, 'q.svg')], undefined, 280_000);
  expectSuccess(r);
  const report = JSON.parse(readFileSync(join(dir, 'q.json'), 'utf8')) as BenchReport;
  expect(report.quick).toBe(true);
  for (const row of report.rows) {
    for (const field of ROW_FIELDS) expect(row).toHaveProperty(field);
    expect(row.medianMs).toBeGreaterThan(0);
    expect(row.p20Ms).toBeLessThanOrEqual(row.p80Ms);
  }
  const forward = report.rows.filter((row) => row.kernel === 'token_stats_forward');
  for (const backend of backends) expect(forward.some((row) => row.backend === backend && row.shape.join() === '8,151936')).toBe(true);
  if (!SKIP_GPU) {
    expect(report.rows.some((row) => row.kernel === 'copy' && row.gbps! > 0)).toBe(true);
    expect(report.rows.some((row) => row.kernel === 'matmul' && row.gflops! > 0)).toBe(true);
    const gpuForward = forward.find((row) => row.backend === 'webgpu')!;
    expect(gpuForward.fractionOfCeiling).toBeGreaterThan(0);
    expect(gpuForward.ratios.js).toBeGreaterThan(0);
  }
  const md = readFileSync(join(dir, 'q.md'), 'utf8');
  expect(md).toMatch(/## token_stats_forward\n\n\| kernel \| backend/);
  expect(md).toMatch(/## token_stats_backward\n/);
  expect(readFileSync(join(dir, 'q.svg'), 'utf8')).toMatch(/^<svg [^>]*>[\s\S]*<\/svg>\n$/);
  expect(r.stdout).toContain('## token_stats_forward');
}, 300_000);

(SKIP_GPU ? test.skip : test)('the policy suites time a training step, greedy decoding (batch 1 and 32) and decode steps (batch 1, 32 and 128, f32 and bf16 weights) of a small model, and --profile breaks both down by kernel', async () => {
  const r = await cli(['bench', '--quick', '--kernels', 'train_step,decode', '--backends', 'webgpu', '--profile', '--json', join(dir, 'p.json')], undefined, 280_000);
  expectSuccess(r);
  const report = JSON.parse(readFileSync(join(dir, 'p.json'), 'utf8')) as BenchReport;
  const step = report.rows.find((row) => row.kernel === 'train_step')!;
  expect(step.rowsPerSecond).toBeGreaterThan(0);
  expect(step.gflops).toBeGreaterThan(0);
  expect(step.note).toMatch(/GPU memory peak \d+\.\d+ GiB/);
  expect(report.rows.filter((row) => row.kernel === 'decode').map((row) => row.shape[0])).toEqual([1, 32]);
  // decode_step at batch 1 and issue 16's batches, f32 and bf16 weights, each against the weights-read floor (its GB/s over the copy's).
  const steps = report.rows.filter((row) => row.kernel === 'decode_step');
  expect(steps.map((row) => `${row.dtype} ${row.shape[0]}`)).toEqual(['f32 1', 'f32 32', 'f32 128', 'bf16 1', 'bf16 32', 'bf16 128']);
  expect(steps.every((row) => row.rowsPerSecond! > 0 && row.gbps! > 0 && row.fractionOfCeiling! > 0)).toBe(true);
  expect(report.profiles.map((p) => p.name)).toEqual(['train_step 2×64 (one micro-batch: forward + backward)',
    ...['f32 weights, batch 1', 'f32 weights, batch 32', 'f32 weights, batch 128', 'bf16 weights, batch 1', 'bf16 weights, batch 32', 'bf16 weights, batch 128']
      .map((what) => `decode_step ${what}, 24 cached keys`)]);
  const decode = report.profiles[1]!;
  expect(decode.rows.reduce((n, row) => n + row.dispatches, 0)).toBe(decode.dispatches);
  expect(decode.rows.some((row) => row.kernel.startsWith('attention_decode:'))).toBe(true);
  // Batch 1: each layer's norm + q/k/v and norm + gate/up + SwiGLU are one linear_norm dispatch each, no rmsnorm or swiglu of their own (the final norm remains).
  expect(decode.rows.filter((row) => row.kernel.startsWith('linear_norm:')).reduce((n, row) => n + row.dispatches, 0)).toBe(4);
  expect(decode.rows.find((row) => row.kernel.startsWith('rmsnorm:'))?.dispatches).toBe(1);
  expect(decode.rows.some((row) => row.kernel.startsWith('swiglu:'))).toBe(false);
  expect(r.stdout).toContain('## Where the GPU time goes');
}, 300_000);

(SKIP_GPU ? test.skip : test)('the scoring suite times score-completions\' path file to file on a small model, in sequence tokens/s', async () => {
  const r = await cli(['bench', '--quick', '--kernels', 'score_completions', '--backends', 'webgpu', '--json', join(dir, 's.json')], undefined, 280_000);
  expectSuccess(r);
  const report = JSON.parse(readFileSync(join(dir, 's.json'), 'utf8')) as BenchReport;
  const rows = report.rows.filter((row) => row.kernel === 'score_completions');
  expect(rows.map((row) => [row.backend, row.dtype, row.shape])).toEqual([['webgpu', 'f32', [32, 128]]]);
  expect(rows[0]!.rowsPerSecond).toBeGreaterThan(0);
  expect(rows[0]!.note).toMatch(/32 pre-tokenised lines of 32 \+ 96 tokens/);
}, 300_000);

(SKIP_GPU ? test.skip : test)('lm_head_stats times the fused lm_head + statistics against linear then token stats, with each path\'s peak memory', async () => {
  const r = await cli(['bench', '--quick', '--kernels', 'lm_head_stats', '--backends', 'webgpu', '--json', join(dir, 'l.json')], undefined, 280_000);
  expectSuccess(r);
  const report = JSON.parse(readFileSync(join(dir, 'l.json'), 'utf8')) as BenchReport;
  const rows = report.rows.filter((row) => row.kernel === 'lm_head_stats');
  const shape = [128, 128, 8192];
  expect(rows.map((row) => [row.backend, row.dtype, row.shape])).toEqual(['f32', 'bf16'].flatMap((dtype) => [['webgpu/fused', dtype, shape], ['webgpu/unfused', dtype, shape]]));
  const peak = (row: BenchRow) => Number(/peak ([0-9.]+) MiB/.exec(row.note!)![1]);
  for (let i = 0; i < rows.length; i += 2) {
    // The unfused path's peak holds the 4 MiB of logits (128 × 8192 f32); the fused one's does not.
    expect(peak(rows[i + 1]!)).toBeGreaterThanOrEqual(4);
    expect(peak(rows[i]!)).toBeLessThan(1);
    expect(rows[i]!.ratios['webgpu/unfused']).toBeGreaterThan(0);
  }
}, 300_000);

test('an unknown kernel or backend is refused with the valid choices', async () => {
  const kernel = await cli(['bench', '--kernels', 'token_stats_forward,softmax']);
  expect(kernel.status).toBe(2);
  expect(kernel.messages).toEqual(['intuitor: error: --kernels: expected a comma-separated list of token_stats_forward, token_stats_backward, linear, linear_decode, attention, lm_head_stats, train_step, decode, score_completions, serve, got "softmax"']);
  const backend = await cli(['bench', '--backends', 'cuda']);
  expect(backend.status).toBe(2);
  expect(backend.messages).toEqual(['intuitor: error: --backends: expected a comma-separated list of webgpu, native, js, gpujs, got "cuda"']);
});

test('an unavailable backend is skipped with its reason, and a size that does not fit is reported while the run goes on', async () => {
  const json = join(dir, 'skip.json');
  // gpu.js forced into its headless-GL mode cannot run without a display; 10^8 rows of V = 151,936 cannot be allocated.
  const r = await cli(['bench', '--quick', '--backends', 'js,gpujs', '--kernels', 'token_stats_forward', '--rows', '100000000,8', '--json', json], undefined, 120_000, { INTUITOR_GPUJS_MODE: 'headlessgl', DISPLAY: '' });
  expectSuccess(r);
  const report = JSON.parse(readFileSync(json, 'utf8')) as BenchReport;
  expect(report.skipped.some((s) => s.startsWith('gpujs: '))).toBe(true);
  expect(report.skipped.some((s) => /^token_stats N=100000000 f32: out of memory/.test(s))).toBe(true);
  expect(report.rows.some((row) => row.backend === 'js' && row.shape[0] === 8)).toBe(true);
}, 130_000);
