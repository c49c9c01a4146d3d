/**
 * `intuitor serve`: an HTTP scoring server on Fastify (JSON-schema validation, body limit) with
 * Prometheus metrics (prom-client). Endpoints:
 * - POST /score       {"items": [...], "per_token"?}: each item in any form of src/score/items.ts;
 *                     {"results": [...]} with score-completions' fields
 * - POST /get_reward  OpenRLHF's remote reward model: {"query": [prompt + response], "prompts",
 *                     "labels"?} → {"rewards": [...]}; the response is the query after its prompt
 * - POST /reload      {"model": DIR}: new weights of the same architecture, swapped in between
 *                     batches (only with reload enabled, only folders under the models root)
 * - GET /health, GET /metrics
 * Scoring and monitoring need `Authorization: Bearer <api key>` when an API key is set; /reload,
 * which loads files and weights, always needs its own reload key, so a trainer whose reward client
 * sends no header (OpenRLHF's) can score while only the process that saves checkpoints may swap
 * them in. Every error body is
 * {"statusCode", "error", "message"[, "field"]}: 400 names the field and index, 401 a missing or
 * wrong key, 403/404 a refused reload path, 413 a body over the limit, 503 a full queue (with
 * Retry-After) or a server shutting down, 500 a failed batch (the server keeps serving).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import { FileFormatError, InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { PolicyModel } from '../model/policy.js';
import { PolicyTokenizer } from '../model/tokenizer.js';
import { DEFAULT_MAX_TOKENS_PER_PASS, resultJson, type ScoreResult, type Scorer } from '../score/engine.js';
import { ItemError } from '../score/items.js';
import { QueueFullError, ScoringBatcher } from './batching.js';
import { createScoringMetrics, type ScoringMetrics } from './metrics.js';
import { ModelPathError, resolveModelFolder } from './paths.js';

/** What /get_reward returns per completion: mean self-certainty, mean log-prob, or minus the mean entropy. */
export const SERVE_REWARDS = ['self-certainty', 'logprob', 'neg-entropy'] as const;
export type ServeReward = (typeof SERVE_REWARDS)[number];

export const SERVE_DEFAULTS = {
  host: '127.0.0.1',
  port: 8000,
  reward: 'self-certainty' as ServeReward,
  temperature: 1,
  maxBatchTokens: DEFAULT_MAX_TOKENS_PER_PASS,
  maxWaitMs: 5,
  maxQueue: 4096,
  bodyLimit: 16 * 2 ** 20,
};

/** The environment variable that holds the API key when --api-key is not given. */
export const API_KEY_ENV = 'INTUITOR_API_KEY';
/** The environment variable that holds the reload key when --reload-key is not given. */
export const RELOAD_KEY_ENV = 'INTUITOR_RELOAD_KEY';

export interface ScoringServerOptions {
  /** The context the scorer runs on; reloaded models load onto it. */
  ctx: GpuContext;
  scorer: Scorer;
  /** The folder the scorer was loaded from (reported by /health). */
  modelDir: string;
  /** How reloaded weights are loaded (as the first were). */
  weights?: 'as-stored' | 'f32';
  /** Every request but /reload must carry `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Enables POST /reload for folders under this one (with reloadKey). */
  modelsRoot?: string;
  /** /reload must carry `Authorization: Bearer <reloadKey>`; required with modelsRoot. */
  reloadKey?: string;
  reward?: ServeReward;
  temperature?: number;
  maxBatchTokens?: number;
  maxWaitMs?: number;
  /** Items waiting for the GPU at most; more get 503. */
  maxQueue?: number;
  /** Request bodies over this many bytes get 413. */
  bodyLimit?: number;
  /** Where 500s are reported (default: one line on stderr). */
  onInternalError?: (err: unknown, route: string) => void;
}

interface ScoreBody {
  items: unknown[];
  per_token?: boolean;
}

interface RewardBody {
  query: string[];
  prompts: string[];
  labels?: unknown[];
}

const SCORE_SCHEMA = {
  type: 'object', required: ['items'], additionalProperties: false,
  properties: { items: { type: 'array', minItems: 1, items: { type: 'object' } }, per_token: { type: 'boolean' } },
};
// OpenRLHF may send more than these (labels, null when it has none); extra fields are ignored, not refused.
const REWARD_SCHEMA = {
  type: 'object', required: ['query', 'prompts'],
  properties: { query: { type: 'array', minItems: 1, items: { type: 'string' } }, prompts: { type: 'array', items: { type: 'string' } }, labels: { type: ['array', 'null'] } },
};
const RELOAD_SCHEMA = { type: 'object', required: ['model'], additionalProperties: false, properties: { model: { type: 'string', minLength: 1 } } };

/** An ajv error's location as a field: /items/3/prompt → items[3].prompt. */
function fieldOf(error: { instancePath: string; keyword: string; params: Record<string, unknown> }): string {
  const parts = error.instancePath.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (error.keyword === 'required') parts.push(String(error.params.missingProperty));
  if (error.keyword === 'additionalProperties') parts.push(String(error.params.additionalProperty));
  return parts.reduce((field, p) => (/^\d+$/.test(p) ? `${field}[${p}]` : field === '' ? p : `${field}.${p}`), '');
}

function validationMessage(error: { keyword: string; message?: string }, field: string): string {
  if (error.keyword === 'required') return `${field}: required`;
  if (error.keyword === 'additionalProperties') return `${field}: not a field of this request`;
  return `${field || 'body'}: ${error.message ?? 'invalid'}`;
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 413: 'Payload Too Large', 415: 'Unsupported Media Type',
  500: 'Internal Server Error', 503: 'Service Unavailable',
};

function sendError(reply: FastifyReply, statusCode: number, message: string, field?: string): FastifyReply {
  return reply.code(statusCode).send({ statusCode, error: STATUS_TEXT[statusCode] ?? 'Error', message, ...(field !== undefined && { field }) });
}

/** SHA-256 of a key: digests have one length, so comparing them in constant time leaks nothing, not even the key's length. */
const digest = (key: string): Buffer => createHash('sha256').update(key, 'utf8').digest();

/** The default report of a 500: one line on stderr. */
function reportToStderr(err: unknown, route: string): void {
  process.stderr.write(`intuitor serve: ${route} failed: ${err instanceof Error ? err.message : String(err)}\n`);
}

function rewardOf(result: ScoreResult, reward: ServeReward): number {
  switch (reward) {
    case 'self-certainty': return result.selfCertainty;
    case 'logprob': return result.logprobMean;
    case 'neg-entropy': return -result.entropy;
  }
}

export class ScoringServer {
  readonly app: FastifyInstance;
  readonly metrics: ScoringMetrics;
  readonly batcher: ScoringBatcher;
  private modelDir: string;
  /** Reloads one at a time: each loads, then swaps between batches. */
  private reloading: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: ScoringServerOptions) {
    const { scorer } = options;
    this.modelDir = options.modelDir;
    this.metrics = createScoringMetrics();
    this.batcher = new ScoringBatcher((items, scoreOptions) => scorer.score(items, scoreOptions), {
      maxBatchTokens: options.maxBatchTokens ?? SERVE_DEFAULTS.maxBatchTokens,
      maxWaitMs: options.maxWaitMs ?? SERVE_DEFAULTS.maxWaitMs,
      maxQueueItems: options.maxQueue ?? SERVE_DEFAULTS.maxQueue,
      temperature: options.temperature ?? SERVE_DEFAULTS.temperature,
    }, this.metrics);

    const app = Fastify({
      bodyLimit: options.bodyLimit ?? SERVE_DEFAULTS.bodyLimit,
      // Strict validation: no silent type coercion or dropping of unknown fields.
      ajv: { customOptions: { coerceTypes: false, removeAdditional: false } },
    });
    this.app = app;
    this.addAuth();
    this.addMetricsHooks();
    this.addErrorHandler();
    this.addRoutes();
    this.addShutdown();
  }

  private addAuth(): void {
    const { apiKey, reloadKey, modelsRoot } = this.options;
    if (modelsRoot !== undefined && (reloadKey === undefined || reloadKey === '')) {
      throw new InvalidArgumentError('reloadKey', 'a non-empty key when modelsRoot enables /reload (it loads files and weights)', describe(reloadKey));
    }
    const expected = { api: apiKey === undefined ? null : digest(apiKey), reload: reloadKey === undefined ? null : digest(reloadKey) };
    // onRequest runs before the body is read: an unauthenticated client cannot make the server parse anything.
    this.app.addHook('onRequest', async (request, reply) => {
      const isReload = request.routeOptions.url === '/reload';
      const want = isReload ? expected.reload : expected.api;
      if (want === null) return;
      const header = request.headers.authorization;
      const match = typeof header === 'string' ? /^Bearer (.+)$/i.exec(header) : null;
      if (match && timingSafeEqual(digest(match[1]!), want)) return;
      reply.header('www-authenticate', 'Bearer');
      const key = isReload ? 'reload key' : 'API key';
      return sendError(reply, 401, match ? `wrong ${key}` : `an Authorization: Bearer <${key}> header is required`);
    });
  }

  private addMetricsHooks(): void {
    this.app.addHook('onResponse', async (request, reply) => {
      // Unknown paths share one label, so scanners cannot blow up the metric's cardinality.
      const route = request.routeOptions.url === undefined ? 'unmatched' : `${request.method} ${request.routeOptions.url}`;
      this.metrics.requests.inc({ route, status: String(reply.statusCode) });
      this.metrics.requestDuration.observe({ route }, reply.elapsedTime / 1000);
    });
  }

  private addErrorHandler(): void {
    this.app.setErrorHandler((error: FastifyError | Error, request, reply) => {
      const fastifyError = error as FastifyError;
      if (fastifyError.validation) {
        const first = fastifyError.validation[0]!;
        const field = fieldOf(first as unknown as Parameters<typeof fieldOf>[0]);
        return sendError(reply, 400, validationMessage(first, field), field || undefined);
      }
      if (error instanceof ItemError) return sendError(reply, 400, error.message, error.field === '' ? error.where : `${error.where}.${error.field}`);
      if (error instanceof InvalidArgumentError) return sendError(reply, 400, error.message, error.argument);
      if (error instanceof FileFormatError) return sendError(reply, 400, error.message);
      if (error instanceof ModelPathError) return sendError(reply, error.status, error.message, 'model');
      if (error instanceof QueueFullError) {
        reply.header('retry-after', String(error.retryAfterSeconds));
        return sendError(reply, 503, error.message);
      }
      // Fastify's own client errors: malformed JSON, empty body, 413, unsupported media type.
      const status = fastifyError.statusCode;
      if (status !== undefined && status >= 400 && status < 500) return sendError(reply, status, error.message);
      (this.options.onInternalError ?? reportToStderr)(error, `${request.method} ${request.url}`);
      return sendError(reply, 500, `internal error: ${error.message}`);
    });
  }

  private addRoutes(): void {
    const { app, options } = this;
    const reward = options.reward ?? SERVE_DEFAULTS.reward;

    app.post('/score', { schema: { body: SCORE_SCHEMA } }, async (request) => {
      const body = request.body as ScoreBody;
      const items = body.items.map((value, i) => options.scorer.parse(value, `items[${i}]`, i));
      const results = await this.batcher.submit(items, body.per_token ?? false);
      return { results: results.map(resultJson) };
    });

    app.post('/get_reward', { schema: { body: REWARD_SCHEMA } }, async (request) => {
      const { query, prompts } = request.body as RewardBody;
      if (prompts.length !== query.length) throw new InvalidArgumentError('prompts', `one prompt per query (${query.length})`, `${prompts.length}`);
      const items = query.map((text, i) => {
        const prompt = prompts[i]!;
        if (!text.startsWith(prompt)) throw new InvalidArgumentError(`query[${i}]`, `its prompt (prompts[${i}], ${describe(prompt)}) followed by the response`, describe(text));
        return options.scorer.parse({ prompt, completion: text.slice(prompt.length) }, `query[${i}]`, i);
      });
      const results = await this.batcher.submit(items, false);
      return { rewards: results.map((r) => rewardOf(r, reward)) };
    });

    if (options.modelsRoot !== undefined) {
      const root = options.modelsRoot;
      app.post('/reload', { schema: { body: RELOAD_SCHEMA } }, async (request) => {
        const { model } = request.body as { model: string };
        const run = this.reloading.then(() => this.reload(root, model));
        this.reloading = run.catch(() => undefined);
        return run;
      });
    }

    app.get('/health', async () => ({
      status: 'ok', model: this.modelDir, architecture: options.scorer.config.architecture, queue_depth: this.batcher.depth,
    }));

    app.get('/metrics', async (_request, reply) => {
      reply.header('content-type', this.metrics.registry.contentType);
      return this.metrics.registry.metrics();
    });
  }

  /**
   * Closing: requests already queued are scored at once, without waiting for company, and their
   * connections close after the answer (a kept-alive one would hold the close for its timeout).
   */
  private addShutdown(): void {
    let closing = false;
    this.app.addHook('preClose', async () => {
      closing = true;
      void this.batcher.drain();
    });
    this.app.addHook('onSend', async (_request, reply) => {
      if (closing) reply.header('connection', 'close');
    });
    this.app.addHook('onClose', async () => {
      await this.batcher.drain();
    });
  }

  /** Loads `requested` (under `root`) while serving, then swaps it in between batches. */
  private async reload(root: string, requested: string): Promise<Record<string, unknown>> {
    const { ctx, scorer } = this.options;
    let folder: string;
    let model: PolicyModel;
    let tokenizer: PolicyTokenizer;
    try {
      folder = await resolveModelFolder(root, requested);
      tokenizer = PolicyTokenizer.load(folder);
      model = await PolicyModel.load(ctx, folder, { dtype: this.options.weights ?? 'as-stored' });
    } catch (err) {
      this.metrics.modelReloads.inc({ outcome: err instanceof ModelPathError || err instanceof InvalidArgumentError || err instanceof FileFormatError ? 'refused' : 'failed' });
      throw err;
    }
    try {
      await this.batcher.between(() => scorer.replaceModel(model, tokenizer));
    } catch (err) {
      model.destroy();
      this.metrics.modelReloads.inc({ outcome: err instanceof InvalidArgumentError ? 'refused' : 'failed' });
      throw err;
    }
    this.modelDir = folder;
    this.metrics.modelReloads.inc({ outcome: 'swapped' });
    return { model: folder, architecture: model.config.architecture };
  }

  /** Starts listening; the URL it listens on (port 0 picks a free one). */
  listen(host: string, port: number): Promise<string> {
    return this.app.listen({ host, port });
  }

  /** Stops accepting, lets every request in flight finish, and closes the listener (the scorer stays the caller's). */
  close(): Promise<void> {
    return this.app.close();
  }
}
