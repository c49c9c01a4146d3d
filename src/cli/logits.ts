/** `intuitor logits`: the policy's logits (B, T, V) for token ids (B, T), written as float32 .npy. */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import { GpuContext } from '../gpu/context.js';
import { writeNpy } from '../io/npy.js';
import { PolicyModel } from '../model/policy.js';
import { readModelIds } from './inputs.js';

export interface LogitsOptions {
  model: string;
  ids: string;
  out: string;
  weights: string;
}

export async function logitsCommand(options: LogitsOptions): Promise<void> {
  if (options.weights !== 'as-stored' && options.weights !== 'f32') throw new InvalidArgumentError('--weights', 'as-stored or f32', JSON.stringify(options.weights));
  const { tokens, batch, seqLen } = await readModelIds(options.ids, options.model);
  const ctx = await GpuContext.create();
  try {
    const model = await PolicyModel.load(ctx, options.model, { dtype: options.weights });
    try {
      const logits = await model.logits(tokens, batch, seqLen);
      await mkdir(options.out, { recursive: true });
      await writeNpy(join(options.out, 'logits.npy'), { dtype: 'f32', shape: [batch, seqLen, model.config.vocabSize], data: logits });
      process.stderr.write(`intuitor logits: ${model.config.architecture}, ${(model.weights.bytes / 2 ** 20).toFixed(1)} MiB of weights on ${ctx.adapter?.description ?? 'the GPU'}, (${batch}, ${seqLen}, ${model.config.vocabSize}) → ${join(options.out, 'logits.npy')}\n`);
    } finally {
      model.destroy();
    }
  } finally {
    ctx.close();
  }
}
