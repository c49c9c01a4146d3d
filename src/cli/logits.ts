/** `intuitor logits`: the policy's logits (B, T, V) for token ids (B, T), written as float32 .npy. */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { FileFormatError, InvalidArgumentError } from '../errors.js';
import { GpuContext } from '../gpu/context.js';
import { readNpy, writeNpy } from '../io/npy.js';
import { loadModelConfig } from '../model/config.js';
import { PolicyModel } from '../model/policy.js';

export interface LogitsOptions {
  model: string;
  ids: string;
  out: string;
  weights: string;
}

export async function logitsCommand(options: LogitsOptions): Promise<void> {
  if (options.weights !== 'as-stored' && options.weights !== 'f32') throw new InvalidArgumentError('--weights', 'as-stored or f32', JSON.stringify(options.weights));
  const ids = await readNpy(options.ids);
  if (ids.dtype !== 'i32' && ids.dtype !== 'i64') throw new FileFormatError(options.ids, 'token ids of dtype int32 or int64', ids.dtype);
  if (ids.shape.length !== 2) throw new FileFormatError(options.ids, 'ids of shape (B, T)', `shape [${ids.shape.join(', ')}]`);
  const [batch, seqLen] = ids.shape as [number, number];
  const config = loadModelConfig(options.model);
  const tokens = Array.from(ids.data as ArrayLike<number | bigint>, Number);
  const bad = tokens.findIndex((id) => id < 0 || id >= config.vocabSize);
  if (bad >= 0) {
    throw new FileFormatError(options.ids, `token ids in [0, ${config.vocabSize}) (the model's vocab_size)`, `${tokens[bad]} at (b, t) = (${Math.floor(bad / seqLen)}, ${bad % seqLen})`);
  }
  if (seqLen > config.maxPositionEmbeddings) {
    throw new FileFormatError(options.ids, `sequences of at most ${config.maxPositionEmbeddings} tokens (the model's max_position_embeddings)`, `T = ${seqLen}`);
  }
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
