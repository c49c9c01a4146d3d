/**
 * `intuitor serve`: the scoring server (src/serve/server.ts) for one model folder. Prints the URL
 * it listens on; SIGTERM or SIGINT stops accepting, lets the requests in flight finish, frees the
 * GPU and exits 0.
 */
import { statSync } from 'node:fs';
import { InvalidArgumentError } from '../errors.js';
import { GpuContext } from '../gpu/context.js';
import { Scorer } from '../score/engine.js';
import { API_KEY_ENV, RELOAD_KEY_ENV, SERVE_REWARDS, ScoringServer } from '../serve/server.js';
import { choiceOption, numberOption, positiveIntOption } from './inputs.js';

export interface ServeCommandOptions {
  model: string;
  host: string;
  port: string;
  apiKey?: string;
  reloadKey?: string;
  allowReload?: boolean;
  modelsRoot?: string;
  reward: string;
  temperature: string;
  maxBatchTokens: string;
  maxWaitMs: string;
  maxQueue: string;
  bodyLimit: string;
  weights: string;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/** The server's settings from the flags, each checked and named. */
function settings(o: ServeCommandOptions, env: NodeJS.ProcessEnv) {
  const apiKey = o.apiKey ?? env[API_KEY_ENV];
  if (apiKey !== undefined && apiKey.trim() === '') throw new InvalidArgumentError(o.apiKey === undefined ? API_KEY_ENV : '--api-key', 'a non-empty key', 'an empty string');
  const reloadKey = o.reloadKey ?? env[RELOAD_KEY_ENV];
  if (reloadKey !== undefined && reloadKey.trim() === '') throw new InvalidArgumentError(o.reloadKey === undefined ? RELOAD_KEY_ENV : '--reload-key', 'a non-empty key', 'an empty string');
  if (o.reloadKey !== undefined && !o.allowReload) throw new InvalidArgumentError('--reload-key', 'no value without --allow-reload', 'a key');
  let modelsRoot: string | undefined;
  if (o.allowReload) {
    // /reload loads files and weights on a caller's word: only for callers holding its own key.
    if (reloadKey === undefined) throw new InvalidArgumentError('--reload-key', `a key (or ${RELOAD_KEY_ENV}) when --allow-reload is set`, 'none');
    if (o.modelsRoot === undefined) throw new InvalidArgumentError('--models-root', 'the folder whose subfolders /reload may load, with --allow-reload', 'none');
    let isFolder = false;
    try {
      isFolder = statSync(o.modelsRoot).isDirectory();
    } catch {
      // reported below
    }
    if (!isFolder) throw new InvalidArgumentError('--models-root', 'an existing folder', JSON.stringify(o.modelsRoot));
    modelsRoot = o.modelsRoot;
  } else if (o.modelsRoot !== undefined) {
    throw new InvalidArgumentError('--models-root', 'no value without --allow-reload', JSON.stringify(o.modelsRoot));
  }
  if (o.host.trim() === '') throw new InvalidArgumentError('--host', 'an address to bind', 'an empty string');
  return {
    host: o.host,
    port: numberOption('--port', o.port, { min: 0, max: 65535, integer: true }),
    apiKey,
    modelsRoot,
    reloadKey,
    reward: choiceOption('--reward', o.reward, SERVE_REWARDS),
    temperature: numberOption('--temperature', o.temperature, { above: 0 }),
    maxBatchTokens: numberOption('--max-batch-tokens', o.maxBatchTokens, { min: 2, integer: true }),
    maxWaitMs: numberOption('--max-wait-ms', o.maxWaitMs, { min: 0, max: 60_000 }),
    maxQueue: positiveIntOption('--max-queue', o.maxQueue),
    bodyLimit: positiveIntOption('--body-limit', o.bodyLimit),
    weights: choiceOption('--weights', o.weights, ['as-stored', 'f32'] as const),
  };
}

/** Listens; an address in use, not on this machine, or not allowed is bad input naming its flag. */
async function listen(server: ScoringServer, host: string, port: number): Promise<string> {
  try {
    return await server.listen(host, port);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new InvalidArgumentError('--port', `a port free on ${host}`, `${port} (in use)`);
    if (code === 'EACCES') throw new InvalidArgumentError('--port', 'a port this user may bind (1024 and above without privileges)', String(port));
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') throw new InvalidArgumentError('--host', 'an address of this machine', JSON.stringify(host));
    throw err;
  }
}

export async function serveCommand(options: ServeCommandOptions): Promise<void> {
  const s = settings(options, process.env);
  if (s.apiKey === undefined && !LOOPBACK.has(s.host)) {
    process.stderr.write(`intuitor serve: warning: listening on ${s.host} without an API key: anyone who can reach it can use the GPU (set --api-key or ${API_KEY_ENV})\n`);
  }
  const ctx = await GpuContext.create();
  try {
    const scorer = await Scorer.load(ctx, options.model, { dtype: s.weights, maxTokensPerPass: s.maxBatchTokens });
    try {
      const server = new ScoringServer({ ctx, scorer, modelDir: options.model, ...s });
      const stopped = new Promise<NodeJS.Signals>((resolve) => {
        process.once('SIGTERM', () => resolve('SIGTERM'));
        process.once('SIGINT', () => resolve('SIGINT'));
      });
      const url = await listen(server, s.host, s.port);
      process.stdout.write(`intuitor serve: listening on ${url} (${scorer.config.architecture}, ${options.model}, reward ${s.reward}${s.apiKey === undefined ? '' : ', API key required'}${s.modelsRoot === undefined ? '' : `, /reload under ${s.modelsRoot} with the reload key`})\n`);
      const signal = await stopped;
      process.stderr.write(`intuitor serve: ${signal}: finishing the requests in flight\n`);
      await server.close();
    } finally {
      await scorer.destroy();
    }
  } finally {
    ctx.close();
  }
}
