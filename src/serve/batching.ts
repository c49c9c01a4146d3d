/**
 * Dynamic batching for the scoring server: requests that arrive together are merged into one
 * Scorer.score call of up to `maxBatchTokens` tokens. An idle server waits at most `maxWaitMs`
 * after a request arrives for others to join it; while a batch runs on the GPU, arrivals queue and
 * go together as soon as it is done. Results are those of scoring each request alone: the Scorer
 * scores every item independently of the others in its call (only the GPU's summation order may
 * change with the pass's shape, within float32 rounding).
 *
 * The queue is bounded in items: a request that would overflow it is refused at once
 * (QueueFullError, HTTP 503 with Retry-After), so memory never grows with the load.
 *
 * Barriers run work between batches (a model swap): requests queued before a barrier are scored
 * before it, those after it after.
 */
import { IntuitorError, InvalidArgumentError } from '../errors.js';
import type { ScoreOptions, ScoreResult } from '../score/engine.js';
import type { ScoreItem } from '../score/items.js';
import type { ScoringMetrics } from './metrics.js';
import { recordBatch } from './metrics.js';

/** The queue holds `limit` items already: the request was not accepted; try again later. */
export class QueueFullError extends IntuitorError {
  /** Seconds after which a retry may find room (the Retry-After header). */
  readonly retryAfterSeconds: number;
  constructor(limit: number, retryAfterSeconds: number) {
    super('QUEUE_FULL', `the scoring queue is full (${limit} items waiting); retry after ${retryAfterSeconds} s`);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

export interface BatchingOptions {
  /** Tokens (prompt + completion) merged into one Scorer.score call; a larger request goes alone. */
  maxBatchTokens: number;
  /** Longest an idle server waits for more requests after one arrives. */
  maxWaitMs: number;
  /** Items waiting (not yet in a batch) at most. */
  maxQueueItems: number;
  /** Options of every Scorer.score call (per_token is chosen per request). */
  temperature: number;
}

/** What the batcher calls: Scorer.score, or a stand-in in tests. */
export type ScoreFunction = (items: readonly ScoreItem[], options: ScoreOptions) => Promise<ScoreResult[]>;

interface PendingRequest {
  kind: 'request';
  items: readonly ScoreItem[];
  tokens: number;
  perToken: boolean;
  resolve(results: ScoreResult[]): void;
  reject(err: unknown): void;
}

interface Barrier {
  kind: 'barrier';
  work(): Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

const tokensOf = (items: readonly ScoreItem[]): number => items.reduce((sum, it) => sum + it.promptIds.length + it.completionIds.length, 0);

/** How long a refused client should wait: about one batch's time. */
const RETRY_AFTER_SECONDS = 1;

export class ScoringBatcher {
  private readonly queue: (PendingRequest | Barrier)[] = [];
  private queuedItems = 0;
  private queuedTokens = 0;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private draining = false;

  constructor(private readonly score: ScoreFunction, private readonly options: BatchingOptions, private readonly metrics?: ScoringMetrics) {}

  /** Items waiting for the GPU. */
  get depth(): number {
    return this.queuedItems;
  }

  /** Scores one request's items (in one batch, with whatever else is queued); QueueFullError when there is no room. */
  submit(items: readonly ScoreItem[], perToken: boolean): Promise<ScoreResult[]> {
    const { maxQueueItems } = this.options;
    if (items.length > maxQueueItems) throw new InvalidArgumentError('items', `at most ${maxQueueItems} items in a request (the server's queue, --max-queue)`, `${items.length}`);
    if (this.queuedItems + items.length > maxQueueItems) throw new QueueFullError(maxQueueItems, RETRY_AFTER_SECONDS);
    return new Promise<ScoreResult[]>((resolve, reject) => {
      const tokens = tokensOf(items);
      this.queue.push({ kind: 'request', items, tokens, perToken, resolve, reject });
      this.queuedItems += items.length;
      this.queuedTokens += tokens;
      this.metrics?.queueDepth.set(this.queuedItems);
      this.schedule();
    });
  }

  /** Runs `work` between batches: after every request submitted before this call, before any submitted after. */
  between(work: () => Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ kind: 'barrier', work, resolve, reject });
      this.schedule();
    });
  }

  /** Scores everything queued without waiting for more, and resolves once nothing is queued or running. */
  async drain(): Promise<void> {
    this.draining = true;
    this.flush();
    while (this.running) {
      await this.running;
      this.flush();
    }
  }

  private schedule(): void {
    if (this.running || this.queue.length === 0) return;
    if (this.draining || this.queue[0]!.kind === 'barrier' || this.queuedTokens >= this.options.maxBatchTokens) {
      this.flush();
      return;
    }
    this.timer ??= setTimeout(() => {
      this.timer = null;
      this.flush();
    }, this.options.maxWaitMs);
  }

  /** Starts the next batch (or barrier) unless one is running; when it ends, the next starts at once. */
  private flush(): void {
    if (this.running || this.queue.length === 0) return;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const head = this.queue[0]!;
    const step = head.kind === 'barrier' ? this.runBarrier(this.queue.shift() as Barrier) : this.runBatch(this.takeBatch());
    this.running = step.finally(() => {
      this.running = null;
      this.flush();
    });
  }

  /** Requests from the front of the queue up to the token budget (at least one), stopping at a barrier. */
  private takeBatch(): PendingRequest[] {
    const batch: PendingRequest[] = [];
    let tokens = 0;
    while (this.queue.length > 0) {
      const next = this.queue[0]!;
      if (next.kind === 'barrier' || (batch.length > 0 && tokens + next.tokens > this.options.maxBatchTokens)) break;
      this.queue.shift();
      batch.push(next);
      tokens += next.tokens;
      this.queuedItems -= next.items.length;
      this.queuedTokens -= next.tokens;
    }
    this.metrics?.queueDepth.set(this.queuedItems);
    return batch;
  }

  private async runBarrier(barrier: Barrier): Promise<void> {
    try {
      await barrier.work();
      barrier.resolve();
    } catch (err) {
      barrier.reject(err);
    }
  }

  private async runBatch(batch: PendingRequest[]): Promise<void> {
    const items = batch.flatMap((r) => r.items);
    let results: ScoreResult[];
    try {
      results = await this.score(items, { temperature: this.options.temperature, perToken: batch.some((r) => r.perToken) });
    } catch (err) {
      this.metrics?.batchFailures.inc();
      for (const request of batch) request.reject(err);
      return;
    }
    if (this.metrics) recordBatch(this.metrics, items);
    let at = 0;
    for (const request of batch) {
      const mine = results.slice(at, at + request.items.length);
      at += request.items.length;
      request.resolve(request.perToken ? mine : mine.map(({ perToken: _, ...summary }) => summary));
    }
  }
}
