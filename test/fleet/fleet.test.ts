/**
 * The scoring fleet end to end, with real processes: a redis-server per test, `intuitor worker`s
 * and `intuitor score-completions --queue` as children. Things get killed (a worker with SIGKILL
 * mid-job, Redis restarted empty, the producer with SIGKILL) and in every case the output must
 * equal the one-machine run byte for byte: no line lost, none duplicated. Workers run with a 2 s
 * lock so a dead one's job comes back quickly.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { DEFAULT_QUEUE_NAME } from '../../src/fleet/protocol.js';
import { workerKey, type WorkerState } from '../../src/fleet/worker.js';
import { mulberry32 } from '../../src/util/random.js';
import { ROOT } from '../cli/run-cli.js';
import { FIXTURES, describeGpu } from '../helpers.js';
import { intuitor, startRedis, stopAll, type Intuitor, type RedisServer } from './redis.js';

const MODEL = join(FIXTURES, 'tiny-qwen2');
const OTHER_MODEL = join(ROOT, 'models', 'addition-base');
const LINES = 200;
const CHUNK = 20;
/** Line 7 is not JSON and line 123 has an id outside the 384-token vocabulary: reported, skipped, never retried. */
const BAD_LINES = [7, 123];

let dir: string;
let input: string;
let reference: string;
let outputs = 0;
/** The children's fingerprint cache, and the CA of the TLS test's self-signed certificate. */
const env = () => ({ XDG_CACHE_HOME: join(dir, 'cache'), NODE_EXTRA_CA_CERTS: join(dir, 'cert.pem') });

function writeInput(path: string): void {
  const rand = mulberry32(14);
  const ids = (n: number) => Array.from({ length: n }, () => Math.floor(rand() * 384));
  const lines = Array.from({ length: LINES }, (_, i) => {
    const line = i + 1;
    if (line === BAD_LINES[0]) return '{"prompt_ids": [1, 2';
    if (line === BAD_LINES[1]) return JSON.stringify({ prompt_ids: [1, 2], completion_ids: [3, 384] });
    if (line % 10 === 0) return JSON.stringify({ id: `text-${line}`, prompt: 'The answer is', completion: ` ${line} apples` });
    return JSON.stringify({ prompt_ids: ids(1 + Math.floor(rand() * 12)), completion_ids: ids(1 + Math.floor(rand() * 16)) });
  });
  writeFileSync(path, `${lines.join('\n')}\n`);
}

const nextOut = () => join(dir, `out-${++outputs}.jsonl`);

function worker(redis: RedisServer, name: string, model = MODEL, extra: string[] = []): Intuitor {
  return intuitor(['worker', '--queue', redis.url, '--model', model, '--name', name, '--lock-duration', '2000', ...extra], env());
}

function producer(redis: RedisServer, out: string, extra: string[] = []): Intuitor {
  return intuitor(['score-completions', '--model', MODEL, '--input', input, '--out', out, '--chunk-lines', String(CHUNK), '--queue', redis.url, '--in-flight', '4', ...extra], env());
}

async function status(redis: RedisServer): Promise<{ waiting: number; active: number; done: number; failed: number; workers: { name: string; jobs: number }[] }> {
  const s = intuitor(['queue', 'status', '--queue', redis.url, '--json'], env());
  expect(await s.exit).toBe(0);
  return JSON.parse(s.output().split('\n').find((l) => l.startsWith('{'))!);
}

/** The chunks (first lines) a worker's log says it scored. */
const scoredChunks = (w: Intuitor) => [...w.output().matchAll(/: lines (\d+)–\d+ of run/g)].map((m) => Number(m[1]));

/** Exit 2 (the bad lines), each reported with its number, and the output equal to the one-machine run. */
async function expectFleetRun(p: Intuitor, out: string): Promise<void> {
  expect(await p.exit).toBe(2);
  for (const line of BAD_LINES) expect(p.output()).toMatch(new RegExp(`skipped \\S+ line ${line}: `));
  expect(readFileSync(out, 'utf8')).toBe(reference);
}

describeGpu('scoring fleet', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'intuitor-fleet-'));
    input = join(dir, 'input.jsonl');
    writeInput(input);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
    const out = join(dir, 'one-machine.jsonl');
    const local = intuitor(['score-completions', '--model', MODEL, '--input', input, '--out', out, '--chunk-lines', String(CHUNK)], env());
    expect(await local.exit).toBe(2);
    reference = readFileSync(out, 'utf8');
    expect(reference.split('\n').length - 1).toBe(LINES - BAD_LINES.length);
    // The one-machine reference run takes ~20 s alone; under load (other suites' GPU work) 6× that.
  }, 300_000);
  afterAll(async () => {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  });

  test('two workers share the run; the output equals the one-machine run; bad lines are reported, not retried; queue status and metrics show it all', async () => {
    const redis = await startRedis();
    try {
      const workers = [worker(redis, 'w1', MODEL, ['--metrics-port', '0']), worker(redis, 'w2')];
      await Promise.all(workers.map((w) => w.waitFor(/queue intuitor-score at redis:/)));
      const out = nextOut();
      await expectFleetRun(producer(redis, out), out);
      const chunks = workers.flatMap(scoredChunks).sort((a, b) => a - b);
      expect(chunks).toEqual(Array.from({ length: LINES / CHUNK }, (_, k) => k * CHUNK + 1));
      for (const w of workers) expect(scoredChunks(w).length).toBeGreaterThan(0);
      const s = await status(redis);
      expect(s).toMatchObject({ waiting: 0, active: 0, done: LINES / CHUNK, failed: 0 });
      expect(s.workers.map((w) => w.name)).toEqual(['w1', 'w2']);
      expect(s.workers.map((w) => w.jobs)).toEqual(workers.map((w) => scoredChunks(w).length));
      const metricsUrl = /Prometheus metrics at (http:\S+)/.exec(workers[0]!.output())![1]!;
      const metrics = await (await fetch(metricsUrl)).text();
      expect(metrics).toContain(`intuitor_requests_total{route="job",status="done"} ${scoredChunks(workers[0]!).length}`);
      expect(metrics).toMatch(/intuitor_scored_tokens_total\{part="completion"\} [1-9]/);
      for (const w of workers) w.child.kill('SIGTERM');
      expect(await Promise.all(workers.map((w) => w.exit))).toEqual([0, 0]);
    } finally {
      await redis.stop();
    }
  });

  test('a worker killed with SIGKILL mid-job: another takes its job once the lock expires', async () => {
    const redis = await startRedis();
    try {
      const first = worker(redis, 'doomed');
      const out = nextOut();
      const p = producer(redis, out);
      // Killed once it has published that it is on lines 21–40 (its state key; see queue status).
      const client = new Redis(redis.url);
      try {
        for (;;) {
          const state = await client.get(workerKey(DEFAULT_QUEUE_NAME, 'doomed'));
          if (state !== null && (JSON.parse(state) as WorkerState).current.includes('(lines 21–40)')) break;
          await new Promise((wake) => setTimeout(wake, 20));
        }
      } finally {
        client.disconnect();
      }
      first.child.kill('SIGKILL');
      await first.exit;
      expect(scoredChunks(first)).toEqual([1]);
      const s = await status(redis);
      expect(s.active).toBe(1);
      const second = worker(redis, 'rescuer');
      await expectFleetRun(p, out);
      expect(scoredChunks(second)).toContain(21);
      second.child.kill('SIGTERM');
      expect(await second.exit).toBe(0);
    } finally {
      await redis.stop();
    }
  });

  test('Redis restarted mid-run (empty): producer and worker reconnect, lost jobs are added again, the run completes', async () => {
    const redis = await startRedis();
    try {
      const w = worker(redis, 'w1');
      const out = nextOut();
      const p = producer(redis, out);
      await w.waitFor(/: lines 1–20 of run/);
      await redis.restart();
      await expectFleetRun(p, out);
      expect(p.output()).toMatch(/is gone from Redis .*adding it again/);
      w.child.kill('SIGTERM');
      expect(await w.exit).toBe(0);
    } finally {
      await redis.stop();
    }
  });

  test('the producer killed with SIGKILL: --resume completes the run', async () => {
    const redis = await startRedis();
    try {
      const w = worker(redis, 'w1');
      const out = nextOut();
      const first = producer(redis, out);
      await first.waitFor(/lines [4-9]\d /);
      first.child.kill('SIGKILL');
      await first.exit;
      const resumed = producer(redis, out, ['--resume']);
      expect(await resumed.exit).toBe(2);
      expect(resumed.output()).toMatch(/resumed after line \d+/);
      expect(readFileSync(out, 'utf8')).toBe(reference);
      w.child.kill('SIGTERM');
      expect(await w.exit).toBe(0);
    } finally {
      await redis.stop();
    }
  });

  test('SIGTERM: a worker finishes the job it is on, hands in the result and exits 0', async () => {
    const redis = await startRedis();
    try {
      const first = worker(redis, 'leaving');
      const out = nextOut();
      const p = producer(redis, out);
      await first.waitFor(/: lines 1–20 of run/);
      first.child.kill('SIGTERM');
      expect(await first.exit).toBe(0);
      // Jobs are waiting, so the worker is almost always on the next one when the signal comes;
      // then that job's result is handed in after the signal.
      const log = first.output();
      const onJob = /SIGTERM: finishing job \S+ \(lines (\d+)–\d+\)/.exec(log);
      expect(log).toMatch(/SIGTERM: (between jobs|finishing job)/);
      if (onJob !== null) expect(log.slice(onJob.index)).toMatch(new RegExp(`: lines ${onJob[1]}–\\d+ of run`));
      expect(log).toMatch(new RegExp(`stopped after ${scoredChunks(first).length} jobs`));
      const second = worker(redis, 'staying');
      await expectFleetRun(p, out);
      // Nothing the first worker started was left to the second.
      expect(scoredChunks(second).filter((c) => scoredChunks(first).includes(c))).toEqual([]);
      second.child.kill('SIGTERM');
      expect(await second.exit).toBe(0);
    } finally {
      await redis.stop();
    }
  });

  test('a worker of another model refuses the job, once, and both sides say why; with the right worker, --resume gives the failed jobs their tries again', async () => {
    const redis = await startRedis();
    try {
      const wrong = worker(redis, 'wrong', OTHER_MODEL);
      const out = nextOut();
      const p = producer(redis, out);
      expect(await p.exit).toBe(1);
      const why = /worker wrong \(model \S+addition-base\) refuses lines \d+–\d+ of run \w+: the job is for model \w+…, this worker serves \w+…: config\.json differs, model\.safetensors differs, tokenizer\.json differs/;
      expect(p.output()).toMatch(new RegExp(`intuitor: error: lines \\d+–\\d+: ${why.source}`));
      expect(wrong.output()).toMatch(why);
      const s = await status(redis);
      expect(s.failed).toBeGreaterThan(0);
      expect(s.done).toBe(0);
      wrong.child.kill('SIGTERM');
      expect(await wrong.exit).toBe(0);
      const right = worker(redis, 'right');
      await expectFleetRun(producer(redis, out, ['--resume']), out);
      right.child.kill('SIGTERM');
      expect(await right.exit).toBe(0);
    } finally {
      await redis.stop();
    }
  });

  test('a password-protected Redis over TLS (rediss://): the run works, and the password appears in no output, nor in a failed login\'s error', async () => {
    const password = 'fleet-S3cret-pw';
    const redis = await startRedis({ password, tls: { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') } });
    try {
      expect(redis.url).toMatch(/^rediss:/);
      const w = worker(redis, 'w1');
      const out = nextOut();
      const p = producer(redis, out);
      await expectFleetRun(p, out);
      const s = intuitor(['queue', 'status', '--queue', redis.url], env());
      expect(await s.exit).toBe(0);
      expect(s.output()).toMatch(/at rediss:\/\/:\*\*\*@127\.0\.0\.1:\d+\n[^]*w1: /);
      const wrong = intuitor(['queue', 'status', '--queue', redis.url.replace(encodeURIComponent(password), `wrong-${password}`)], env());
      expect(await wrong.exit).toBe(1);
      expect(wrong.output()).toMatch(/intuitor: error: cannot reach the queue at rediss:\/\/:\*\*\*@.*WRONGPASS/);
      const untrusted = intuitor(['queue', 'status', '--queue', redis.url], { NODE_EXTRA_CA_CERTS: '' });
      expect(await untrusted.exit).toBe(1);
      expect(untrusted.output()).toMatch(/intuitor: error: cannot reach the queue at rediss:\/\/:\*\*\*@.*self-signed certificate/);
      w.child.kill('SIGTERM');
      expect(await w.exit).toBe(0);
      for (const child of [w, p, s]) expect(child.output()).toContain('rediss://:***@');
      for (const child of [w, p, s, wrong, untrusted]) expect(child.output()).not.toContain(password);
    } finally {
      await redis.stop();
    }
  });
});
