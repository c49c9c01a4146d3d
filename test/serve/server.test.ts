/**
 * The scoring server (src/serve/server.ts) in this process, on 127.0.0.1 with a free port, serving
 * the tiny-qwen2 fixture. Every result is compared with offline Scorer.score of that request alone
 * (within TOLERANCES.batchShape: a merged batch may sum in another order on the GPU).
 * Servers:
 *   - open:   no key, bodies ≤ 64 KiB; the endpoints, validation, 413, the TRL recipe (python3);
 *   - gated:  its scorer waits on a gate or fails on demand: 503 on a full queue, 500 on a GPU error;
 *   - keyed:  an API key, no /reload;
 *   - reload: an API key and /reload under a models root holding a (the fixture), b (its weights
 *             changed), small (another architecture), and a link escaping the root.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GpuError } from '../../src/errors.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { openSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import type { HostTensor } from '../../src/io/tensor.js';
import { Scorer, resultJson } from '../../src/score/engine.js';
import { ScoringServer, type ScoringServerOptions } from '../../src/serve/server.js';
import { ROOT } from '../cli/run-cli.js';
import { FIXTURES, describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

const fixture = join(FIXTURES, 'tiny-qwen2');
const KEY = 'test-key-0123456789';

interface Reply {
  status: number;
  headers: Headers;
  json: Record<string, unknown>;
}

async function call(url: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const response = await fetch(`${url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = { text };
  }
  return { status: response.status, headers: response.headers, json };
}

const auth = { authorization: `Bearer ${KEY}` };
const RELOAD_KEY = 'test-reload-key';
const reloadAuth = { authorization: `Bearer ${RELOAD_KEY}` };

/** Offline: the request's items scored alone, as the server writes them. */
async function offline(scorer: Scorer, items: unknown[], perToken = false): Promise<Record<string, unknown>[]> {
  const parsed = items.map((value, i) => scorer.parse(value, `items[${i}]`, i));
  return (await scorer.score(parsed, { perToken })).map(resultJson);
}

/** Every numeric field (and per-token array) of `got` within TOLERANCES.batchShape of `want`; the rest equal. */
function expectSameResults(got: unknown, want: Record<string, unknown>[]): void {
  const results = got as Record<string, unknown>[];
  expect(results).toHaveLength(want.length);
  want.forEach((w, i) => {
    const g = results[i]!;
    expect(Object.keys(g).sort()).toEqual(Object.keys(w).sort());
    for (const [k, v] of Object.entries(w)) {
      if (typeof v === 'number' && k !== 'tokens') expectClose(`results[${i}].${k}`, [g[k] as number], [v], TOLERANCES.batchShape);
      else if (Array.isArray(v)) expectClose(`results[${i}].${k}`, g[k] as number[], v as number[], TOLERANCES.batchShape);
      else expect(g[k]).toEqual(v);
    }
  });
}

function sameWithin(got: Record<string, unknown>[], want: Record<string, unknown>[]): boolean {
  return got.length === want.length && want.every((w, i) => ['self_certainty', 'logprob_sum', 'entropy'].every((k) => {
    const [a, b] = [got[i]![k] as number, w[k] as number];
    return Math.abs(a - b) <= TOLERANCES.batchShape.atol + TOLERANCES.batchShape.rtol * Math.abs(b);
  }));
}

/** A model folder: the fixture's files, its weights passed through `change`. */
async function modelFolder(dir: string, change: (name: string, t: HostTensor) => HostTensor = (_, t) => t): Promise<void> {
  mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(fixture, f), join(dir, f));
  const file = await openSafetensors(join(fixture, 'model.safetensors'));
  try {
    const tensors = Object.fromEntries([...file.entries.keys()].map((name) => [name, change(name, file.tensor(name))]));
    await writeSafetensors(join(dir, 'model.safetensors'), tensors);
  } finally {
    file.close();
  }
}

const textItems = [
  { prompt: 'The cat', completion: ' sat on the mat' },
  { id: 'ids', prompt_ids: [5, 17, 40], completion_ids: [12, 99, 3, 7] },
  { prompt: '12+345=', completion: '357' },
];

describeGpu('scoring server', () => {
  let ctx: GpuContext;
  let tmp: string;
  let modelsRoot: string;
  let scorer: Scorer;
  let reloadScorer: Scorer;
  let refA: Scorer;
  let refB: Scorer;
  const servers: ScoringServer[] = [];
  const urls: Record<'open' | 'gated' | 'keyed' | 'reload', string> = { open: '', gated: '', keyed: '', reload: '' };
  // The gated server's scorer: waits while `gate` is set, throws `failNext` once.
  let gate: Promise<void> | null = null;
  let failNext: Error | null = null;
  let gatedCalls = 0;

  async function start(options: Omit<ScoringServerOptions, 'ctx' | 'modelDir'> & { modelDir?: string }): Promise<string> {
    const server = new ScoringServer({ ctx, modelDir: fixture, onInternalError: () => undefined, ...options });
    servers.push(server);
    return server.listen('127.0.0.1', 0);
  }

  beforeAll(async () => {
    ctx = await openGpu();
    tmp = mkdtempSync(join(tmpdir(), 'intuitor-serve-'));
    modelsRoot = join(tmp, 'models');
    await modelFolder(join(modelsRoot, 'a'));
    // b: the final norm's weights scaled, so every statistic moves.
    await modelFolder(join(modelsRoot, 'b'), (name, t) => (name === 'model.norm.weight' ? { ...t, data: (t.data as Float32Array).map((v) => v * 1.5) } : t));
    mkdirSync(join(modelsRoot, 'small'));
    for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(ROOT, 'models', 'addition-base', f), join(modelsRoot, 'small', f));
    await modelFolder(join(tmp, 'outside'));
    symlinkSync(join(tmp, 'outside'), join(modelsRoot, 'escape'));

    scorer = await Scorer.load(ctx, fixture);
    reloadScorer = await Scorer.load(ctx, join(modelsRoot, 'a'));
    refA = await Scorer.load(ctx, join(modelsRoot, 'a'));
    refB = await Scorer.load(ctx, join(modelsRoot, 'b'));
    const gated = Object.create(scorer) as Scorer;
    gated.score = async (items, options) => {
      gatedCalls += 1;
      if (gate) await gate;
      if (failNext) {
        const err = failNext;
        failNext = null;
        throw err;
      }
      return scorer.score(items, options);
    };
    urls.open = await start({ scorer, bodyLimit: 64 * 1024 });
    urls.gated = await start({ scorer: gated, maxQueue: 3 });
    urls.keyed = await start({ scorer, apiKey: KEY });
    urls.reload = await start({ scorer: reloadScorer, reloadKey: RELOAD_KEY, modelsRoot, modelDir: join(modelsRoot, 'a') });
  });

  afterAll(async () => {
    for (const server of servers) await server.close();
    for (const s of [scorer, reloadScorer, refA, refB]) await s?.destroy();
    ctx?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  describe('endpoints', () => {
    test('POST /score: every item form, ids, per-token arrays; equal to offline scoring of each request alone, also when requests arrive together', async () => {
      const requests = [
        { items: textItems },
        { items: [textItems[1]], per_token: true },
        { items: [{ prompt: 'a', completion: 'b' }, { prompt: 'Hello there, ', completion: 'general Kenobi' }], per_token: true },
        { items: [{ prompt_ids: Array.from({ length: 60 }, (_, i) => (i * 7) % 384), completion_ids: Array.from({ length: 50 }, (_, i) => (i * 11) % 384) }] },
      ];
      const replies = await Promise.all(requests.map((body) => call(urls.open, '/score', body)));
      for (const [i, reply] of replies.entries()) {
        expect(reply.status).toBe(200);
        expectSameResults(reply.json.results, await offline(refA, requests[i]!.items, requests[i]!.per_token ?? false));
      }
      expect((replies[0]!.json.results as { id: unknown }[]).map((r) => r.id)).toEqual([0, 'ids', 2]);
    });

    test('POST /get_reward (OpenRLHF): the response is the query after its prompt; self-certainty by default', async () => {
      const prompts = ['The cat', '12+345='];
      const query = ['The cat sat on the mat', '12+345=357'];
      const reply = await call(urls.open, '/get_reward', { query, prompts, labels: ['x', 'y'] });
      expect(reply.status).toBe(200);
      const want = await offline(refA, [{ prompt: 'The cat', completion: ' sat on the mat' }, { prompt: '12+345=', completion: '357' }]);
      expectClose('rewards', reply.json.rewards as number[], want.map((w) => w.self_certainty as number), TOLERANCES.batchShape);
    });

    test.each([['logprob', (r: Record<string, unknown>) => r.logprob_mean as number], ['neg-entropy', (r: Record<string, unknown>) => -(r.entropy as number)]] as const)(
      'POST /get_reward with --reward %s', async (reward, expected) => {
        const server = new ScoringServer({ ctx, scorer, modelDir: fixture, reward });
        try {
          const url = await server.listen('127.0.0.1', 0);
          const reply = await call(url, '/get_reward', { query: ['The cat sat on the mat'], prompts: ['The cat'], labels: null });
          expect(reply.status).toBe(200);
          const want = await offline(refA, [{ prompt: 'The cat', completion: ' sat on the mat' }]);
          expectClose('rewards', reply.json.rewards as number[], want.map(expected), TOLERANCES.batchShape);
        } finally {
          await server.close();
        }
      });

    test('POST /get_reward refuses a query that does not start with its prompt, and unequal lengths', async () => {
      const wrong = await call(urls.open, '/get_reward', { query: ['abc def', 'xyz'], prompts: ['abc', 'q'] });
      expect(wrong.status).toBe(400);
      expect(wrong.json.field).toBe('query[1]');
      const lengths = await call(urls.open, '/get_reward', { query: ['abc def'], prompts: [] });
      expect(lengths.status).toBe(400);
      expect(lengths.json.field).toBe('prompts');
      const empty = await call(urls.open, '/get_reward', { query: ['abc'], prompts: ['abc'] });
      expect(empty.status).toBe(400);
      expect(empty.json.field).toBe('query[0].completion');
    });

    test('GET /health and GET /metrics (Prometheus text)', async () => {
      const health = await call(urls.open, '/health');
      expect(health.status).toBe(200);
      expect(health.json).toEqual({ status: 'ok', model: fixture, architecture: 'qwen2', queue_depth: 0 });
      const response = await fetch(`${urls.open}/metrics`);
      expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
      const text = await response.text();
      for (const name of ['intuitor_requests_total{route="POST /score",status="200"}', 'intuitor_request_duration_seconds_bucket', 'intuitor_scored_tokens_total{part="completion"}',
        'intuitor_batch_items_bucket', 'intuitor_batch_tokens_bucket', 'intuitor_queue_depth 0', 'process_resident_memory_bytes']) {
        expect(text).toContain(name);
      }
    });
  });

  describe('bad input', () => {
    test.each([
      ['no items', {}, 'items'],
      ['empty items', { items: [] }, 'items'],
      ['an item that is not an object', { items: [textItems[0], 5] }, 'items[1]'],
      ['a field of the wrong type', { items: [textItems[0], textItems[0], { prompt: 3, completion: 'x' }] }, 'items[2].prompt'],
      ['a token id outside the vocabulary', { items: [{ prompt_ids: [1], completion_ids: [2, 384] }] }, 'items[0].completion_ids'],
      ['an item of no known form', { items: [{ text: 'hi' }] }, 'items[0]'],
      ['an unknown field', { items: [textItems[0]], perToken: true }, 'perToken'],
      ['per_token not a boolean', { items: [textItems[0]], per_token: 'yes' }, 'per_token'],
    ])('400 naming the field and index: %s', async (_, body, field) => {
      const reply = await call(urls.open, '/score', body);
      expect(reply.status).toBe(400);
      expect(reply.json.field).toBe(field);
      for (const part of field.split('.')) expect(reply.json.message).toContain(part);
    });

    test('400 for a body that is not JSON', async () => {
      expect((await call(urls.open, '/score', '{"items": [')).status).toBe(400);
    });

    test('413 for a body over the limit', async () => {
      const items = Array.from({ length: 2000 }, () => ({ prompt: 'x'.repeat(20), completion: 'y'.repeat(20) }));
      const reply = await call(urls.open, '/score', { items });
      expect(reply.status).toBe(413);
    });
  });

  describe('overload and failures', () => {
    test('a full queue gets 503 with Retry-After; what was accepted is scored once there is room', async () => {
      let open!: () => void;
      gate = new Promise<void>((resolve) => { open = resolve; });
      const calls = gatedCalls;
      const running = call(urls.gated, '/score', { items: [textItems[0], textItems[1]] });
      while (gatedCalls === calls) await new Promise((r) => setTimeout(r, 2));
      const queued = call(urls.gated, '/score', { items: [textItems[2], textItems[0]] });
      while ((await call(urls.gated, '/health')).json.queue_depth !== 2) await new Promise((r) => setTimeout(r, 2));
      const refused = await call(urls.gated, '/score', { items: [textItems[1], textItems[2]] });
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('1');
      const tooMany = await call(urls.gated, '/score', { items: [textItems[0], textItems[1], textItems[2], textItems[0]] });
      expect(tooMany.status).toBe(400);
      expect(tooMany.json.field).toBe('items');
      gate = null;
      open();
      expect((await running).status).toBe(200);
      const second = await queued;
      expect(second.status).toBe(200);
      expectSameResults(second.json.results, await offline(refA, [textItems[2], textItems[0]]));
    });

    test('a GPU error gets 500 for its batch; the server keeps serving', async () => {
      failNext = new GpuError('score', 'internal', 'injected by the test');
      const failed = await call(urls.gated, '/score', { items: [textItems[0]] });
      expect(failed.status).toBe(500);
      expect(failed.json.message).toContain('injected by the test');
      const next = await call(urls.gated, '/score', { items: [textItems[0]] });
      expect(next.status).toBe(200);
      expectSameResults(next.json.results, await offline(refA, [textItems[0]]));
    });
  });

  describe('who may call', () => {
    test.each([['/health', undefined], ['/metrics', undefined], ['/score', { items: [textItems[0]] }]])('%s: 401 without a key and with a wrong one', async (path, body) => {
      for (const headers of [{}, { authorization: 'Bearer wrong-key' }, { authorization: KEY }, { authorization: `Basic ${KEY}` }] as Record<string, string>[]) {
        const reply = await call(urls.keyed, path, body, headers);
        expect(reply.status).toBe(401);
        expect(reply.headers.get('www-authenticate')).toBe('Bearer');
      }
    });

    test('the right key is let in', async () => {
      expect((await call(urls.keyed, '/health', undefined, auth)).status).toBe(200);
      const scored = await call(urls.keyed, '/score', { items: [textItems[0]] }, auth);
      expect(scored.status).toBe(200);
      expectSameResults(scored.json.results, await offline(refA, [textItems[0]]));
    });

    test('/reload does not exist without --allow-reload (404, even with the key)', async () => {
      expect((await call(urls.keyed, '/reload', { model: 'a' }, auth)).status).toBe(404);
      expect((await call(urls.open, '/reload', { model: 'a' })).status).toBe(404);
    });

    test('/reload needs its own key; scoring on that server needs none (OpenRLHF sends no header)', async () => {
      for (const headers of [{}, auth, { authorization: 'Bearer wrong-key' }] as Record<string, string>[]) {
        const reply = await call(urls.reload, '/reload', { model: 'b' }, headers);
        expect(reply.status).toBe(401);
        expect(reply.json.message).toMatch(/reload key/);
      }
      expect((await call(urls.reload, '/get_reward', { query: ['1+1=2'], prompts: ['1+1='] })).status).toBe(200);
      expect((await call(urls.reload, '/health', undefined)).json.model).toBe(join(modelsRoot, 'a'));
    });

    test('a models root without a reload key is refused when the server is made', async () => {
      await expect(start({ scorer, modelsRoot })).rejects.toThrow(/reloadKey: expected a non-empty key when modelsRoot enables \/reload/);
    });

    test.each([
      ['a folder outside the root (absolute)', () => fixture, 403],
      ['".." back into the root', () => 'a/../b', 403],
      ['".." out of the root', () => '../outside', 403],
      ['a symbolic link out of the root', () => 'escape', 403],
      ['an absolute path with ".." out of the root', () => `${modelsRoot}/../outside`, 403],
      ['a missing folder', () => 'missing', 404],
      ['a model of another architecture', () => 'small', 400],
    ])('/reload refuses %s', async (_, model, status) => {
      const reply = await call(urls.reload, '/reload', { model: model() }, reloadAuth);
      expect(reply.status).toBe(status);
      expect((await call(urls.reload, '/health', undefined)).json.model).toBe(join(modelsRoot, 'a'));
    });
  });

  test('/reload with requests in flight: none fail, each is scored wholly by one model, and later ones by the new', async () => {
    const bodies = Array.from({ length: 12 }, (_, i) => ({ items: [textItems[i % 3]!, { prompt: `${i}+${i}=`, completion: String(2 * i) }] }));
    const wantA = await Promise.all(bodies.map((b) => offline(refA, b.items)));
    const wantB = await Promise.all(bodies.map((b) => offline(refB, b.items)));
    // b differs from a, so the two are told apart.
    expect(bodies.every((_, i) => !sameWithin(wantB[i]!, wantA[i]!))).toBe(true);
    const inFlight = bodies.map((body, i) => new Promise((r) => setTimeout(r, 3 * i)).then(() => call(urls.reload, '/score', body)));
    const reload = call(urls.reload, '/reload', { model: 'b' }, reloadAuth);
    const replies = await Promise.all(inFlight);
    const reloaded = await reload;
    expect(reloaded.status).toBe(200);
    expect(reloaded.json.model).toBe(realpathSync(join(modelsRoot, 'b')));
    for (const [i, reply] of replies.entries()) {
      expect(reply.status).toBe(200);
      const got = reply.json.results as Record<string, unknown>[];
      expect(sameWithin(got, wantA[i]!) || sameWithin(got, wantB[i]!)).toBe(true);
    }
    for (const [i, body] of bodies.entries()) expectSameResults((await call(urls.reload, '/score', body)).json.results, wantB[i]!);
    expect((await call(urls.reload, '/health', undefined, auth)).json.model).toBe(realpathSync(join(modelsRoot, 'b')));
  });

  test('the TRL recipe (examples/trl_reward.py, in README.md verbatim) runs with python3 against the server', async () => {
    const recipe = readFileSync(join(ROOT, 'examples', 'trl_reward.py'), 'utf8');
    expect(readFileSync(join(ROOT, 'README.md'), 'utf8')).toContain(recipe);
    const prompts = ['The cat', '12+345=', 'Hello'];
    const completions = [' sat on the mat', '357', ' world'];
    const script = `import json, sys\nsys.path.insert(0, ${JSON.stringify(join(ROOT, 'examples'))})\nfrom trl_reward import self_certainty_reward\n`
      + `print(json.dumps(self_certainty_reward(${JSON.stringify(prompts)}, ${JSON.stringify(completions)})))\n`;
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile('python3', ['-c', script], { env: { ...process.env, INTUITOR_URL: urls.keyed, INTUITOR_API_KEY: KEY }, timeout: 60_000 }, (err, out, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(out)));
    });
    const want = await offline(refA, prompts.map((prompt, i) => ({ prompt, completion: completions[i] })));
    expectClose('TRL rewards', JSON.parse(stdout) as number[], want.map((w) => w.self_certainty as number), TOLERANCES.batchShape);
  });
});
