/**
 * The scoring fleet on one machine: the same input scored by score-completions alone (one
 * process, no queue), then through Redis by one worker and by two workers side by side (each an
 * `intuitor worker` process; on a machine without a GPU all of them share lavapipe and the CPU).
 * Per run: the aggregate tokens/s (completion tokens over the producer's wall time), and per job
 * the time in the scorer against the time in Redis: a worker's hand-over (the end of one job to
 * the start of the next while jobs were waiting: BullMQ moving the job to completed and fetching
 * the next, when the GPU idles), the producer's enqueue, and the delivery of the result (a worker's
 * end to the result in the producer's hands); with the bytes each job carries there and back.
 *
 *   node dist/bench/fleet.js [--lines N] [--chunk-lines C] [--model DIR] [--out PREFIX]
 *
 * writes PREFIX.json and PREFIX.md (default bench/results/fleet-node-<cores>core-<date>).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { modelFingerprint } from '../src/fleet/fingerprint.js';
import { queueChunkScorer } from '../src/fleet/producer.js';
import { parseRedisUrl } from '../src/fleet/redis.js';
import { queueStatus } from '../src/fleet/status.js';
import { GpuContext } from '../src/gpu/context.js';
import { SHIPPED_BASE_MODEL } from '../src/cli/run.js';
import { PACKAGE_ROOT } from '../src/paths.js';
import { Scorer } from '../src/score/engine.js';
import { localChunkScorer, type ChunkScorer } from '../src/score/lines.js';
import { scoreFile } from '../src/score/pipeline.js';
import { mulberry32 } from '../src/util/random.js';
import { startRedisServer } from './redis-server.js';

const { values: args } = parseArgs({ options: {
  lines: { type: 'string', default: '6000' },
  'chunk-lines': { type: 'string', default: '250' },
  model: { type: 'string', default: SHIPPED_BASE_MODEL },
  out: { type: 'string' },
} });
const LINES = Number(args.lines);
const CHUNK = Number(args['chunk-lines']);
const MODEL = args.model!;
const OPTIONS = { temperature: 1, perToken: false, weights: 'as-stored' as const };
const BIN = join(PACKAGE_ROOT, 'bin', 'intuitor.js');

interface Row {
  setup: string;
  workers: number;
  seconds: number;
  tokens: number;
  tokensPerSecond: number;
  jobs?: number;
  /** Per job, ms. */
  scoringMs?: number;
  handoverMs?: number;
  enqueueMs?: number;
  deliveryMs?: number;
  /** Per job: the input lines' bytes sent and the result's bytes returned. */
  jobBytes?: number;
  resultBytes?: number;
}

/** Addition problems with answers of random length, as text items (the shipped model's vocabulary). */
function writeInput(path: string, count: number, seed: number): void {
  const rand = mulberry32(seed);
  const int = (n: number) => Math.floor(rand() * n);
  const lines = Array.from({ length: count }, () => JSON.stringify({ prompt: `${int(1000)}+${int(1000)}=`, completion: String(int(10 ** (1 + int(8)))) }));
  writeFileSync(path, `${lines.join('\n')}\n`);
}

async function timed(scorer: ChunkScorer, input: string, out: string): Promise<{ seconds: number; tokens: number }> {
  const start = performance.now();
  const summary = await scoreFile({ input, out, scorer, chunkLines: CHUNK });
  return { seconds: (performance.now() - start) / 1000, tokens: summary.tokens };
}

function startWorker(url: string, queueName: string, name: string): { child: ChildProcess; ready: Promise<void> } {
  const child = spawn(process.execPath, [BIN, 'worker', '--queue', url, '--queue-name', queueName, '--model', MODEL, '--name', name], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const ready = new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
      if (log.includes(`queue ${queueName} at`)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`worker ${name} exited (${code}):\n${log}`)));
  });
  return { child, ready };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'intuitor-bench-fleet-'));
  const redis = await startRedisServer();
  const rows: Row[] = [];
  const workers: ChildProcess[] = [];
  try {
    const input = join(dir, 'input.jsonl');
    writeInput(input, LINES, 14);
    // Untimed first: each process compiles its shaders and prepares its forwards on its first chunks.
    const warmup = join(dir, 'warmup.jsonl');
    writeInput(warmup, 4 * CHUNK, 15);
    const loadBefore = loadavg()[0]!;
    const inputBytes = statSync(input).size;

    const ctx = await GpuContext.create();
    const adapter = ctx.adapter?.description ?? 'unknown';
    const local = await Scorer.load(ctx, MODEL);
    await timed(localChunkScorer(local, OPTIONS), warmup, join(dir, 'local-warmup.jsonl'));
    const one = await timed(localChunkScorer(local, OPTIONS), input, join(dir, 'local.jsonl'));
    await local.destroy();
    ctx.close();
    rows.push({ setup: 'score-completions, one process (no queue)', workers: 0, ...one, tokensPerSecond: one.tokens / one.seconds });
    process.stderr.write(`local: ${one.tokens} tokens in ${one.seconds.toFixed(1)} s\n`);
    const reference = readFileSync(join(dir, 'local.jsonl'), 'utf8');

    const connection = parseRedisUrl(redis.url);
    const model = await modelFingerprint(MODEL);
    for (const count of [1, 2]) {
      const queueName = `bench-${count}`;
      const started = Array.from({ length: count }, (_, i) => startWorker(redis.url, queueName, `w${i + 1}`));
      workers.push(...started.map((w) => w.child));
      await Promise.all(started.map((w) => w.ready));
      const producer = (output: string) => queueChunkScorer({ connection, queueName, model, options: OPTIONS, output, inFlight: 4 * count, log: (l) => process.stderr.write(`${l}\n`) });
      const warming = await producer(join(dir, `warmup-${count}.jsonl`));
      await timed(warming, warmup, join(dir, `warmup-${count}.jsonl`));
      await warming.close();
      const handover = async () => (await queueStatus(connection, queueName)).workers.reduce((t, w) => ({ ms: t.ms + w.handoverMs, count: t.count + w.handovers }), { ms: 0, count: 0 });
      const before = await handover();
      const out = join(dir, `fleet-${count}.jsonl`);
      const scorer = await producer(out);
      const run = await timed(scorer, input, out);
      await scorer.close();
      if (readFileSync(out, 'utf8') !== reference) throw new Error(`the ${count}-worker output differs from the one-process run`);
      const after = await handover();
      const handovers = after.count - before.count;
      const s = scorer.stats;
      rows.push({
        setup: `score-completions --queue, ${count} worker${count > 1 ? 's' : ''}`, workers: count, ...run, tokensPerSecond: run.tokens / run.seconds,
        jobs: s.jobs, scoringMs: s.workMs / s.jobs, handoverMs: handovers > 0 ? (after.ms - before.ms) / handovers : 0,
        enqueueMs: s.addMs / s.jobs, deliveryMs: s.deliveryMs / s.jobs, jobBytes: inputBytes / s.jobs, resultBytes: statSync(out).size / s.jobs,
      });
      process.stderr.write(`${count} worker(s): ${run.tokens} tokens in ${run.seconds.toFixed(1)} s\n`);
      for (const w of started) w.child.kill('SIGTERM');
      await Promise.all(started.map((w) => new Promise((resolve) => (w.child.exitCode !== null ? resolve(null) : w.child.once('exit', resolve)))));
    }

    const date = new Date().toISOString().slice(0, 10);
    const prefix = args.out ?? join(PACKAGE_ROOT, 'bench', 'results', `fleet-node-${cpus().length}core-${date}`);
    const report = { date, machine: `${cpus().length} cores, ${cpus()[0]?.model ?? ''}`, loadAverage: `${loadBefore.toFixed(1)} before, ${loadavg()[0]!.toFixed(1)} after`, adapter, model: relative(PACKAGE_ROOT, resolve(MODEL)), lines: LINES, chunkLines: CHUNK, rows };
    writeFileSync(`${prefix}.json`, `${JSON.stringify(report, null, 2)}\n`);
    writeFileSync(`${prefix}.md`, markdown(report));
    process.stdout.write(markdown(report));
  } finally {
    for (const w of workers) if (w.exitCode === null) w.kill('SIGKILL');
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function markdown(r: { date: string; machine: string; loadAverage: string; adapter: string; model: string; lines: number; chunkLines: number; rows: Row[] }): string {
  const f = (v: number | undefined, digits = 0) => (v === undefined ? '' : v.toFixed(digits));
  return [
    `# Scoring fleet on one machine (${r.date})`,
    '',
    `${r.machine} (1-minute load average ${r.loadAverage}: the machine is shared); adapter ${r.adapter}; model ${r.model}; ${r.lines} lines in chunks of ${r.chunkLines} (one job each); Redis on loopback.`,
    '',
    '| setup | tokens | seconds | tokens/s | jobs | scoring ms/job | hand-over ms/job (worker idle, Redis) | enqueue ms/job | delivery ms/job | bytes/job in | bytes/job out |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...r.rows.map((x) => `| ${x.setup} | ${x.tokens} | ${f(x.seconds, 1)} | ${f(x.tokensPerSecond)} | ${x.jobs ?? ''} | ${f(x.scoringMs)} | ${f(x.handoverMs, 1)} | ${f(x.enqueueMs, 1)} | ${f(x.deliveryMs, 1)} | ${f(x.jobBytes)} | ${f(x.resultBytes)} |`),
    '',
    'Each setup first scores 4 chunks untimed (shader compilation, prepared forwards). Outputs checked equal to the one-process run byte for byte.',
    '',
  ].join('\n');
}

await main();
