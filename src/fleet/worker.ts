/**
 * A fleet worker: a BullMQ Worker that takes score jobs one at a time (one per GPU), checks that
 * each was made for its own model, runs `scoreLines` (the very code the one-machine command runs)
 * and returns the outcomes keyed by line. Bad lines are outcomes, not failures, so they are never
 * retried. A job it cannot do (another model, another protocol, options the scorer rejects) fails
 * at once with an UnrecoverableError saying why, logged here and reported to the producer; any
 * other error (the GPU) is retried by BullMQ with backoff. Locks, lock renewal and the recovery
 * of a dead worker's job (stalled-job checks) are BullMQ's.
 *
 * Every few seconds the worker publishes what it does (adapter, model, jobs, tokens, tokens/s) in
 * a key that expires when it stops, which `intuitor queue status` lists.
 */
import { Redis } from 'ioredis';
import { hostname } from 'node:os';
import { MetricsTime, UnrecoverableError, Worker, type Job } from 'bullmq';
import { InvalidArgumentError } from '../errors.js';
import type { ScoringMetrics } from '../serve/metrics.js';
import type { Scorer } from '../score/engine.js';
import { scoreLines } from '../score/lines.js';
import { fingerprintDifference, type ModelFingerprint } from './fingerprint.js';
import { BULLMQ_PREFIX, lineSpan, protocolProblem, type FleetJob, type ScoreJobResult } from './protocol.js';
import { ioredisOptions, reportErrorsOnce, type RedisConnection } from './redis.js';

/** Where a worker publishes its state: `<prefix>:<queue>:workers:<name>`. */
export const workerKey = (queueName: string, name: string) => `${BULLMQ_PREFIX}:${queueName}:workers:${name}`;
/** Published every HEARTBEAT_MS; the key outlives a silent worker by twice that. */
const HEARTBEAT_MS = 5000;

/** What a worker publishes about itself. */
export interface WorkerState {
  name: string;
  adapter: string;
  model: string;
  /** Its model's fingerprint digest. */
  fingerprint: string;
  startedAt: number;
  updatedAt: number;
  /** The job it is on ('' when idle). */
  current: string;
  jobs: number;
  lines: number;
  tokens: number;
  /** Time in the scorer, ms: tokens / workMs is the worker's own tokens/s. */
  workMs: number;
  /** Time between the end of one job and the start of the next while jobs were waiting: BullMQ's hand-over in Redis, ms. */
  handoverMs: number;
  handovers: number;
  refused: number;
}

export interface FleetWorkerOptions {
  connection: RedisConnection;
  queueName: string;
  scorer: Scorer;
  fingerprint: ModelFingerprint;
  /** How the worker loaded its weights ('as-stored' or 'f32'); jobs must ask for the same. */
  weights: string;
  /** The model folder, for logs. */
  model: string;
  adapter: string;
  name?: string;
  /** serve's Prometheus metrics, counted per job: requests{route="job", status="done|refused|failed"}, their durations, items and completion tokens. */
  metrics?: ScoringMetrics;
  /** BullMQ's lock on a job (renewed at half of it) and the stalled-job check interval, ms (default 30 s). */
  lockDurationMs?: number;
  log: (line: string) => void;
}

export class FleetWorker {
  readonly name: string;
  readonly state: WorkerState;
  private readonly worker: Worker<FleetJob, ScoreJobResult>;
  private readonly redis: Redis;
  private readonly heartbeat: NodeJS.Timeout;
  private lastJobEnd = 0;
  private closing: Promise<void> | undefined;

  constructor(private readonly o: FleetWorkerOptions) {
    this.name = o.name ?? `${hostname()}-${process.pid}`;
    const now = Date.now();
    this.state = {
      name: this.name, adapter: o.adapter, model: o.model, fingerprint: o.fingerprint.digest, startedAt: now, updatedAt: now,
      current: '', jobs: 0, lines: 0, tokens: 0, workMs: 0, handoverMs: 0, handovers: 0, refused: 0,
    };
    const lockDuration = o.lockDurationMs ?? 30_000;
    this.worker = new Worker<FleetJob, ScoreJobResult>(o.queueName, (job) => this.process(job), {
      connection: ioredisOptions(o.connection), prefix: BULLMQ_PREFIX, name: this.name, concurrency: 1,
      lockDuration, stalledInterval: lockDuration, metrics: { maxDataPoints: MetricsTime.ONE_WEEK }, autorun: false,
    });
    this.redis = new Redis(ioredisOptions(o.connection));
    const report = reportErrorsOnce(o.log, o.connection, `worker ${this.name}`);
    this.worker.on('error', report);
    this.redis.on('error', report);
    this.heartbeat = setInterval(() => void this.publish(), HEARTBEAT_MS);
  }

  /** Takes jobs until close(). */
  async run(): Promise<void> {
    await this.publish();
    await this.worker.run();
  }

  private async process(job: Job<FleetJob, ScoreJobResult>): Promise<ScoreJobResult> {
    const start = Date.now();
    // A hand-over counts only when this job was already waiting as the last one ended.
    if (this.lastJobEnd > 0 && job.timestamp <= this.lastJobEnd) {
      this.state.handoverMs += start - this.lastJobEnd;
      this.state.handovers++;
    }
    const data = job.data;
    const span = Array.isArray(data?.lines) ? lineSpan(data.lines) : 'a job';
    const count = (status: 'done' | 'refused' | 'failed') => {
      this.o.metrics?.requests.inc({ route: 'job', status });
      this.o.metrics?.requestDuration.observe({ route: 'job' }, (Date.now() - start) / 1000);
    };
    const refuse = (why: string) => {
      this.state.refused++;
      count('refused');
      const message = `worker ${this.name} (model ${this.o.model}) refuses ${span} of run ${String(data?.run)}: ${why}`;
      this.o.log(message);
      return new UnrecoverableError(message);
    };
    const problem = protocolProblem(data);
    if (problem !== null) throw refuse(problem);
    if (data.model?.digest !== this.o.fingerprint.digest) {
      const theirs = typeof data.model?.digest === 'string' ? data.model.digest.slice(0, 12) : 'none';
      const diff = typeof data.model?.files === 'object' && data.model.files !== null ? `: ${fingerprintDifference(this.o.fingerprint, data.model)}` : '';
      throw refuse(`the job is for model ${theirs}…, this worker serves ${this.o.fingerprint.digest.slice(0, 12)}…${diff}`);
    }
    if (data.options?.weights !== this.o.weights) throw refuse(`the job wants --weights ${String(data.options?.weights)}, this worker loaded ${this.o.weights}`);
    this.state.current = `${job.id} (${span})`;
    void this.publish();
    const scoring = Date.now();
    let outcomes;
    try {
      outcomes = await scoreLines(this.o.scorer, data.lines, { temperature: data.options.temperature, perToken: data.options.perToken });
    } catch (err) {
      if (err instanceof InvalidArgumentError) throw refuse(err.message);
      count('failed');
      this.o.metrics?.batchFailures.inc();
      throw err;
    } finally {
      this.state.current = '';
    }
    const finishedAt = Date.now();
    const workMs = finishedAt - scoring;
    const tokens = outcomes.reduce((sum, o) => sum + ('record' in o ? (o.record.tokens as number) : 0), 0);
    count('done');
    this.o.metrics?.batchItems.observe(outcomes.length);
    this.o.metrics?.scoredItems.inc(outcomes.filter((o) => 'record' in o).length);
    this.o.metrics?.scoredTokens.inc({ part: 'completion' }, tokens);
    Object.assign(this.state, { jobs: this.state.jobs + 1, lines: this.state.lines + outcomes.length, tokens: this.state.tokens + tokens, workMs: this.state.workMs + workMs });
    this.o.log(`worker ${this.name}: ${span} of run ${data.run}: ${outcomes.length} lines, ${tokens} tokens in ${(workMs / 1000).toFixed(2)} s (${rate(tokens, workMs)} tokens/s; ${rate(this.state.tokens, this.state.workMs)} overall)`);
    this.lastJobEnd = finishedAt;
    void this.publish();
    return { kind: 'score', outcomes, report: { worker: this.name, adapter: this.o.adapter, tokens, workMs, finishedAt } };
  }

  private async publish(): Promise<void> {
    this.state.updatedAt = Date.now();
    try {
      await this.redis.set(workerKey(this.o.queueName, this.name), JSON.stringify(this.state), 'PX', 2 * HEARTBEAT_MS);
    } catch {
      // Redis is away: the error listener has said so, and the next beat tries again.
    }
  }

  /**
   * Stops taking jobs, lets the current one finish and hand in its result, then disconnects. With
   * `force`, stops at once: the job's lock lapses and another worker takes it (lockDurationMs).
   */
  close(force = false): Promise<void> {
    if (force) return this.worker.close(true);
    this.closing ??= (async () => {
      await this.worker.close();
      clearInterval(this.heartbeat);
      await this.redis.del(workerKey(this.o.queueName, this.name)).catch(() => undefined);
      this.redis.disconnect();
    })();
    return this.closing;
  }
}

function rate(tokens: number, ms: number): string {
  return ms > 0 ? ((tokens * 1000) / ms).toFixed(0) : '0';
}
