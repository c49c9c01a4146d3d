/** `intuitor generate`: a continuation of a prompt with the policy (KV-cache decoding, tokens picked on WebGPU). */
import { InvalidArgumentError } from '../errors.js';
import { GpuContext } from '../gpu/context.js';
import { loadModelConfig } from '../model/config.js';
import { PolicyModel } from '../model/policy.js';
import { PolicyTokenizer } from '../model/tokenizer.js';
import { checkSamplingOptions, type SamplingOptions } from '../sampling/sample.js';
import { maxNewTokensOption, numberOption } from './inputs.js';

/** --max-new-tokens when not given: this many, or fewer where the model has fewer positions left. */
export const GENERATE_MAX_NEW_TOKENS = 32;

export interface GenerateCommandOptions {
  model: string;
  prompt: string;
  maxNewTokens?: string;
  greedy?: boolean;
  temperature?: string;
  topK?: string;
  topP?: string;
  minP?: string;
  seed: string;
  weights: string;
  json?: boolean;
}

function samplingOf(o: GenerateCommandOptions): SamplingOptions {
  if (o.greedy) {
    const extra = (['temperature', 'topK', 'topP', 'minP'] as const).filter((k) => o[k] !== undefined);
    if (extra.length > 0) throw new InvalidArgumentError('--greedy', 'no sampling flags beside it', extra.map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', '));
    return { temperature: 0 };
  }
  if (o.temperature === undefined) throw new InvalidArgumentError('--greedy or --temperature', 'one of them (how to pick tokens)', 'neither');
  return checkSamplingOptions({
    temperature: numberOption('--temperature', o.temperature, { min: 0 }),
    ...(o.topK === undefined ? {} : { topK: numberOption('--top-k', o.topK, { min: 0, integer: true }) }),
    ...(o.topP === undefined ? {} : { topP: numberOption('--top-p', o.topP, { above: 0, max: 1 }) }),
    ...(o.minP === undefined ? {} : { minP: numberOption('--min-p', o.minP, { min: 0, max: 1 }) }),
  });
}

export async function generateCommand(options: GenerateCommandOptions): Promise<void> {
  const sampling = samplingOf(options);
  const seed = numberOption('--seed', options.seed, { min: 0, integer: true });
  if (options.weights !== 'as-stored' && options.weights !== 'f32') throw new InvalidArgumentError('--weights', 'as-stored or f32', JSON.stringify(options.weights));
  const tokenizer = PolicyTokenizer.load(options.model);
  const promptIds = tokenizer.encode(options.prompt, { source: '--prompt' });
  if (promptIds.length === 0) throw new InvalidArgumentError('--prompt', 'text that encodes to at least one token', JSON.stringify(options.prompt));
  const limit = loadModelConfig(options.model).maxPositionEmbeddings;
  if (promptIds.length >= limit) {
    throw new InvalidArgumentError('--prompt', `fewer than ${limit} tokens (max_position_embeddings), room left for a new token`, `${promptIds.length} tokens`);
  }
  const maxNewTokens = maxNewTokensOption(options.maxNewTokens, promptIds.length, limit, GENERATE_MAX_NEW_TOKENS);
  const ctx = await GpuContext.create();
  try {
    const model = await PolicyModel.load(ctx, options.model, { dtype: options.weights });
    process.stderr.write(`intuitor generate: ${model.config.architecture}, ${(model.weights.bytes / 2 ** 20).toFixed(1)} MiB of ${options.weights} weights on ${ctx.adapter?.description ?? 'the GPU'}\n`);
    try {
      const { tokens: [newIds], logprobs: [logprobs], selfCertainty: [selfCertainty] } = await model.generate([promptIds], { maxNewTokens, sampling, seeds: [seed] });
      const text = tokenizer.decode(newIds!);
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      process.stdout.write(options.json
        ? `${JSON.stringify({ prompt_ids: promptIds, new_ids: newIds, text, mean_logprob: mean(logprobs!), mean_self_certainty: mean(selfCertainty!) })}\n`
        : `${text}\n`);
    } finally {
      model.destroy();
    }
  } finally {
    ctx.close();
  }
}
