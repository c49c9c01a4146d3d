/** `intuitor generate`: a greedy continuation of a prompt with the policy (KV-cache decoding on WebGPU). */
import { InvalidArgumentError } from '../errors.js';
import { GpuContext } from '../gpu/context.js';
import { PolicyModel } from '../model/policy.js';
import { PolicyTokenizer } from '../model/tokenizer.js';

export interface GenerateCommandOptions {
  model: string;
  prompt: string;
  maxNewTokens: string;
  greedy?: boolean;
  json?: boolean;
}

export async function generateCommand(options: GenerateCommandOptions): Promise<void> {
  if (!options.greedy) throw new InvalidArgumentError('--greedy', 'the flag (greedy decoding is the strategy available so far)', 'absent');
  const maxNewTokens = Number(options.maxNewTokens);
  if (!/^\d+$/.test(options.maxNewTokens) || maxNewTokens < 1) throw new InvalidArgumentError('--max-new-tokens', 'a positive integer', JSON.stringify(options.maxNewTokens));
  const tokenizer = PolicyTokenizer.load(options.model);
  const promptIds = tokenizer.encode(options.prompt);
  if (promptIds.length === 0) throw new InvalidArgumentError('--prompt', 'text that encodes to at least one token', JSON.stringify(options.prompt));
  const ctx = await GpuContext.create();
  try {
    const model = await PolicyModel.load(ctx, options.model);
    try {
      const [newIds] = await model.generateGreedy([promptIds], { maxNewTokens });
      const text = tokenizer.decode(newIds!);
      process.stdout.write(options.json ? `${JSON.stringify({ prompt_ids: promptIds, new_ids: newIds, text })}\n` : `${text}\n`);
    } finally {
      model.destroy();
    }
  } finally {
    ctx.close();
  }
}
