/**
 * GRPO runs side by side. `intuitor run` and `intuitor experiment rewards` train independent runs
 * (one per reward, base and seed), each deterministic per seed, so they can train at once in
 * separate processes, each with its own GPU device: workerpool's process workers
 * (./run-worker.ts). A run's result does not depend on the process it ran in or on --jobs.
 *
 * Why processes help on a CPU adapter: one run keeps about 1.6 of the 2-core VM's cores busy
 * (lavapipe's threads run the dispatches; the host's sampling loop, rewards and monitors run
 * between them), and a second run fills those gaps: the reward experiment's 45 runs took 37.0
 * minutes two at a time against 43.9 one after the other (README, "The seeds' claims, in miniature").
 *
 * A worker's output (progress lines, logs) is passed on whole lines at a time, so lines of runs
 * training at once never interleave mid-line, and no worker draws a progress bar over another's.
 */
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import workerpool from 'workerpool';
import * as errors from '../errors.js';
import type { GrpoConfigInput } from '../rl/config.js';
import type { GrpoResult } from '../rl/trainer.js';
import type { RunWorkerMethods } from './run-worker.js';

/** Runs training at once by default: 2 where there are 2 cores or more (more processes than cores only contend). */
export const DEFAULT_JOBS = Math.min(2, availableParallelism());

export interface PoolRun {
  input: GrpoConfigInput;
  /** Names the run in its progress lines and logs. */
  label: string;
}

/**
 * Trains every run, at most `jobs` at once, in run order; calls `onResult` as each one finishes
 * (in the order they finish) and returns the results in run order. A failed run stops the others
 * and its error is thrown, of its own class (an InvalidArgumentError still names its argument).
 */
export async function trainInPool(runs: readonly PoolRun[], jobs: number, onResult?: (index: number, result: GrpoResult) => void): Promise<GrpoResult[]> {
  if (runs.length === 0) return [];
  const pool = workerpool.pool(fileURLToPath(new URL('./run-worker.js', import.meta.url)), {
    workerType: 'process', maxWorkers: Math.min(jobs, runs.length), emitStdStreams: true,
    // Structured clone, not JSON: a metric that is NaN stays NaN.
    forkOpts: { serialization: 'advanced' },
  });
  let failed = false;
  try {
    return await Promise.all(runs.map(async ({ input, label }, index) => {
      const out = new LineForwarder(process.stdout);
      const err = new LineForwarder(process.stderr);
      try {
        const result = await pool.exec<RunWorkerMethods['train']>('train', [input, label], {
          on: (payload: { stdout?: string; stderr?: string }) => {
            if (payload.stdout !== undefined) out.write(payload.stdout);
            if (payload.stderr !== undefined) err.write(payload.stderr);
          },
        });
        onResult?.(index, result);
        return result;
      } finally {
        out.flush();
        err.flush();
      }
    }));
  } catch (caught) {
    failed = true;
    throw errorFromWorker(caught);
  } finally {
    // After a failure, the runs still training are stopped at once.
    await pool.terminate(failed);
  }
}

/** Passes a stream's text on whole lines at a time. */
class LineForwarder {
  private pending = '';
  constructor(private readonly to: NodeJS.WritableStream) {}
  write(text: string): void {
    const end = text.lastIndexOf('\n');
    if (end < 0) {
      this.pending += text;
      return;
    }
    this.to.write(this.pending + text.slice(0, end + 1));
    this.pending = text.slice(end + 1);
  }
  flush(): void {
    if (this.pending !== '') this.to.write(`${this.pending}\n`);
    this.pending = '';
  }
}

/**
 * workerpool rebuilds a worker's error as a plain Error carrying its properties; this gives an
 * intuitor error its class back (the CLI's exit status and flag names depend on it).
 */
function errorFromWorker(caught: unknown): unknown {
  const e = caught as Record<string, unknown> | null;
  if (typeof e !== 'object' || e === null || typeof e.name !== 'string' || typeof e.code !== 'string' || 'errno' in e) return caught;
  const known = (errors as Record<string, unknown>)[e.name];
  const errorClass = typeof known === 'function' && (known === errors.IntuitorError || known.prototype instanceof errors.IntuitorError) ? known : errors.IntuitorError;
  const rebuilt = Object.create((errorClass as typeof errors.IntuitorError).prototype) as Record<string, unknown>;
  // Own names, not Object.assign: an Error's message and stack are not enumerable.
  for (const name of Object.getOwnPropertyNames(e)) rebuilt[name] = e[name];
  return rebuilt;
}
