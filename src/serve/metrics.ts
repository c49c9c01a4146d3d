/**
 * The Prometheus metrics of a scoring process (`intuitor serve`, a fleet worker), through
 * prom-client. Each process or test makes its own registry with createScoringMetrics, so two
 * servers in one process never share counters.
 *
 * Names (prefix `intuitor_`):
 * - requests_total{route, status}          HTTP requests answered
 * - request_duration_seconds{route}        latency histogram, from arrival to the last byte
 * - scored_items_total                     completions scored
 * - scored_tokens_total{part}              tokens through the forward: part = prompt | completion
 * - batch_items / batch_tokens             histograms of each Scorer.score call's size
 * - batch_failures_total                   Scorer.score calls that threw (their requests got 500)
 * - queue_depth                            items waiting for the GPU (not yet in a batch)
 * - model_reloads_total{outcome}           /reload calls: swapped | refused | failed
 * and prom-client's default process metrics (process_resident_memory_bytes, heap, event loop lag).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface ScoringMetrics {
  readonly registry: Registry;
  readonly requests: Counter<'route' | 'status'>;
  readonly requestDuration: Histogram<'route'>;
  readonly scoredItems: Counter;
  readonly scoredTokens: Counter<'part'>;
  readonly batchItems: Histogram;
  readonly batchTokens: Histogram;
  readonly batchFailures: Counter;
  readonly queueDepth: Gauge;
  readonly modelReloads: Counter<'outcome'>;
}

/** Powers of two: batch sizes span 1 item to thousands, tokens tens to hundreds of thousands. */
const powersOfTwo = (from: number, count: number): number[] => Array.from({ length: count }, (_, i) => from * 2 ** i);

/** A fresh registry holding every scoring metric and the process metrics. */
export function createScoringMetrics(): ScoringMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
    requests: new Counter({ name: 'intuitor_requests_total', help: 'HTTP requests answered, by route and status code', labelNames: ['route', 'status'], registers }),
    requestDuration: new Histogram({
      name: 'intuitor_request_duration_seconds', help: 'Time from a request\'s arrival to its response, by route', labelNames: ['route'], registers,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    }),
    scoredItems: new Counter({ name: 'intuitor_scored_items_total', help: 'Completions scored', registers }),
    scoredTokens: new Counter({ name: 'intuitor_scored_tokens_total', help: 'Tokens through the scoring forward, by part (prompt, completion)', labelNames: ['part'], registers }),
    batchItems: new Histogram({ name: 'intuitor_batch_items', help: 'Items per scoring batch (one Scorer.score call)', registers, buckets: powersOfTwo(1, 14) }),
    batchTokens: new Histogram({ name: 'intuitor_batch_tokens', help: 'Tokens (prompt + completion) per scoring batch', registers, buckets: powersOfTwo(16, 16) }),
    batchFailures: new Counter({ name: 'intuitor_batch_failures_total', help: 'Scoring batches that failed (their requests were answered 500)', registers }),
    queueDepth: new Gauge({ name: 'intuitor_queue_depth', help: 'Items waiting for the GPU, not yet in a batch', registers }),
    modelReloads: new Counter({ name: 'intuitor_model_reloads_total', help: 'Model reloads, by outcome (swapped, refused, failed)', labelNames: ['outcome'], registers }),
  };
}

/** Counts one scored batch of items with these token counts. */
export function recordBatch(metrics: ScoringMetrics, items: readonly { promptIds: readonly number[]; completionIds: readonly number[] }[]): void {
  let prompt = 0;
  let completion = 0;
  for (const item of items) {
    prompt += item.promptIds.length;
    completion += item.completionIds.length;
  }
  metrics.batchItems.observe(items.length);
  metrics.batchTokens.observe(prompt + completion);
  metrics.scoredItems.inc(items.length);
  metrics.scoredTokens.inc({ part: 'prompt' }, prompt);
  metrics.scoredTokens.inc({ part: 'completion' }, completion);
}
