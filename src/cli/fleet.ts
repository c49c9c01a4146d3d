/**
 * The scoring fleet's commands: `intuitor worker` (one per GPU: takes score jobs from a Redis
 * queue) and `intuitor queue status`. The producer is `score-completions --queue`. Every line
 * these print and every error they raise shows the Redis URL redacted.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { IntuitorError, QueueError } from '../errors.js';
import { createScoringMetrics, type ScoringMetrics } from '../serve/metrics.js';
import { GpuContext } from '../gpu/context.js';
import { DEFAULT_MAX_TOKENS_PER_PASS, Scorer } from '../score/engine.js';
import { modelFingerprint } from '../fleet/fingerprint.js';
import { DEFAULT_QUEUE_NAME } from '../fleet/protocol.js';
import { parseRedisUrl, redact, type RedisConnection } from '../fleet/redis.js';
import { queueStatus, type QueueStatus } from '../fleet/status.js';
import { FleetWorker } from '../fleet/worker.js';
import { choiceOption, numberOption, positiveIntOption } from './inputs.js';

export const FLEET_DEFAULTS = {
  queueName: DEFAULT_QUEUE_NAME,
  maxTokensPerPass: String(DEFAULT_MAX_TOKENS_PER_PASS),
  weights: 'as-stored',
  lockDuration: '30000',
  metricsHost: '127.0.0.1',
} as const;

export interface WorkerCommandOptions {
  queue: string;
  queueName: string;
  model: string;
  name?: string;
  weights: string;
  maxTokensPerPass: string;
  lockDuration: string;
  metricsPort?: string;
  metricsHost: string;
}

const log = (line: string) => process.stderr.write(`intuitor ${line}\n`);

/**
 * Runs `work` so that whatever escapes it names the Redis URL only redacted: our own errors keep
 * their class (and exit status) with a redacted message; anything else becomes a QueueError.
 */
export async function redacting<T>(connection: RedisConnection, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    const message = redact(err instanceof Error ? err.message : String(err), connection);
    if (err instanceof IntuitorError) {
      err.message = message;
      throw err;
    }
    throw new QueueError(message);
  }
}

export async function workerCommand(o: WorkerCommandOptions): Promise<void> {
  const connection = parseRedisUrl(o.queue);
  const weights = choiceOption('--weights', o.weights, ['as-stored', 'f32'] as const);
  const maxTokensPerPass = numberOption('--max-tokens-per-pass', o.maxTokensPerPass, { min: 2, integer: true });
  const lockDurationMs = positiveIntOption('--lock-duration', o.lockDuration);
  const metricsPort = o.metricsPort === undefined ? undefined : numberOption('--metrics-port', o.metricsPort, { min: 0, max: 65535, integer: true });
  await redacting(connection, async () => {
    const fingerprint = await modelFingerprint(o.model);
    const ctx = await GpuContext.create();
    try {
      const scorer = await Scorer.load(ctx, o.model, { maxTokensPerPass, dtype: weights });
      const adapter = ctx.adapter?.description || ctx.adapter?.device || 'unknown adapter';
      const metrics = metricsPort === undefined ? undefined : createScoringMetrics();
      const worker = new FleetWorker({ connection, queueName: o.queueName, scorer, fingerprint, weights, model: o.model, adapter, name: o.name, lockDurationMs, metrics, log });
      const metricsServer = metrics === undefined ? undefined : await serveMetrics(metrics, o.metricsHost, metricsPort!);
      if (metricsServer !== undefined) log(`worker ${worker.name}: Prometheus metrics at http://${o.metricsHost}:${(metricsServer.address() as AddressInfo).port}/metrics`);
      log(`worker ${worker.name}: model ${o.model} (fingerprint ${fingerprint.digest.slice(0, 12)}…, ${weights} weights) on ${adapter}; queue ${o.queueName} at ${connection.display}`);
      let stopping = false;
      const onSignal = (signal: NodeJS.Signals) => {
        if (stopping) {
          log(`worker ${worker.name}: ${signal} again: stopping now; the job's lock lapses and another worker takes it`);
          void worker.close(true).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
          return;
        }
        stopping = true;
        const current = worker.state.current;
        log(`worker ${worker.name}: ${signal}: ${current === '' ? 'between jobs' : `finishing job ${current}`}, then stopping (again to stop at once)`);
        void worker.close();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        await worker.run();
        await worker.close();
        const s = worker.state;
        log(`worker ${worker.name}: stopped after ${s.jobs} jobs, ${s.lines} lines, ${s.tokens} tokens (${s.workMs > 0 ? ((s.tokens * 1000) / s.workMs).toFixed(0) : 0} tokens/s while scoring)`);
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        metricsServer?.close();
        await scorer.destroy();
      }
    } finally {
      ctx.close();
    }
  });
}

/** GET /metrics in Prometheus' text format, nothing else. */
async function serveMetrics(metrics: ScoringMetrics, host: string, port: number): Promise<Server> {
  const server = createServer((request, response) => {
    if (request.method !== 'GET' || request.url !== '/metrics') {
      response.writeHead(404).end();
      return;
    }
    metrics.registry.metrics().then((text) => response.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text), () => response.writeHead(500).end());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}

export interface QueueStatusOptions {
  queue: string;
  queueName: string;
  json?: boolean;
}

export async function queueStatusCommand(o: QueueStatusOptions): Promise<void> {
  const connection = parseRedisUrl(o.queue);
  const status = await redacting(connection, () => queueStatus(connection, o.queueName));
  process.stdout.write(o.json ? `${JSON.stringify(status)}\n` : formatStatus(status));
}

function formatStatus(s: QueueStatus): string {
  const eta = s.etaSeconds === null ? 'unknown (no worker has reported a rate)' : s.etaSeconds === 0 ? 'nothing left' : `${formatSeconds(s.etaSeconds)}`;
  const lines = [
    `queue ${s.queue} at ${s.redis}`,
    `jobs: ${s.waiting} waiting, ${s.active} active, ${s.delayed} delayed (retrying), ${s.done} done, ${s.failed} failed`,
    `workers: ${s.workers.length}, ${s.tokensPerSecond.toFixed(0)} tokens/s in all; ETA ${eta}`,
    ...s.workers.map((w) => `  ${w.name}: ${w.adapter}, model ${w.fingerprint.slice(0, 12)}…, ${w.jobs} jobs, ${w.tokens} tokens, ${w.tokensPerSecond.toFixed(0)} tokens/s, ${w.current === '' ? 'idle' : `on ${w.current}`}${w.refused > 0 ? `, ${w.refused} refused` : ''}`),
  ];
  return `${lines.join('\n')}\n`;
}

function formatSeconds(seconds: number): string {
  if (seconds < 90) return `${seconds.toFixed(0)} s`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}
