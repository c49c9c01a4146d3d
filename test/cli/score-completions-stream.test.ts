/**
 * `intuitor score-completions` over files as a stream: memory that does not grow with the file,
 * and SIGKILL at random moments, resumed each time, giving the uninterrupted output byte for byte.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mulberry32 } from '../../src/util/random.js';
import { FIXTURES, describeGpu } from '../helpers.js';
import { ROOT, cli, expectSuccess } from './run-cli.js';

const model = join(FIXTURES, 'tiny-qwen2');
const VOCAB = 384;

/** `count` pre-tokenised and text lines of random lengths (seeded), each `pad` bytes longer by an unscored field. */
function generatedLines(count: number, seed: number, pad = 0): string {
  const rand = mulberry32(seed);
  const ids = (n: number) => Array.from({ length: n }, () => Math.floor(rand() * VOCAB));
  const words = ['the', 'fox', 'jumps', 'over', 'a', 'lazy', 'dog', '12', 'times', '7'];
  const text = (n: number) => Array.from({ length: n }, () => words[Math.floor(rand() * words.length)]).join(' ');
  const padding = pad > 0 ? { meta: 'x'.repeat(pad) } : {};
  return Array.from({ length: count }, (_, i) => JSON.stringify(i % 2 === 0
    ? { id: `g${i}`, prompt_ids: ids(1 + Math.floor(rand() * 20)), completion_ids: ids(1 + Math.floor(rand() * 30)), ...padding }
    : { prompt: text(1 + Math.floor(rand() * 8)), completion: ` ${text(1 + Math.floor(rand() * 10))}`, ...padding })).join('\n') + '\n';
}

describeGpu('intuitor score-completions over a stream', () => {
  let dir: string;
  /** An uninterrupted run over kill.jsonl, in chunks of 8 lines: what every interrupted run must end as. */
  let reference: Buffer;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'intuitor-score-stream-'));
    writeFileSync(path('kill.jsonl'), generatedLines(200, 3));
    expectSuccess(await score(path('kill.jsonl'), path('kill.ref.jsonl'), '--chunk-lines', '8'));
    reference = readFileSync(path('kill.ref.jsonl'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const path = (name: string) => join(dir, name);
  const score = (input: string, out: string, ...args: string[]) => cli(['score-completions', '--model', model, '--input', input, '--out', out, ...args], ROOT, 120_000);

  test('memory does not grow with the file: the peak RSS over 15 MB and 100 MB of lines differs by under 40 MB', async () => {
    // A capped V8 heap collects garbage early, so the peak is what the pipeline holds, not how lazily V8 collects.
    // 64 MB: two 16-line chunks of 200 KB completions in flight, with their token ids, hold about
    // 27 MB; a 32 MB cap ran out once on a loaded machine. The large file whole would not fit.
    const env = { NODE_OPTIONS: '--max-old-space-size=64' };
    const peaks: number[] = [];
    for (const [name, count] of [['small', 75], ['large', 500]] as const) {
      writeFileSync(path(`${name}.jsonl`), generatedLines(count, 11, 200_000));
      const r = await cli(['score-completions', '--model', model, '--input', path(`${name}.jsonl`), '--out', path(`${name}.out.jsonl`), '--json', '--chunk-lines', '16'], ROOT, 120_000, env);
      expectSuccess(r);
      const summary = JSON.parse(r.stdout) as { scored: number; max_rss_bytes: number };
      expect(summary.scored).toBe(count);
      peaks.push(summary.max_rss_bytes);
    }
    expect(statSync(path('large.jsonl')).size).toBeGreaterThan(100e6);
    // Read whole, the large file would add the 85 MB it has over the small one (as a buffer or an
    // external string); the bound leaves room for the allocator's and the adapter's noise (a
    // 31 MB difference was seen between 15 and 60 MB inputs on a loaded machine).
    const growthMiB = (peaks[1]! - peaks[0]!) / 2 ** 20;
    expect({ peaksMiB: peaks.map((p) => Math.round(p / 2 ** 20)), growthUnder40MiB: growthMiB < 40 }).toEqual({ peaksMiB: expect.any(Array), growthUnder40MiB: true });
  });

  test('killed (SIGKILL) at random moments and resumed each time, the output equals an uninterrupted run byte for byte', async () => {
    const args = (out: string) => [join(ROOT, 'bin', 'intuitor.js'), 'score-completions', '--model', model, '--input', path('kill.jsonl'), '--out', out, '--chunk-lines', '8', '--resume'];
    const want = reference;
    const out = path('kill.out.jsonl');
    const rand = mulberry32(8);
    let killedMidway = 0;
    for (let attempt = 0; attempt < 6; attempt++) {
      const child = spawn(process.execPath, args(out), { stdio: 'ignore' });
      const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
      // Once the file has grown in this run, kill it a random moment later (0–150 ms).
      const sizeAtStart = existsSync(out) ? statSync(out).size : 0;
      let code: number | null | undefined;
      while (code === undefined) {
        code = await Promise.race([exited, new Promise<undefined>((wait) => setTimeout(() => wait(undefined), 10))]);
        if (code === undefined && existsSync(out) && statSync(out).size > sizeAtStart) {
          await new Promise((wait) => setTimeout(wait, rand() * 150));
          child.kill('SIGKILL');
          code = await exited;
          break;
        }
      }
      if (code === 0) break;
      killedMidway++;
      const written = readFileSync(out);
      // What a kill leaves is a prefix of the uninterrupted output, but for a torn last line.
      const whole = written.subarray(0, written.lastIndexOf('\n') + 1);
      expect(want.subarray(0, whole.length).equals(whole)).toBe(true);
    }
    expect(killedMidway).toBeGreaterThanOrEqual(3);
    const last = await cli(args(out).slice(1), ROOT, 120_000);
    expectSuccess(last);
    expect(readFileSync(out).equals(want)).toBe(true);
  });

  test('SIGTERM finishes the chunks in flight: whole chunks written, exit 143, and --resume completes the file', async () => {
    const want = reference;
    const out = path('term.out.jsonl');
    const child = spawn(process.execPath, [join(ROOT, 'bin', 'intuitor.js'), 'score-completions', '--model', model, '--input', path('kill.jsonl'), '--out', out, '--chunk-lines', '8'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (data: Buffer) => { stderr += data.toString(); });
    const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
    while (!(existsSync(out) && statSync(out).size > 0)) await new Promise((wait) => setTimeout(wait, 10));
    child.kill('SIGTERM');
    expect(await exited).toBe(143);
    expect(stderr).toMatch(/SIGTERM: finishing the chunks in flight/);
    expect(stderr).toMatch(/stopped by SIGTERM: --resume continues/);
    const written = readFileSync(out);
    expect(written.at(-1)).toBe(0x0a);
    expect(written.toString().split('\n').length - 1).toBeLessThan(200);
    // Every chunk holds 8 scored lines: a stop ends on a whole chunk.
    expect((written.toString().split('\n').length - 1) % 8).toBe(0);
    expect(want.subarray(0, written.length).equals(written)).toBe(true);
    expectSuccess(await score(path('kill.jsonl'), out, '--chunk-lines', '8', '--resume'));
    expect(readFileSync(out).equals(want)).toBe(true);
  });
});
