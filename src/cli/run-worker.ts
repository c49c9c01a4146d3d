/**
 * A worker process of the run pool (./run-pool.ts): it holds one GPU device and trains the GRPO runs
 * it is given, one at a time. workerpool (process workers) delivers each call and its result.
 */
import workerpool from 'workerpool';
import { GpuContext } from '../gpu/context.js';
import type { GrpoConfigInput } from '../rl/config.js';
import type { GrpoResult } from '../rl/trainer.js';
import { trainWithProgress } from './train.js';

let ctx: GpuContext | null = null;

async function train(input: GrpoConfigInput, label: string): Promise<GrpoResult> {
  ctx ??= await GpuContext.create();
  return trainWithProgress(ctx, input, label);
}

export type RunWorkerMethods = { train: typeof train };

workerpool.worker({ train } satisfies RunWorkerMethods, { onTerminate: () => ctx?.close() });
