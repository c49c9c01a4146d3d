/**
 * The file pipeline (src/score/pipeline.ts) and its line I/O (src/io/jsonl.ts) with a stand-in
 * ChunkScorer (no model): input order with chunks finishing out of order, the in-flight window,
 * fixed chunk ranges, resume after a torn line, strict and skipping bad lines, the stop signal, a
 * failing scorer. The GPU path and real kills are in test/cli/score-completions.test.ts.
 */
import { appendFileSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileFormatError, InvalidArgumentError } from '../../src/errors.js';
import { lastWholeLine, streamLines } from '../../src/io/jsonl.js';
import type { ChunkScorer, InputLine, LineOutcome } from '../../src/score/lines.js';
import { BadLineError, scoreFile } from '../../src/score/pipeline.js';
import { mulberry32 } from '../../src/util/random.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'intuitor-pipeline-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileNumber = 0;
function file(text: string): string {
  const path = join(dir, `in-${fileNumber++}.jsonl`);
  writeFileSync(path, text);
  return path;
}
const outPath = () => join(dir, `out-${fileNumber++}.jsonl`);

/** Lines {"v": n}; a line "bad" is refused as a scorer would refuse it. */
function inputText(count: number, bad: number[] = [], blank: number[] = []): string {
  return Array.from({ length: count }, (_, i) => (bad.includes(i + 1) ? 'bad' : blank.includes(i + 1) ? '' : JSON.stringify({ v: i + 1 }))).join('\n') + '\n';
}

/** Scores {"v": n} as tokens n after a random delay (so chunks finish out of order), recording its chunks and the most in flight. */
class StandIn implements ChunkScorer {
  readonly chunks: [number, number][] = [];
  inFlight = 0;
  mostInFlight = 0;
  private readonly rand = mulberry32(5);
  constructor(readonly concurrency: number, private readonly failAtLine = -1) {}
  async scoreChunk(lines: readonly InputLine[]): Promise<LineOutcome[]> {
    this.chunks.push([lines[0]!.line, lines.at(-1)!.line]);
    this.mostInFlight = Math.max(this.mostInFlight, ++this.inFlight);
    await new Promise((done) => setTimeout(done, 1 + this.rand() * 8));
    this.inFlight--;
    if (lines.some((l) => l.line === this.failAtLine)) throw new Error('the scorer failed');
    return lines.filter((l) => l.text !== '').map(({ line, text }) => (text === 'bad'
      ? { line, error: `line ${line}: expected a JSON object, got "bad"` }
      : { line, record: { id: line, tokens: (JSON.parse(text) as { v: number }).v, self_certainty: line / 7 } }));
  }
}

const records = (path: string) => readFileSync(path, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, number>);

describe('streamLines and lastWholeLine', () => {
  test('a byte-order mark, CRLF, a last line without a newline, blank lines, byte offsets', async () => {
    const path = file('\uFEFF{"a":1}\r\n\n{"b":"é"}\n{"c":3}');
    const got = [];
    for await (const l of streamLines(path)) got.push(l);
    expect(got).toEqual([
      { line: 1, text: '{"a":1}', end: 12 }, { line: 2, text: '', end: 13 },
      { line: 3, text: '{"b":"é"}', end: 24 }, { line: 4, text: '{"c":3}', end: 31 },
    ]);
  });
  test('a multi-byte character across the one-megabyte read blocks, a line of several blocks', async () => {
    // The second line starts one byte before the first block ends: its first 'é' is split between blocks.
    const long = 'é'.repeat(1_500_000);
    const path = file(`${'x'.repeat((1 << 20) - 2)}\n${long}\nend\n`);
    const got: string[] = [];
    for await (const l of streamLines(path)) got.push(l.text);
    expect(got.map((t) => t.length)).toEqual([(1 << 20) - 2, long.length, 3]);
    expect(got[1]).toBe(long);
  });
  test('the last whole line: a torn tail is not whole; lines longer than the first block back', async () => {
    const long = JSON.stringify({ line: 2, pad: 'y'.repeat(200_000) });
    const path = file(`{"line":1}\n${long}\n{"line":3, "torn`);
    const size = readFileSync(path).length;
    expect(await lastWholeLine(path)).toEqual({ text: long, end: size - '{"line":3, "torn'.length, size });
    expect(await lastWholeLine(file('only torn'))).toEqual({ text: null, end: 0, size: 9 });
    expect(await lastWholeLine(file(''))).toEqual({ text: null, end: 0, size: 0 });
  });
  test('a missing input names the file', async () => {
    await expect(streamLines(join(dir, 'missing.jsonl')).next()).rejects.toThrow(/missing\.jsonl: expected a readable JSON Lines file, got nothing: the file does not exist/);
  });
});

describe('scoreFile', () => {
  test('records in input order with chunks finishing out of order, at most `concurrency` in flight, each chunk a fixed range of lines', async () => {
    const input = file(inputText(100, [], [50]));
    const out = outPath();
    const scorer = new StandIn(3);
    const progress: number[] = [];
    const summary = await scoreFile({ input, out, scorer, chunkLines: 7, onProgress: (p) => progress.push(p.lines) });
    expect(records(out).map((r) => r.line)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1).filter((l) => l !== 50));
    expect(records(out)[0]).toEqual({ id: 1, line: 1, tokens: 1, self_certainty: 1 / 7 });
    expect(scorer.mostInFlight).toBe(3);
    expect(scorer.chunks.every(([first, last]) => (first - 1) % 7 === 0 && (last % 7 === 0 || last === 100))).toBe(true);
    expect([progress[0], progress.at(-1)]).toEqual([0, 100]);
    expect(summary).toMatchObject({ lines: 100, scored: 99, skipped: 0, tokens: 5050 - 50, interrupted: false, resumedAfterLine: 0 });
  });

  test('resume after a torn last line gives the uninterrupted output byte for byte, in the same chunks', async () => {
    const input = file(inputText(60, [9]));
    const full = outPath();
    await scoreFile({ input, out: full, scorer: new StandIn(2), chunkLines: 8 });
    const bytes = readFileSync(full);
    const partial = outPath();
    // Records up to line 20, then part of line 21's.
    const cut = bytes.indexOf('"line":21') + 5;
    writeFileSync(partial, bytes.subarray(0, cut));
    const scorer = new StandIn(2);
    const progress: number[] = [];
    const summary = await scoreFile({ input, out: partial, scorer, chunkLines: 8, resume: true, onProgress: (p) => progress.push(p.bytesDone) });
    // Progress starts past the 20 lines skipped.
    expect(progress[0]).toBe(Buffer.byteLength(inputText(60, [9]).split('\n').slice(0, 20).join('\n')) + 1);
    expect(readFileSync(partial).equals(bytes)).toBe(true);
    expect(scorer.chunks[0]).toEqual([21, 24]);
    expect(summary).toMatchObject({ resumedAfterLine: 20, skippedEarlier: 1, skipped: 0, lines: 40, scored: 40 });
    expect(summary.tornBytesCut).toBe(cut - (bytes.lastIndexOf('\n', bytes.indexOf('"line":21')) + 1));
    // A finished output resumes to itself.
    const again = await scoreFile({ input, out: partial, scorer: new StandIn(2), chunkLines: 8, resume: true });
    expect(readFileSync(partial).equals(bytes)).toBe(true);
    expect(again).toMatchObject({ lines: 0, scored: 0, resumedAfterLine: 60 });
  });

  test('an existing --out needs --resume; a resumed output must come from this input and agree on --per-token', async () => {
    const input = file(inputText(10));
    const out = outPath();
    await scoreFile({ input, out, scorer: new StandIn(1), chunkLines: 4 });
    await expect(scoreFile({ input, out, scorer: new StandIn(1) })).rejects.toThrow(/^--out: expected a file that does not exist yet \(or --resume to continue it\)/);
    await expect(scoreFile({ input, out: input, scorer: new StandIn(1), resume: true })).rejects.toThrow(/^--out: expected a file other than --input/);
    const other = file(inputText(10).replace('{"v":10}', '{"v":10,"id":"ten"}'));
    await expect(scoreFile({ input: other, out, scorer: new StandIn(1), resume: true })).rejects.toThrow(/its last record, of line 10, has id 10\), got line 10 of the input with id "ten": was it written from another input\?/);
    await expect(scoreFile({ input: file(inputText(5)), out, scorer: new StandIn(1), resume: true })).rejects.toThrow(/a last record of line 10, past the input's end/);
    await expect(scoreFile({ input, out, scorer: new StandIn(1), resume: true, perToken: true })).rejects.toThrow(InvalidArgumentError);
    const foreign = outPath();
    writeFileSync(foreign, '{"something": "else"}\n');
    await expect(scoreFile({ input, out: foreign, scorer: new StandIn(1), resume: true })).rejects.toThrow(FileFormatError);
    // A last line without a line break is cut only when it begins as a record does.
    const noBreak = outPath();
    writeFileSync(noBreak, 'precious');
    await expect(scoreFile({ input, out: noBreak, scorer: new StandIn(1), resume: true })).rejects.toThrow(/a last line without a line break starting "precio"/);
    expect(readFileSync(noBreak, 'utf8')).toBe('precious');
  });

  test('bad lines are reported in order and skipped; --strict stops at the first after writing the records before it', async () => {
    const input = file(inputText(30, [4, 17, 18]));
    const out = outPath();
    const reported: string[] = [];
    const summary = await scoreFile({ input, out, scorer: new StandIn(3), chunkLines: 5, onBadLine: (m) => reported.push(m) });
    expect(reported.map((m) => m.split(':')[0])).toEqual(['line 4', 'line 17', 'line 18']);
    expect(summary).toMatchObject({ skipped: 3, skippedLines: [4, 17, 18], scored: 27 });
    const strict = outPath();
    const run = scoreFile({ input, out: strict, scorer: new StandIn(3), chunkLines: 5, strict: true });
    await expect(run).rejects.toThrow(BadLineError);
    await expect(run).rejects.toThrow(/in-\d+\.jsonl: line 4: expected a JSON object, got "bad"$/);
    expect(records(strict).map((r) => r.line)).toEqual([1, 2, 3]);
  });

  test('a stop signal finishes the chunks in flight and ends on a whole chunk; resume completes the file', async () => {
    const input = file(inputText(80));
    const full = outPath();
    await scoreFile({ input, out: full, scorer: new StandIn(2), chunkLines: 6 });
    const out = outPath();
    const stop = new AbortController();
    const summary = await scoreFile({ input, out, scorer: new StandIn(2), chunkLines: 6, signal: stop.signal, onProgress: (p) => { if (p.lines >= 12) stop.abort(); } });
    expect(summary.interrupted).toBe(true);
    const written = records(out).map((r) => r.line);
    expect(written.length % 6).toBe(0);
    expect(written.length).toBeLessThan(80);
    await scoreFile({ input, out, scorer: new StandIn(2), chunkLines: 6, resume: true });
    expect(readFileSync(out).equals(readFileSync(full))).toBe(true);
  });

  test('a failing scorer fails the run; what was written stays whole and resumable', async () => {
    const input = file(inputText(40));
    const out = outPath();
    await expect(scoreFile({ input, out, scorer: new StandIn(2, 23), chunkLines: 5 })).rejects.toThrow('the scorer failed');
    const text = readFileSync(out, 'utf8');
    expect(text === '' || text.endsWith('\n')).toBe(true);
    expect(records(out).map((r) => r.line)).toEqual(Array.from({ length: records(out).length }, (_, i) => i + 1));
    appendFileSync(out, '{"id": 99, "li');
    await scoreFile({ input, out, scorer: new StandIn(2), chunkLines: 5, resume: true });
    expect(records(out).map((r) => r.line)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    truncateSync(out, 0);
    await scoreFile({ input, out, scorer: new StandIn(2), chunkLines: 5, resume: true });
    expect(records(out)).toHaveLength(40);
  });
});
