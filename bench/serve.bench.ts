/**
 * Suite `serve`: a load test of `intuitor serve` on loopback with autocannon, bounded in time
 * (durationSeconds) and in count (maxRequests). The server runs as its own process (the CLI), so
 * its memory is its own: RSS is read from its /metrics (process_resident_memory_bytes) after a
 * warm-up request per distinct body and again after the load.
 *
 * Many connections send `POST /score` bodies drawn in turn from a fixed set of addition problems
 * (1–8 items each, the shipped model's task); every response is checked against offline scoring
 * of that body alone (Scorer.score in this process, same model): each statistic within 1e-5
 * (atol and rtol: batches of other shapes sum in another order on the GPU, so bit-equality is not
 * promised). A mismatch, a non-2xx status or a connection error counts as an error.
 * tokens/s counts prompt + completion tokens of the checked responses.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import autocannon from 'autocannon';
import type { GpuContext } from '../src/gpu/context.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { Scorer, resultJson } from '../src/score/engine.js';
import { mulberry32 } from '../src/util/random.js';
import type { BenchEnv } from './harness.js';
import { rowFromSamples } from './schema.js';

export const SERVE_KERNELS = ['serve'] as const;

/** The shipped base model: its task (addition) gives the request texts. */
export const SHIPPED_MODEL = join(PACKAGE_ROOT, 'models', 'addition-base');

/** Server and offline results of one body agree within this, field by field (see above). */
const TOLERANCE = { atol: 1e-5, rtol: 1e-5 };

export interface LoadTestOptions {
  gpu: GpuContext;
  model: string;
  connections: number;
  durationSeconds: number;
  maxRequests: number;
  /** Distinct request bodies the connections cycle through. */
  bodies: number;
  seed?: number;
  /** More flags for `intuitor serve`. */
  serverArgs?: string[];
}

export interface LoadTestReport {
  connections: number;
  durationSeconds: number;
  requests: number;
  /** Responses compared with offline scoring and found equal. */
  checked: number;
  /** Non-2xx responses, connection errors and timeouts, and responses unequal to offline scoring. */
  errors: number;
  mismatches: number;
  requestsPerSecond: number;
  tokensPerSecond: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  /** Every response's latency, in arrival order. */
  latenciesMs: number[];
  rssBeforeBytes: number;
  rssAfterBytes: number;
  /** The server's exit status after SIGTERM (0: drained and stopped cleanly). */
  serverExitCode: number | null;
}

/** Request bodies of addition problems: "a+b=" and a completion that is the sum or a near miss. */
export function additionBodies(count: number, seed: number): string[] {
  const rand = mulberry32(seed);
  const int = (n: number) => Math.floor(rand() * n);
  return Array.from({ length: count }, () => {
    const items = Array.from({ length: 1 + int(8) }, () => {
      const a = int(1000);
      const b = int(1000);
      return { prompt: `${a}+${b}=`, completion: String(a + b + (rand() < 0.5 ? 0 : 1 + int(9))) };
    });
    return JSON.stringify({ items });
  });
}

function close(got: unknown, want: unknown): boolean {
  if (typeof want === 'number') return typeof got === 'number' && Math.abs(got - want) <= TOLERANCE.atol + TOLERANCE.rtol * Math.abs(want);
  return got === want;
}

/** Whether a /score response body equals the offline results, field by field within the tolerance. */
function sameResults(body: string, want: Record<string, unknown>[]): boolean {
  let got: { results?: Record<string, unknown>[] };
  try {
    got = JSON.parse(body) as typeof got;
  } catch {
    return false;
  }
  return Array.isArray(got.results) && got.results.length === want.length
    && want.every((w, i) => Object.keys(w).every((k) => close(got.results![i]![k], w[k])));
}

/** Starts `intuitor serve` on a free loopback port; its URL once it listens. */
async function startServer(model: string, args: string[]): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [join(PACKAGE_ROOT, 'bin', 'intuitor.js'), 'serve', '--model', model, '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const lines = createInterface({ input: child.stdout! });
  const url = await new Promise<string>((resolve, reject) => {
    lines.on('line', (line) => {
      const match = /listening on (http:\/\/\S+)/.exec(line);
      if (match) resolve(match[1]!);
    });
    child.once('exit', (code) => reject(new Error(`intuitor serve exited (${code}) before listening: ${stderr.trim()}`)));
  });
  return { child, url };
}

async function serverRss(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const match = /^process_resident_memory_bytes (\S+)$/m.exec(text);
  if (!match) throw new Error(`${url}/metrics has no process_resident_memory_bytes`);
  return Number(match[1]);
}

export async function serveLoadTest(options: LoadTestOptions): Promise<LoadTestReport> {
  const bodies = additionBodies(options.bodies, options.seed ?? 0);
  // Offline: each body scored alone.
  const scorer = await Scorer.load(options.gpu, options.model);
  const expected: Record<string, unknown>[][] = [];
  const tokens: number[] = [];
  try {
    for (const body of bodies) {
      const items = (JSON.parse(body) as { items: unknown[] }).items.map((value, i) => scorer.parse(value, `items[${i}]`, i));
      expected.push((await scorer.score(items)).map(resultJson));
      tokens.push(items.reduce((sum, it) => sum + it.promptIds.length + it.completionIds.length, 0));
    }
  } finally {
    await scorer.destroy();
  }

  const { child, url } = await startServer(options.model, options.serverArgs ?? []);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const headers = { 'content-type': 'application/json' };
    for (const [i, body] of bodies.entries()) {
      const response = await fetch(`${url}/score`, { method: 'POST', headers, body });
      if (!sameResults(await response.text(), expected[i]!)) throw new Error(`warm-up: body ${i} scored alone differs from offline scoring`);
    }
    const rssBeforeBytes = await serverRss(url);

    let next = 0;
    let checked = 0;
    let mismatches = 0;
    let checkedTokens = 0;
    const latenciesMs: number[] = [];
    let finish!: (outcome: { err: unknown; result: autocannon.Result }) => void;
    const finished = new Promise<{ err: unknown; result: autocannon.Result }>((resolve) => { finish = resolve; });
    const instance = autocannon({
      url: `${url}/score`, method: 'POST', headers,
      connections: options.connections, duration: options.durationSeconds, maxOverallRequests: options.maxRequests,
      requests: [{
        setupRequest: (request, context) => {
          const index = next++ % bodies.length;
          (context as { index: number }).index = index;
          return { ...request, body: bodies[index] };
        },
        onResponse: (status, body, context) => {
          const { index } = context as { index: number };
          if (status === 200 && sameResults(body, expected[index]!)) {
            checked += 1;
            checkedTokens += tokens[index]!;
          } else if (status === 200) {
            mismatches += 1;
          }
        },
      }],
    }, (err, result) => finish({ err, result }));
    instance.on('response', (_client, _status, _bytes, responseTime) => latenciesMs.push(responseTime));
    const { err, result } = await finished;
    if (err) throw err;
    const rssAfterBytes = await serverRss(url);
    child.kill('SIGTERM');
    const serverExitCode = await exited;
    const requests = result.requests.total;
    return {
      connections: options.connections, durationSeconds: result.duration, requests, checked, mismatches,
      errors: result.errors + result.non2xx + mismatches,
      requestsPerSecond: requests / result.duration, tokensPerSecond: checkedTokens / result.duration,
      latencyP50Ms: result.latency.p50, latencyP99Ms: result.latency.p99, latenciesMs,
      rssBeforeBytes, rssAfterBytes, serverExitCode,
    };
  } finally {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
  }
}

/** The load test as a benchmark row: latency samples, tokens/s as rows/s, the rest in the note. */
export async function serveSuite(env: BenchEnv, kernels: ReadonlySet<string>): Promise<void> {
  const gpu = env.gpu;
  if (!gpu || !kernels.has('serve')) return;
  const size = env.quick ? { connections: 8, durationSeconds: 5, maxRequests: 5_000 } : { connections: 32, durationSeconds: 30, maxRequests: 100_000 };
  const report = await serveLoadTest({ gpu, model: SHIPPED_MODEL, bodies: 64, ...size });
  const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
  const note = `POST /score on loopback, models/addition-base, ${report.connections} connections × ${report.durationSeconds.toFixed(0)} s: ${report.requests} requests, ${report.requestsPerSecond.toFixed(0)} req/s, ${report.tokensPerSecond.toFixed(0)} tokens/s, p50 ${report.latencyP50Ms} ms, p99 ${report.latencyP99Ms} ms, ${report.errors} errors (${report.checked} checked against offline scoring), server RSS ${mib(report.rssBeforeBytes)} → ${mib(report.rssAfterBytes)} MiB, exit ${report.serverExitCode} after SIGTERM`;
  const row = rowFromSamples({ kernel: 'serve', backend: 'webgpu', dtype: 'f32', shape: [size.connections, size.durationSeconds], device: env.gpuDevice, method: 'autocannon', note }, report.latenciesMs, 0, null);
  delete row.samplesMs;
  row.rowsPerSecond = report.tokensPerSecond;
  env.rows.push(row);
}
