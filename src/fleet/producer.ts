/**
 * The producer side of a fleet: a ChunkScorer whose chunks are scored by workers through a BullMQ
 * queue. `score-completions --queue URL` plugs it into the same file pipeline as the local scorer,
 * so ordering, `--resume`, bad-line reports, progress and the summary are the pipeline's.
 *
 * Each chunk is one job whose id is its run, first line and content hash (see chunkJobId): adding
 * it again (a resumed producer, a retry here) finds the job already there, waiting, running or
 * done, instead of making a second. The job's state in Redis is the truth; QueueEvents only wakes
 * the wait early. Every RECHECK_MS the producer looks at the job: a job Redis lost (a restart
 * without persistence) is added again; a failed one (refused by a worker, or past its retries)
 * stops the run with the worker's reason and the chunk's line numbers. A result is removed from
 * Redis once it is read, so the queue's memory holds only work in flight.
 */
import { Queue, QueueEvents, type Job } from 'bullmq';
import { QueueError } from '../errors.js';
import type { ChunkScorer, InputLine, LineOutcome } from '../score/lines.js';
import type { ModelFingerprint } from './fingerprint.js';
import { BULLMQ_PREFIX, PROTOCOL_VERSION, chunkJobId, lineSpan, runId, type FleetJob, type ScoreJob, type ScoreJobResult } from './protocol.js';
import { ioredisOptions, redact, reportErrorsOnce, type RedisConnection } from './redis.js';

/** How often a waiting chunk's job is checked in Redis (a lost job is re-added after at most this). */
const RECHECK_MS = 3000;
/** Tries per job for failures other than a refusal (BullMQ retries with exponential backoff from 1 s). */
const ATTEMPTS = 3;
/** A job left behind by a producer that never came back is dropped after a day (done) or a week (failed). */
const KEEP_DONE_S = 24 * 3600;
const KEEP_FAILED_S = 7 * 24 * 3600;
/** Completed events carry results: keep the events stream short (trimmed approximately, whole nodes of 100 entries). */
const EVENTS_KEPT = 100;

export interface QueueScorerOptions {
  connection: RedisConnection;
  queueName: string;
  model: ModelFingerprint;
  options: ScoreJob['options'];
  /** The output path: part of the run's id, so that --resume finds its jobs again. */
  output: string;
  /** Chunks in flight (enqueued and awaited) at once: enough to keep every worker busy. */
  inFlight: number;
  log: (line: string) => void;
}

/** What the jobs cost, as seen from the producer (summed over jobs), for the benchmark. */
export interface QueueScorerStats {
  jobs: number;
  /** Workers' time in the scorer, ms. */
  workMs: number;
  /** The producer's add() calls, ms. */
  addMs: number;
  /** From a worker's end of a job to its result in the producer's hands, ms (one clock when on one machine). */
  deliveryMs: number;
}

export interface QueueChunkScorer extends ChunkScorer {
  readonly run: string;
  readonly stats: QueueScorerStats;
  close(): Promise<void>;
}

export async function queueChunkScorer(o: QueueScorerOptions): Promise<QueueChunkScorer> {
  const connection = ioredisOptions(o.connection);
  const queue = new Queue<FleetJob, ScoreJobResult>(o.queueName, { connection, prefix: BULLMQ_PREFIX, streams: { events: { maxLen: EVENTS_KEPT } } });
  const events = new QueueEvents(o.queueName, { connection, prefix: BULLMQ_PREFIX });
  const report = reportErrorsOnce(o.log, o.connection, 'producer');
  queue.on('error', report);
  events.on('error', report);
  await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
  const run = runId(o.model, o.options, o.output);
  const stats: QueueScorerStats = { jobs: 0, workMs: 0, addMs: 0, deliveryMs: 0 };
  let closed = false;

  const add = (jobId: string, lines: readonly InputLine[]) => queue.add('score', {
    protocol: PROTOCOL_VERSION, kind: 'score', run, model: o.model, lines: [...lines], options: o.options,
  }, {
    jobId, attempts: ATTEMPTS, backoff: { type: 'exponential', delay: 1000 },
    removeOnComplete: { age: KEEP_DONE_S }, removeOnFail: { age: KEEP_FAILED_S },
  });

  async function scoreChunk(lines: readonly InputLine[]): Promise<LineOutcome[]> {
    const jobId = chunkJobId(run, lines);
    const span = lineSpan(lines);
    // A job that failed before this producer (re)started gets its tries again.
    if ((await queue.getJobState(jobId)) === 'failed') await (await queue.getJob(jobId))?.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
    const adding = Date.now();
    let job: Job<FleetJob, ScoreJobResult> = await add(jobId, lines);
    stats.addMs += Date.now() - adding;
    let result: ScoreJobResult | undefined;
    while (result === undefined) {
      try {
        result = await job.waitUntilFinished(events, RECHECK_MS) as ScoreJobResult;
        break;
      } catch {
        // A timeout, a failure or a lost connection: the job's state decides.
      }
      // The run ended (another chunk failed): this one's job stays queued for a --resume.
      if (closed) throw new QueueError(`${span}: the producer stopped before its result came`);
      const state = await queue.getJobState(jobId);
      if (state === 'unknown') {
        o.log(`producer: run ${run}: the job of ${span} is gone from Redis (restarted without persistence?); adding it again`);
        job = await add(jobId, lines);
      } else if (state === 'completed' || state === 'failed') {
        const finished = await queue.getJob(jobId);
        if (finished === undefined) continue;
        if (state === 'failed') throw new QueueError(`${span}: ${redact(finished.failedReason ?? 'failed', o.connection)}`);
        result = finished.returnvalue;
      }
    }
    checkOutcomes(lines, result, span);
    stats.jobs++;
    stats.workMs += result.report.workMs;
    stats.deliveryMs += Date.now() - result.report.finishedAt;
    await queue.remove(jobId);
    return result.outcomes;
  }

  return {
    concurrency: o.inFlight,
    run,
    stats,
    scoreChunk,
    async close() {
      closed = true;
      await events.close();
      await queue.close();
    },
  };
}

/** A result must hold one outcome per non-blank line of its chunk, in order. */
function checkOutcomes(lines: readonly InputLine[], result: ScoreJobResult, span: string): void {
  const want = lines.filter((l) => l.text.trim() !== '').map((l) => l.line);
  const got = Array.isArray(result?.outcomes) ? result.outcomes.map((o) => o.line) : [];
  if (got.length !== want.length || got.some((line, i) => line !== want[i])) {
    throw new QueueError(`${span}: the worker's result covers lines ${got.slice(0, 5).join(', ')}${got.length > 5 ? ', …' : ''} (${got.length}), not the chunk's ${want.length}`);
  }
}
