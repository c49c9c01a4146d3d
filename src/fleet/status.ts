/**
 * A queue's state for `intuitor queue status`: BullMQ's job counts and its completed/failed
 * totals (the workers record them), the workers' own published state (adapter, model, tokens/s,
 * current job), and an ETA for the jobs waiting and running at the fleet's present tokens/s.
 */
import { Redis } from 'ioredis';
import { Queue } from 'bullmq';
import { QueueError } from '../errors.js';
import { ioredisOptions, redact, type RedisConnection } from './redis.js';
import { BULLMQ_PREFIX } from './protocol.js';
import { workerKey, type WorkerState } from './worker.js';

export interface QueueStatus {
  queue: string;
  redis: string;
  waiting: number;
  active: number;
  delayed: number;
  /** Finished since the queue began (BullMQ's metrics), whether or not their results were collected. */
  done: number;
  failed: number;
  workers: (WorkerState & { tokensPerSecond: number })[];
  /** The workers' tokens/s, summed. */
  tokensPerSecond: number;
  /** Seconds to finish the jobs waiting and running, or null without a rate. */
  etaSeconds: number | null;
}

export async function queueStatus(connection: RedisConnection, queueName: string): Promise<QueueStatus> {
  const options = ioredisOptions(connection);
  // A status query should fail, not wait for ever, when Redis is away.
  const once = { ...options, maxRetriesPerRequest: 1, retryStrategy: () => null, enableOfflineQueue: false, lazyConnect: true };
  const redis = new Redis(once);
  let refusal: Error | undefined;
  redis.on('error', (err: Error) => (refusal ??= err));
  try {
    await redis.connect();
  } catch (err) {
    // ioredis rejects with "Connection is closed"; the server's reason (WRONGPASS, ECONNREFUSED) came as an error event.
    throw new QueueError(`cannot reach the queue at ${connection.display}: ${redact((refusal ?? (err as Error)).message, connection)}`);
  }
  const queue = new Queue(queueName, { connection: once, prefix: BULLMQ_PREFIX });
  queue.on('error', () => undefined);
  try {
    const counts = await queue.getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'failed');
    const [completed, failedTotal] = await Promise.all([queue.getMetrics('completed', 0, 0), queue.getMetrics('failed', 0, 0)]);
    const keys: string[] = [];
    const pattern = workerKey(queueName, '*');
    let cursor = '0';
    do {
      const [next, found] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 200);
      cursor = next;
      keys.push(...found);
    } while (cursor !== '0');
    const states = keys.length === 0 ? [] : (await redis.mget(...keys)).filter((v): v is string => v !== null).map((v) => JSON.parse(v) as WorkerState);
    const workers = states.sort((a, b) => a.name.localeCompare(b.name)).map((w) => ({ ...w, tokensPerSecond: w.workMs > 0 ? (w.tokens * 1000) / w.workMs : 0 }));
    const tokensPerSecond = workers.reduce((s, w) => s + w.tokensPerSecond, 0);
    const jobs = workers.reduce((s, w) => s + w.jobs, 0);
    const tokensPerJob = jobs > 0 ? workers.reduce((s, w) => s + w.tokens, 0) / jobs : 0;
    const left = (counts.waiting ?? 0) + (counts.prioritized ?? 0) + (counts.active ?? 0) + (counts.delayed ?? 0);
    return {
      queue: queueName, redis: connection.display,
      waiting: (counts.waiting ?? 0) + (counts.prioritized ?? 0), active: counts.active ?? 0, delayed: counts.delayed ?? 0,
      done: completed.meta.count, failed: Math.max(counts.failed ?? 0, failedTotal.meta.count),
      workers, tokensPerSecond,
      etaSeconds: left === 0 ? 0 : tokensPerSecond > 0 && tokensPerJob > 0 ? (left * tokensPerJob) / tokensPerSecond : null,
    };
  } finally {
    await queue.close();
    redis.disconnect();
  }
}
