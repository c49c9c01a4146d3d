/**
 * score-completions' file pipeline: JSON lines in, one output record per scored line out, in input
 * order, through any ChunkScorer (this process's GPU, or a fleet of workers behind a queue).
 *
 * - Streaming: the input is read a block at a time and cut into chunks; at most `concurrency`
 *   chunks are in flight (being parsed, tokenised, queued or on the GPU), so memory does not grow
 *   with the file.
 * - Chunks are fixed ranges of input lines (chunk k holds lines kC + 1 … (k + 1)C), so a resumed
 *   run scores every line in the same chunk, hence the same pass, as an uninterrupted run would:
 *   the output is the same byte for byte.
 * - Whole lines: each chunk's records go to the file in one write of whole lines. A kill can still
 *   cut that write short; `resume` finds the last whole line, cuts what follows it, and carries on
 *   after the input line that record names (every record carries its input `line`).
 * - Bad lines are reported (onBadLine) and skipped, or with `strict` end the run, after the
 *   records before them are written.
 * - An aborted `signal` stops the reading; the chunks in flight finish and are written, so the
 *   output ends on a whole chunk and `resume` continues it.
 */
import { mkdir, open, stat, truncate, type FileHandle } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { FileFormatError, InvalidArgumentError, describe } from '../errors.js';
import { lastWholeLine, streamLines } from '../io/jsonl.js';
import { MAX_IO_BYTES, fileAccessError } from '../io/tensor.js';
import type { ChunkScorer, InputLine, LineOutcome } from './lines.js';

/** Input lines per chunk by default: enough for the packer to group similar lengths into full passes. */
export const DEFAULT_CHUNK_LINES = 256;
/** Line numbers of bad lines kept for the summary (all of them are reported as they come). */
const SKIPPED_LINES_KEPT = 100;

export interface ScoreFileOptions {
  /** JSON lines to score (--input). */
  input: string;
  /** JSON lines written (--out): must not exist, unless `resume`. */
  out: string;
  scorer: ChunkScorer;
  /** Input lines per chunk (--chunk-lines; default DEFAULT_CHUNK_LINES). */
  chunkLines?: number;
  /** Continue the records already in `out` (--resume). */
  resume?: boolean;
  /** Stop at the first bad line (--strict). */
  strict?: boolean;
  /** Whether records carry the per-token arrays (--per-token): a resumed file must agree. */
  perToken?: boolean;
  /** Aborting stops the reading; chunks in flight are finished and written. */
  signal?: AbortSignal;
  /** Called once per bad line, in input order, with its message (`line N: ...`). */
  onBadLine?: (message: string) => void;
  /** Called at the first line to score, then after each chunk is written. */
  onProgress?: (progress: FileProgress) => void;
}

export interface FileProgress {
  /** Input bytes through the last line written, and the input's size. */
  bytesDone: number;
  bytesTotal: number;
  /** In this run: input lines done, records written, completion tokens scored, seconds. */
  lines: number;
  scored: number;
  tokens: number;
  seconds: number;
}

export interface FileSummary extends FileProgress {
  /** Bad lines skipped in this run, and the first SKIPPED_LINES_KEPT of their numbers. */
  skipped: number;
  skippedLines: number[];
  /** With resume: the input line the earlier runs ended on (0: none), the lines they skipped, and the bytes of a torn last line cut. */
  resumedAfterLine: number;
  skippedEarlier: number;
  tornBytesCut: number;
  /** The run stopped on the signal before the end of the input. */
  interrupted: boolean;
}

/** A bad line under `strict`: the input file and the line's own message. */
export class BadLineError extends FileFormatError {
  constructor(path: string, lineMessage: string) {
    super(path, '', '');
    this.message = `${path}: ${lineMessage}`;
  }
}

interface ResumePoint {
  /** The input line of the last record written (0: nothing written). */
  line: number;
  /** Its record's id, checked against the input's line. */
  id: unknown;
  records: number;
  tornBytesCut: number;
}

/** How every record begins (`id` first), so a torn last line is known for one of ours before it is cut. */
const RECORD_START = '{"id":';

/** Where an earlier run over `out` stopped: its last whole record; a torn record after it is cut away. */
async function resumePoint(out: string, perToken: boolean): Promise<ResumePoint> {
  const { text, end, size } = await lastWholeLine(out);
  if (end < size) {
    const handle = await open(out, 'r');
    const head = Buffer.alloc(Math.min(RECORD_START.length, size - end));
    try {
      await handle.read(head, 0, head.length, end);
    } finally {
      await handle.close();
    }
    const torn = head.toString('latin1');
    if (!RECORD_START.startsWith(torn)) {
      throw new FileFormatError(out, `score-completions output to resume (whole JSON lines, and at most a torn record starting ${RECORD_START} at the end)`, `a last line without a line break starting ${JSON.stringify(torn)}`);
    }
  }
  let line = 0;
  let id: unknown;
  if (text !== null) {
    let record: unknown;
    try {
      record = JSON.parse(text);
    } catch {
      record = undefined;
    }
    line = (record as { line?: unknown } | undefined)?.line as number;
    if (typeof record !== 'object' || record === null || !Number.isSafeInteger(line) || line < 1) {
      throw new FileFormatError(out, 'score-completions output to resume (JSON records with an input "line" number)', `a last line ${describe(text)}`);
    }
    const hasArrays = 'token_logprobs' in record;
    if (hasArrays !== perToken) {
      throw new InvalidArgumentError('--per-token', `${hasArrays ? 'the flag' : 'no flag'}, as in the run that wrote ${out}`, perToken ? 'the flag' : 'no flag');
    }
    id = (record as { id?: unknown }).id;
  }
  if (end < size) await truncate(out, end);
  let records = 0;
  for await (const _ of streamLines(out)) records++;
  return { line, id, records, tornBytesCut: size - end };
}

/**
 * The checks on the files that need no model, so a command can make them before it loads one: the
 * input is a file, and the output is another path, free unless `resume`.
 */
export async function checkScoreFiles(input: string, out: string, resume: boolean): Promise<{ bytesTotal: number; outExists: boolean }> {
  if (resolve(out) === resolve(input)) throw new InvalidArgumentError('--out', 'a file other than --input', JSON.stringify(out));
  let bytesTotal: number;
  try {
    const info = await stat(input);
    if (!info.isFile()) throw new FileFormatError(input, 'a JSON Lines file (--input)', 'a directory or other non-file');
    bytesTotal = info.size;
  } catch (error) {
    throw fileAccessError(input, 'a readable JSON Lines file (--input)', error);
  }
  const outExists = await stat(out).then(() => true, () => false);
  if (outExists && !resume) throw new InvalidArgumentError('--out', 'a file that does not exist yet (or --resume to continue it)', `an existing file ${JSON.stringify(out)}`);
  return { bytesTotal, outExists };
}

/** Writes all of `bytes` at the end of the file (a write may take fewer bytes than offered). */
async function append(handle: FileHandle, bytes: Buffer): Promise<void> {
  for (let written = 0; written < bytes.length;) {
    const { bytesWritten } = await handle.write(bytes, written, Math.min(bytes.length - written, MAX_IO_BYTES));
    written += bytesWritten;
  }
}

/** Scores a JSON lines file into `out` (see the module comment); the summary of this run. */
export async function scoreFile(options: ScoreFileOptions): Promise<FileSummary> {
  const { input, out, scorer, strict = false, perToken = false, signal } = options;
  const chunkLines = options.chunkLines ?? DEFAULT_CHUNK_LINES;
  if (!Number.isSafeInteger(chunkLines) || chunkLines < 1) throw new InvalidArgumentError('--chunk-lines', 'a positive integer', describe(chunkLines));
  if (!Number.isSafeInteger(scorer.concurrency) || scorer.concurrency < 1) throw new InvalidArgumentError('scorer.concurrency', 'a positive integer', describe(scorer.concurrency));
  const { bytesTotal, outExists } = await checkScoreFiles(input, out, options.resume ?? false);
  const from: ResumePoint = outExists ? await resumePoint(out, perToken) : { line: 0, id: undefined, records: 0, tornBytesCut: 0 };
  await mkdir(dirname(out), { recursive: true });
  const handle = await open(out, outExists ? 'a' : 'ax');

  const started = performance.now();
  const progress: FileProgress = { bytesDone: 0, bytesTotal, lines: 0, scored: 0, tokens: 0, seconds: 0 };
  const summary: FileSummary = { ...progress, skipped: 0, skippedLines: [], resumedAfterLine: from.line, skippedEarlier: 0, tornBytesCut: from.tornBytesCut, interrupted: false };
  const inFlight: { outcomes: Promise<LineOutcome[]>; lines: number; end: number }[] = [];
  let nonBlankBefore = 0;
  let reachedResumeLine = false;

  /** Writes the oldest chunk's records; a bad line is counted, or under `strict` ends the run after the records before it. */
  const writeOldest = async (): Promise<void> => {
    const chunk = inFlight.shift()!;
    const outcomes = await chunk.outcomes;
    const records: string[] = [];
    let badLine: string | undefined;
    for (const outcome of outcomes) {
      if ('error' in outcome) {
        if (strict) {
          badLine = outcome.error;
          break;
        }
        summary.skipped++;
        if (summary.skippedLines.length < SKIPPED_LINES_KEPT) summary.skippedLines.push(outcome.line);
        options.onBadLine?.(outcome.error);
        continue;
      }
      const { record } = outcome;
      records.push(JSON.stringify({ id: record.id, line: outcome.line, ...record }));
      progress.tokens += record.tokens as number;
    }
    if (records.length > 0) await append(handle, Buffer.from(`${records.join('\n')}\n`));
    progress.scored += records.length;
    if (badLine !== undefined) throw new BadLineError(input, badLine);
    progress.lines += chunk.lines;
    progress.bytesDone = chunk.end;
    progress.seconds = (performance.now() - started) / 1000;
    options.onProgress?.({ ...progress });
  };

  try {
    try {
      let lines: InputLine[] = [];
      let end = 0;
      const submit = async (): Promise<void> => {
        const outcomes = scorer.scoreChunk(lines);
        // Handled when its turn comes; this only keeps a rejection from being reported early as unhandled.
        outcomes.catch(() => undefined);
        inFlight.push({ outcomes, lines: lines.length, end });
        lines = [];
        if (inFlight.length >= scorer.concurrency) await writeOldest();
      };
      for await (const { line, text, end: lineEnd } of streamLines(input)) {
        end = lineEnd;
        if (line <= from.line) {
          if (text.trim() !== '') nonBlankBefore++;
          if (line === from.line) {
            checkResumedLine(input, out, line, text, from.id);
            reachedResumeLine = true;
          }
          progress.bytesDone = lineEnd;
          continue;
        }
        // The first line to score: progress starts here (past the lines a resumed run skips).
        if (line === from.line + 1) options.onProgress?.({ ...progress });
        lines.push({ line, text });
        if (line % chunkLines === 0) {
          await submit();
          if (signal?.aborted) break;
        }
      }
      if (from.line > 0 && !reachedResumeLine) {
        throw new FileFormatError(out, `records of lines of ${input}`, `a last record of line ${from.line}, past the input's end`);
      }
      if (signal?.aborted) summary.interrupted = true;
      else if (lines.length > 0) await submit();
      while (inFlight.length > 0) await writeOldest();
    } finally {
      // A failure leaves chunks in flight: let them settle (their errors were handled above) before the file closes.
      await Promise.allSettled(inFlight.map((c) => c.outcomes));
    }
    await handle.datasync();
  } finally {
    await handle.close();
  }
  summary.skippedEarlier = nonBlankBefore - from.records;
  return { ...summary, ...progress, seconds: (performance.now() - started) / 1000 };
}

/** The input line a resumed output ends on must have the id its record carries, or the output came from another input. */
function checkResumedLine(input: string, out: string, line: number, text: string, id: unknown): void {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  const inputId = (value as { id?: unknown } | undefined)?.id ?? line;
  if (inputId !== id) {
    throw new FileFormatError(out, `records of ${input} (its last record, of line ${line}, has id ${JSON.stringify(id)})`, `line ${line} of the input with id ${JSON.stringify(inputId)}: was it written from another input?`);
  }
}
