/**
 * `intuitor serve` as a child process: flags refused by name, a SIGTERM that drains the requests
 * in flight and exits 0, and the load test (bench/serve.bench.ts) at a small size: 4 connections
 * for 3 seconds, at most 400 requests, on loopback.
 */
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { SHIPPED_MODEL, serveLoadTest } from '../../bench/serve.bench.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { Scorer, resultJson } from '../../src/score/engine.js';
import { ROOT, cli } from '../cli/run-cli.js';
import { FIXTURES, describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

const fixture = join(FIXTURES, 'tiny-qwen2');

describe('intuitor serve flags', () => {
  test.each([
    ['--allow-reload without a reload key', ['--allow-reload', '--models-root', ROOT, '--api-key', 'k'], {}, '--reload-key'],
    ['--allow-reload without --models-root', ['--allow-reload'], { INTUITOR_RELOAD_KEY: 'k' }, '--models-root'],
    ['--models-root that is not a folder', ['--allow-reload', '--reload-key', 'k', '--models-root', join(ROOT, 'package.json')], {}, '--models-root'],
    ['--reload-key without --allow-reload', ['--reload-key', 'k'], {}, '--reload-key'],
    ['--models-root without --allow-reload', ['--models-root', ROOT], {}, '--models-root'],
    ['an empty key', [], { INTUITOR_API_KEY: '' }, 'INTUITOR_API_KEY'],
    ['an unknown reward', ['--reward', 'accuracy'], {}, '--reward'],
    ['a port out of range', ['--port', '70000'], {}, '--port'],
  ])('%s: exit 2 naming the flag', async (_, flags, env, named) => {
    const r = await cli(['serve', '--model', fixture, ...flags], ROOT, 60_000, env);
    expect(r.status).toBe(2);
    expect(r.messages).toHaveLength(1);
    expect(r.messages[0]).toMatch(new RegExp(`^intuitor: error: ${named.replace(/[-]/g, '\\-')}: expected`));
  });
});

describeGpu('intuitor serve process', () => {
  let gpu: GpuContext;
  beforeAll(async () => {
    gpu = await openGpu();
  });
  afterAll(() => gpu?.close());

  test('SIGTERM: stops accepting, answers every request in flight, exits 0', async () => {
    // A long wait for company: only the drain on SIGTERM gets these requests scored promptly.
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'intuitor.js'), 'serve', '--model', fixture, '--port', '0', '--max-wait-ms', '30000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout }).on('line', (line) => {
          const match = /listening on (http:\/\/\S+)/.exec(line);
          if (match) resolve(match[1]!);
        });
        void exited.then((code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
      });
      const bodies = Array.from({ length: 6 }, (_, i) => ({ items: [{ prompt: `${i}+${i}=`, completion: String(2 * i) }, { prompt: 'The cat', completion: ` sat ${i}` }] }));
      const inFlight = bodies.map((body) => fetch(`${url}/score`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }));
      while (((await (await fetch(`${url}/health`)).json()) as { queue_depth: number }).queue_depth < 12) await new Promise((r) => setTimeout(r, 10));
      const started = Date.now();
      child.kill('SIGTERM');
      const replies = await Promise.all(inFlight);
      expect(await exited).toBe(0);
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(stderr).toContain('SIGTERM: finishing the requests in flight');
      const scorer = await Scorer.load(gpu, fixture);
      try {
        for (const [i, reply] of replies.entries()) {
          expect(reply.status).toBe(200);
          const got = ((await reply.json()) as { results: Record<string, number>[] }).results;
          const items = bodies[i]!.items.map((value, j) => scorer.parse(value, `items[${j}]`, j));
          const want = (await scorer.score(items)).map(resultJson) as Record<string, number>[];
          expectClose(`request ${i}`, got.flatMap((r) => [r.self_certainty!, r.logprob_sum!, r.entropy!]), want.flatMap((r) => [r.self_certainty!, r.logprob_sum!, r.entropy!]), TOLERANCES.batchShape);
        }
      } finally {
        await scorer.destroy();
      }
      await expect(fetch(`${url}/health`)).rejects.toThrow();
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });

  test('a port in use: exit 2 naming --port', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const port = (taken.address() as AddressInfo).port;
      const r = await cli(['serve', '--model', fixture, '--port', String(port)]);
      expect(r.status).toBe(2);
      expect(r.messages.at(-1)).toBe(`intuitor: error: --port: expected a port free on 127.0.0.1, got ${port} (in use)`);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  test('load test (small): many connections for a fixed time, every response equal to offline scoring, no errors', async () => {
    const report = await serveLoadTest({ gpu, model: SHIPPED_MODEL, connections: 4, durationSeconds: 3, maxRequests: 400, bodies: 16 });
    expect(report.requests).toBeGreaterThan(0);
    expect(report.errors).toBe(0);
    expect(report.mismatches).toBe(0);
    expect(report.checked).toBe(report.requests);
    expect(report.requests).toBeLessThanOrEqual(400);
    expect(report.rssBeforeBytes).toBeGreaterThan(0);
    expect(report.rssAfterBytes).toBeGreaterThan(0);
    expect(report.serverExitCode).toBe(0);
  });
});
