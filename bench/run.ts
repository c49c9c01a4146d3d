/**
 * `intuitor bench`: every kernel suite over every backend that has the kernel, with the machine's
 * ceilings measured first in the same run, one result schema (./schema.ts), a Markdown report
 * (a table per kernel), a roofline-style SVG chart and a JSON file for bench/results/.
 */
import { readFileSync } from 'node:fs';
import { DTYPES, type DType } from '../src/dtype.js';
import { InvalidArgumentError } from '../src/errors.js';
import { profileTable, type DispatchProfile } from '../src/gpu/profile.js';
import { PACKAGE_VERSION } from '../src/paths.js';
import { rooflineSvg } from './chart.js';
import { BENCH_BACKENDS, closeEnvironment, measureCeilings, openEnvironment, type BenchBackend, type BenchEnv } from './harness.js';
import { addRatios, markdownTable, writeOutput, type BenchRow } from './schema.js';
import { MODEL_KERNELS, modelSuite } from './model.bench.js';
import { POLICY_KERNELS, policySuite } from './policy.bench.js';
import { SERVE_KERNELS, serveSuite } from './serve.bench.js';
import { TOKEN_STATS_KERNELS, tokenStatsSuite } from './token-stats.bench.js';

export const BENCH_KERNELS = [...TOKEN_STATS_KERNELS, ...MODEL_KERNELS, ...POLICY_KERNELS, ...SERVE_KERNELS] as const;

export interface BenchOptions {
  kernels?: string[];
  backends?: string[];
  quick?: boolean;
  rows?: number[];
  dtypes?: string[];
  minChunks?: number[];
  /** Rows measured by bench/peers/torch_token_stats.py on the same card, merged into the report. */
  peers?: string;
  json?: string;
  markdown?: string;
  chart?: string;
  /** Per-kernel GPU time of the policy's train step and decode step (src/gpu/profile.ts). */
  profile?: boolean;
}

export interface BenchReport {
  version: string;
  timestamp: string;
  quick: boolean;
  devices: { gpu: string; cpu: string };
  ceilings: BenchEnv['ceilings'];
  skipped: string[];
  rows: BenchRow[];
  profiles: DispatchProfile[];
}

function choices<T extends string>(argument: string, given: string[] | undefined, valid: readonly T[]): T[] {
  if (given === undefined) return [...valid];
  const bad = given.filter((g) => !(valid as readonly string[]).includes(g));
  if (bad.length > 0 || given.length === 0) {
    throw new InvalidArgumentError(argument, `a comma-separated list of ${valid.join(', ')}`, given.length === 0 ? 'an empty list' : JSON.stringify(bad.join(',')));
  }
  return given as T[];
}

function positiveInts(argument: string, values: number[] | undefined): void {
  if (values?.some((v) => !Number.isSafeInteger(v) || v < 1)) throw new InvalidArgumentError(argument, 'positive integers', JSON.stringify(values.join(',')));
}

export function markdownReport(report: BenchReport): string {
  const lines = [`# intuitor bench (${report.quick ? 'quick, ' : ''}${report.timestamp})`, '', `- GPU: ${report.devices.gpu || 'none'}`, `- CPU: ${report.devices.cpu}`];
  for (const [name, c] of Object.entries(report.ceilings)) {
    if (c) lines.push(`- ceiling ${name}: ${c.name}: ${c.gbps ? `${c.gbps.toFixed(1)} GB/s` : `${c.gflops!.toFixed(0)} GFLOP/s`}`);
  }
  for (const kernel of [...new Set(report.rows.map((r) => r.kernel))]) {
    lines.push('', `## ${kernel}`, '', markdownTable(report.rows.filter((r) => r.kernel === kernel)));
  }
  if (report.profiles.length > 0) lines.push('', '## Where the GPU time goes', '', ...report.profiles.map((p) => `${profileTable(p)}\n`));
  if (report.skipped.length > 0) lines.push('', '## Skipped', '', ...report.skipped.map((s) => `- ${s}`));
  return lines.join('\n') + '\n';
}

export async function runBench(options: BenchOptions): Promise<BenchReport> {
  const kernels = choices('--kernels', options.kernels, BENCH_KERNELS);
  const backends = choices('--backends', options.backends, BENCH_BACKENDS);
  const dtypes = choices('--dtypes', options.dtypes, DTYPES) as DType[];
  positiveInts('--rows', options.rows);
  positiveInts('--min-chunks', options.minChunks);
  if (options.chart !== undefined && !options.chart.endsWith('.svg')) throw new InvalidArgumentError('--chart', 'a file name ending in .svg', JSON.stringify(options.chart));
  const peerRows = options.peers === undefined ? [] : (JSON.parse(readFileSync(options.peers, 'utf8')) as { rows: BenchRow[] }).rows;
  const quick = options.quick ?? false;

  const env = await openEnvironment(quick, new Set<BenchBackend>(backends), options.profile ?? false);
  try {
    await measureCeilings(env);
    // On NVIDIA the best f32 matmul is cuBLAS (through PyTorch, same card, same session) when its
    // rows came along: every FLOP/s fraction is then of it.
    const cublas = peerRows.find((r) => r.kernel === 'matmul' && r.backend === 'torch-cublas' && r.gflops);
    if (cublas) env.ceilings.gpuMatmul = { name: `cuBLAS f32 matmul ${cublas.shape[0]}³ (PyTorch)`, gflops: cublas.gflops! };
    await tokenStatsSuite(env, {
      kernels: new Set(kernels),
      rows: options.rows ?? (quick ? [8, 256] : [8, 256, 2048]),
      dtypes: options.dtypes ? dtypes : quick ? ['f32'] : ['f32', 'bf16'],
      minChunks: options.minChunks ?? [],
    });
    await modelSuite(env, new Set(kernels), options.dtypes ? dtypes : ['f32', 'bf16']);
    await policySuite(env, new Set(kernels));
    await serveSuite(env, new Set(kernels));
  } finally {
    closeEnvironment(env);
  }
  const rows = [...env.rows, ...peerRows];
  addRatios(rows);
  const report: BenchReport = {
    version: PACKAGE_VERSION, timestamp: new Date().toISOString(), quick,
    devices: { gpu: env.gpuDevice, cpu: env.cpuDevice }, ceilings: env.ceilings, skipped: env.skipped, rows, profiles: env.profiles,
  };
  if (options.json) await writeOutput(options.json, JSON.stringify(report, null, 2) + '\n');
  if (options.markdown) await writeOutput(options.markdown, markdownReport(report));
  if (options.chart) await writeOutput(options.chart, rooflineSvg(rows, `intuitor bench: ${env.gpuDevice || env.cpuDevice}`));
  return report;
}
