/**
 * `intuitor grad`: d(mean next-token cross-entropy over the batch)/d(parameter) for every
 * parameter, float32, under Hugging Face names, written as safetensors. The mean runs over all
 * (B, T − 1) next-token predictions, as transformers' causal-LM loss does without padding.
 */
import { existsSync, statSync } from 'node:fs';
import { InvalidArgumentError } from '../errors.js';
import { GpuContext } from '../gpu/context.js';
import { writeSafetensors } from '../io/safetensors.js';
import type { HostTensor } from '../io/tensor.js';
import { PolicyModel } from '../model/policy.js';
import { TrainingGraph } from '../model/training.js';
import { nextTokenBatch } from '../train/batch.js';
import { readModelIds } from './inputs.js';

export interface GradOptions {
  model: string;
  ids: string;
  out: string;
}

export async function gradCommand(options: GradOptions): Promise<void> {
  // The file is written through a temporary beside it: a folder in the way would fail at the end, naming that.
  if (existsSync(options.out) && statSync(options.out).isDirectory()) {
    throw new InvalidArgumentError('--out', 'a path for the .safetensors file of gradients', `${options.out}, an existing folder`);
  }
  const { tokens, batch, seqLen } = await readModelIds(options.ids, options.model, { minLength: 2 });
  const sequences = Array.from({ length: batch }, (_, b) => tokens.slice(b * seqLen, (b + 1) * seqLen));
  const ctx = await GpuContext.create();
  try {
    const model = await PolicyModel.load(ctx, options.model, { dtype: 'f32' });
    const graph = TrainingGraph.create(model);
    try {
      const step = await graph.prepareStep(batch, seqLen);
      try {
        const input = nextTokenBatch(sequences, sequences.map(() => 1), seqLen);
        graph.writeBatch(step, input);
        await graph.zeroGrads();
        await graph.forwardBackward(step);
        const logprob = new Float32Array(await ctx.read('grad', step.stats.logprob, batch * seqLen * 4));
        // The loss is linear in the log-probs: −mean(logprob) = Σ gLogprob · logprob.
        const loss = logprob.reduce((sum, lp, i) => sum + input.gLogprob[i]! * lp, 0);
        const tensors: Record<string, HostTensor> = {};
        for (const [name, data] of await graph.readGrads()) tensors[name] = { dtype: 'f32', shape: graph.parameters.find((p) => p.name === name)!.shape, data };
        await writeSafetensors(options.out, tensors, { loss: String(loss), predictions: String(input.predictions) });
        process.stderr.write(`intuitor grad: mean next-token cross-entropy ${loss.toFixed(6)} over ${input.predictions} predictions; ${graph.parameters.length} gradients → ${options.out}\n`);
      } finally {
        step.destroy();
      }
    } finally {
      graph.destroy();
      model.destroy();
    }
  } finally {
    ctx.close();
  }
}
