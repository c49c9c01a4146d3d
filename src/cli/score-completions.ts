/**
 * `intuitor score-completions`: every line of a JSON lines file (text, chat or pre-tokenised
 * completions) scored under a model: its completion's self-certainty, log-probs and entropy, one
 * record per line in input order (src/score/pipeline.ts). Progress on stderr, a summary at the end
 * (`--json`: on stdout as JSON). Bad lines are reported and skipped (exit 2 at the end), or with
 * `--strict` stop the run. Ctrl-C or SIGTERM finishes the chunks in flight and stops; `--resume`
 * continues.
 */
import { resolve } from 'node:path';
import { FileFormatError } from '../errors.js';
import { GpuContext } from '../gpu/context.js';
import { DEFAULT_MAX_TOKENS_PER_PASS, Scorer } from '../score/engine.js';
import { localChunkScorer, type ChunkScorer } from '../score/lines.js';
import { DEFAULT_CHUNK_LINES, checkScoreFiles, scoreFile, type FileSummary } from '../score/pipeline.js';
import { modelFingerprint } from '../fleet/fingerprint.js';
import { queueChunkScorer } from '../fleet/producer.js';
import { DEFAULT_QUEUE_NAME, type ScoreJob } from '../fleet/protocol.js';
import { parseRedisUrl, type RedisConnection } from '../fleet/redis.js';
import { redacting } from './fleet.js';
import { choiceOption, numberOption, positiveIntOption } from './inputs.js';
import { createProgress } from './progress.js';

export const SCORE_COMPLETIONS_DEFAULTS = {
  temperature: '1',
  maxTokensPerPass: String(DEFAULT_MAX_TOKENS_PER_PASS),
  chunkLines: String(DEFAULT_CHUNK_LINES),
  weights: 'as-stored',
  queueName: DEFAULT_QUEUE_NAME,
  inFlight: '16',
} as const;

export interface ScoreCompletionsOptions {
  model: string;
  input: string;
  out: string;
  perToken?: boolean;
  temperature: string;
  resume?: boolean;
  strict?: boolean;
  json?: boolean;
  maxTokensPerPass: string;
  chunkLines: string;
  weights: string;
  queue?: string;
  queueName: string;
  inFlight: string;
}

const LABEL = 'intuitor score-completions';

export async function scoreCompletionsCommand(o: ScoreCompletionsOptions): Promise<void> {
  const temperature = numberOption('--temperature', o.temperature, { above: 0 });
  const maxTokensPerPass = numberOption('--max-tokens-per-pass', o.maxTokensPerPass, { min: 2, integer: true });
  const chunkLines = positiveIntOption('--chunk-lines', o.chunkLines);
  const weights = choiceOption('--weights', o.weights, ['as-stored', 'f32'] as const);
  await checkScoreFiles(o.input, o.out, o.resume ?? false);
  if (o.queue !== undefined) {
    await scoreThroughQueue(o, parseRedisUrl(o.queue), { temperature, perToken: o.perToken ?? false, weights }, chunkLines);
    return;
  }
  const ctx = await GpuContext.create();
  try {
    const scorer = await Scorer.load(ctx, o.model, { maxTokensPerPass, dtype: weights });
    try {
      await runScoreFile(localChunkScorer(scorer, { temperature, perToken: o.perToken ?? false }), { ...o, chunkLines });
    } finally {
      await scorer.destroy();
    }
  } finally {
    ctx.close();
  }
}

/** The producer of a scoring fleet: the same file run, its chunks scored by `intuitor worker`s through the queue. */
async function scoreThroughQueue(o: ScoreCompletionsOptions, connection: RedisConnection, options: ScoreJob['options'], chunkLines: number): Promise<void> {
  const inFlight = positiveIntOption('--in-flight', o.inFlight);
  await redacting(connection, async () => {
    const model = await modelFingerprint(o.model);
    const log = (line: string) => process.stderr.write(`${LABEL}: ${line}\n`);
    const scorer = await queueChunkScorer({ connection, queueName: o.queueName, model, options, output: resolve(o.out), inFlight, log });
    log(`run ${scorer.run}: model ${o.model} (fingerprint ${model.digest.slice(0, 12)}…); chunks of ${chunkLines} lines, ${inFlight} in flight, to queue ${o.queueName} at ${connection.display}`);
    try {
      await runScoreFile(scorer, { ...o, chunkLines });
    } finally {
      await scorer.close();
      const s = scorer.stats;
      if (s.jobs > 0) log(`fleet: ${s.jobs} jobs, per job ${(s.workMs / s.jobs).toFixed(0)} ms scoring on a worker, ${(s.addMs / s.jobs).toFixed(1)} ms to enqueue, ${(s.deliveryMs / s.jobs).toFixed(1)} ms from a worker's end to the result here`);
    }
  });
}

/**
 * The file run with any ChunkScorer (this process's, or a fleet's): progress, bad lines on stderr,
 * signals, the summary, and the exit status (2 when lines were skipped, 130/143 when stopped by
 * SIGINT/SIGTERM).
 */
export async function runScoreFile(scorer: ChunkScorer, o: Pick<ScoreCompletionsOptions, 'input' | 'out' | 'perToken' | 'resume' | 'strict' | 'json'> & { chunkLines: number }): Promise<FileSummary> {
  const stopping = new AbortController();
  let stoppedBy: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    // A second signal does not wait: the records written so far are whole lines, and --resume cuts a torn one.
    if (stoppedBy !== undefined) process.exit(signal === 'SIGINT' ? 130 : 143);
    stoppedBy = signal;
    process.stderr.write(`\n${LABEL}: ${signal}: finishing the chunks in flight (again to stop at once); --resume continues\n`);
    stopping.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let progress: ReturnType<typeof createProgress> | undefined;
  let summary: FileSummary;
  try {
    summary = await scoreFile({
      input: o.input, out: o.out, scorer, chunkLines: o.chunkLines, resume: o.resume, strict: o.strict, perToken: o.perToken, signal: stopping.signal,
      onBadLine: (message) => process.stderr.write(`${LABEL}: skipped ${o.input} ${message}\n`),
      onProgress: (p) => {
        progress ??= createProgress(LABEL, p.bytesTotal, p.bytesDone, { percent: true });
        // The first call only places the bar: with nothing done yet there is no rate for an ETA.
        if (p.lines > 0) progress.update(p.bytesDone, { lines: String(p.lines), tokens: String(p.tokens), 'tokens/s': rate(p.tokens, p.seconds) });
      },
    });
  } finally {
    progress?.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  const skipped = summary.skipped + summary.skippedEarlier;
  if (o.json) {
    process.stdout.write(`${JSON.stringify({
      input: o.input, out: o.out, lines: summary.lines, scored: summary.scored, skipped: summary.skipped, skipped_lines: summary.skippedLines,
      skipped_earlier: summary.skippedEarlier, resumed_after_line: summary.resumedAfterLine, torn_bytes_cut: summary.tornBytesCut,
      tokens: summary.tokens, seconds: summary.seconds, tokens_per_second: summary.seconds > 0 ? summary.tokens / summary.seconds : null,
      interrupted: summary.interrupted, max_rss_bytes: process.resourceUsage().maxRSS * 1024,
    })}\n`);
  } else {
    const resumed = summary.resumedAfterLine > 0 ? `, resumed after line ${summary.resumedAfterLine}${summary.tornBytesCut > 0 ? ` (a torn last line of ${summary.tornBytesCut} bytes cut)` : ''}` : '';
    process.stderr.write(`${LABEL}: ${summary.lines} lines (${summary.scored} scored, ${summary.skipped} skipped${resumed}), ${summary.tokens} completion tokens in ${summary.seconds.toFixed(1)} s (${rate(summary.tokens, summary.seconds)} tokens/s) → ${o.out}${summary.interrupted ? `; stopped by ${stoppedBy}: --resume continues` : ''}\n`);
  }
  if (summary.interrupted) process.exitCode = stoppedBy === 'SIGINT' ? 130 : 143;
  else if (skipped > 0) {
    const where = [
      ...(summary.skipped > 0 ? [`line${summary.skipped === 1 ? '' : 's'} ${summary.skippedLines.join(', ')}${summary.skippedLines.length < summary.skipped ? ', …' : ''}, each reported above`] : []),
      ...(summary.skippedEarlier > 0 ? [`${summary.skippedEarlier} in the runs before --resume`] : []),
    ];
    throw new FileFormatError(o.input, 'JSON lines in one of the three forms', `${skipped} bad line${skipped === 1 ? '' : 's'}, skipped (${where.join('; ')}); the others were scored`);
  }
  return summary;
}

function rate(tokens: number, seconds: number): string {
  return seconds > 0 ? (tokens / seconds).toFixed(0) : '0';
}
