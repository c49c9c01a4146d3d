/** The fleet's Redis URLs: what ioredis gets (TLS, password, db) and what is ever printed (redacted). */
import { InvalidArgumentError } from '../../src/errors.js';
import { ioredisOptions, parseRedisUrl, redact, redactUrl } from '../../src/fleet/redis.js';
import { chunkJobId, lineSpan, protocolProblem, runId } from '../../src/fleet/protocol.js';

describe('Redis URL', () => {
  test('redis:// with a password and a database: plain TCP, the password passed through, the display redacted', () => {
    const c = parseRedisUrl('redis://alice:s%40cret@redis.example:6380/3');
    expect(ioredisOptions(c)).toMatchObject({ host: 'redis.example', port: 6380, db: 3, username: 'alice', password: 's@cret', maxRetriesPerRequest: null });
    expect(c.tls).toBeUndefined();
    expect(c.display).toBe('redis://alice:***@redis.example:6380/3');
  });
  test('rediss:// turns TLS on (with the host as SNI name); defaults: port 6379, db 0', () => {
    const c = parseRedisUrl('rediss://:pw@cache.internal');
    expect(ioredisOptions(c)).toMatchObject({ host: 'cache.internal', port: 6379, db: 0, password: 'pw', tls: { servername: 'cache.internal' } });
    expect(c.display).toBe('rediss://:***@cache.internal');
    expect(parseRedisUrl('rediss://10.0.0.7:6380').tls).toEqual({});
  });
  test('reconnects for ever, backing off to 2 s', () => {
    const { retryStrategy } = parseRedisUrl('redis://localhost');
    expect([1, 5, 20, 1000].map(retryStrategy)).toEqual([100, 500, 2000, 2000]);
  });
  test('bad URLs name the flag and never show the password', () => {
    for (const url of ['http://u:hunter2@host:1', 'redis://:hunter2@host:1/x', 'redis://:hunter2@host:1/0?tls=1', 'not a url hunter2@']) {
      let error: unknown;
      try {
        parseRedisUrl(url);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(InvalidArgumentError);
      expect((error as Error).message).toMatch(/^--queue: /);
      expect((error as Error).message).not.toContain('hunter2');
    }
  });
  test('redact removes the password from any text, raw or URL-encoded, and every URL\'s user info', () => {
    const c = parseRedisUrl('redis://:p%2Fw%21x@h:1');
    expect(redact('AUTH p/w!x failed; see redis://:p%2Fw%21x@h:1 and rediss://bob:other@x', c)).toBe('AUTH *** failed; see redis://:***@h:1 and rediss://bob:***@x');
    expect(redactUrl('redis://token@h')).toBe('redis://***@h');
  });
});

describe('job protocol', () => {
  const model = { digest: 'd'.repeat(64), files: { 'config.json': 'a' } };
  const options = { temperature: 1, perToken: false, weights: 'as-stored' as const };
  test('a run id depends on the model, the options and the output', () => {
    const base = runId(model, options, '/out/a.jsonl');
    expect(runId(model, options, '/out/a.jsonl')).toBe(base);
    expect(runId(model, { ...options, temperature: 0.5 }, '/out/a.jsonl')).not.toBe(base);
    expect(runId(model, options, '/out/b.jsonl')).not.toBe(base);
    expect(runId({ ...model, digest: 'e'.repeat(64) }, options, '/out/a.jsonl')).not.toBe(base);
  });
  test('a chunk\'s job id is fixed by its lines, differs when their text does, and is a valid BullMQ id', () => {
    const lines = [{ line: 5, text: '{"a":1}' }, { line: 6, text: '{"a":2}' }];
    const id = chunkJobId('run1', lines);
    expect(chunkJobId('run1', lines.map((l) => ({ ...l })))).toBe(id);
    expect(chunkJobId('run1', [lines[0]!, { line: 6, text: '{"a":3}' }])).not.toBe(id);
    expect(id).toMatch(/^run1\.5\.[0-9a-f]{16}$/);
    expect(lineSpan(lines)).toBe('lines 5–6');
  });
  test('a worker refuses other protocol versions and kinds by name', () => {
    expect(protocolProblem({ protocol: 1, kind: 'score' })).toBeNull();
    expect(protocolProblem({ protocol: 2, kind: 'score' })).toMatch(/protocol 2, this worker 1/);
    expect(protocolProblem({ protocol: 1, kind: 'generate' })).toMatch(/kind "generate"/);
    expect(protocolProblem('x')).toMatch(/not an object/);
  });
});
