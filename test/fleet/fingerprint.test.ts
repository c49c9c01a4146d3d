/** Model fingerprints: fixed by the files that decide a score, cached, and explained when they differ. */
import { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileFormatError } from '../../src/errors.js';
import { fingerprintDifference, modelFingerprint } from '../../src/fleet/fingerprint.js';
import { FIXTURES } from '../helpers.js';

const fixture = join(FIXTURES, 'tiny-qwen2');
let dir: string;
const savedCache = process.env.XDG_CACHE_HOME;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'intuitor-fingerprint-'));
  process.env.XDG_CACHE_HOME = join(dir, 'cache');
});
afterAll(() => {
  if (savedCache === undefined) delete process.env.XDG_CACHE_HOME;
  else process.env.XDG_CACHE_HOME = savedCache;
  rmSync(dir, { recursive: true, force: true });
});

function copyModel(name: string): string {
  const to = join(dir, name);
  mkdirSync(to);
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors']) copyFileSync(join(fixture, f), join(to, f));
  return to;
}

test('the files that decide a score, each hashed; the same bytes give the same digest anywhere', async () => {
  const a = await modelFingerprint(fixture);
  expect(Object.keys(a.files)).toEqual(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
  expect(a.digest).toMatch(/^[0-9a-f]{64}$/);
  const copy = copyModel('copy');
  expect(await modelFingerprint(copy)).toEqual(a);
  // The cache holds one entry per file, and a hit returns the same hash.
  expect(readdirSync(join(dir, 'cache', 'intuitor', 'fingerprints')).length).toBeGreaterThanOrEqual(4);
  expect(await modelFingerprint(copy)).toEqual(a);
});

test('a changed weight file changes the digest (the cache sees the new size and time), and the difference names it', async () => {
  const changed = copyModel('changed');
  const before = await modelFingerprint(changed);
  appendFileSync(join(changed, 'model.safetensors'), Buffer.from([0]));
  const after = await modelFingerprint(changed);
  expect(after.digest).not.toBe(before.digest);
  expect(fingerprintDifference(after, before)).toBe('model.safetensors differs');
  writeFileSync(join(changed, 'chat_template.jinja'), '{{ messages }}');
  expect(fingerprintDifference(before, await modelFingerprint(changed))).toBe("chat_template.jinja only in the job's model, model.safetensors differs");
});

test('sharded checkpoints: the index and every shard it lists; a missing shard is named', async () => {
  const sharded = join(dir, 'sharded');
  mkdirSync(sharded);
  for (const f of ['config.json', 'tokenizer.json']) copyFileSync(join(fixture, f), join(sharded, f));
  writeFileSync(join(sharded, 'a.safetensors'), 'A');
  writeFileSync(join(sharded, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: 'a.safetensors', y: 'b.safetensors' } }));
  await expect(modelFingerprint(sharded)).rejects.toThrow(FileFormatError);
  await expect(modelFingerprint(sharded)).rejects.toThrow(/b\.safetensors/);
  writeFileSync(join(sharded, 'b.safetensors'), 'B');
  expect(Object.keys((await modelFingerprint(sharded)).files)).toEqual(['a.safetensors', 'b.safetensors', 'config.json', 'model.safetensors.index.json', 'tokenizer.json']);
});
