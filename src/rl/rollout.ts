/**
 * GRPO rollouts: G sampled completions per prompt from the current policy, and the layout that
 * scores them. Token alignment, stated once: completion token j of a sequence whose prompt has P
 * tokens is predicted by row P − 1 + j (the distribution it was drawn from), so per-token
 * log-probs, self-certainty and entropy all live on rows P − 1 … P + L − 2. The row after the
 * last token predicts nothing and is never scored.
 */
import { InvalidArgumentError } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import type { PolicyModel } from '../model/policy.js';
import type { PolicyTokenizer } from '../model/tokenizer.js';
import { prepareLmHeadStats } from '../ops/lm-head-stats.js';
import { allocateOutputs } from '../ops/token-stats/webgpu.js';
import type { SamplingOptions } from '../sampling/sample.js';
import { deriveSeed } from '../util/random.js';

export interface Completion {
  /** Index of its prompt in the step's batch, and of the sample within the group. */
  prompt: number;
  sample: number;
  /** New tokens, a stopping EOS included. */
  tokens: number[];
  /** Decoded text without the EOS token. */
  text: string;
  /** Ended by the token limit, not by EOS or the stop string. */
  truncated: boolean;
}

/** Per-token statistics of completions under some policy: rows × maxLength, zero past each completion. */
export interface CompletionStats {
  logprob: Float32Array;
  selfCertainty: Float32Array;
  entropy: Float32Array;
  /** Per completion: the mean over its tokens. */
  meanLogprob: Float64Array;
  meanSelfCertainty: Float64Array;
  meanEntropy: Float64Array;
}

export interface RolloutOptions {
  groupSize: number;
  maxNewTokens: number;
  sampling: SamplingOptions;
  /** Run seed and step: sample s of prompt p is drawn with deriveSeed(seed, step, p, s). */
  seed: number;
  step: number;
  /** Text that ends a completion (the task's answer terminator), beside EOS. */
  stop?: string;
}

/** Samples G completions for every prompt (ids), as one batch of prompts × G sequences. */
export async function rollout(model: PolicyModel, tokenizer: PolicyTokenizer, prompts: readonly number[][], options: RolloutOptions): Promise<Completion[]> {
  const G = options.groupSize;
  const expanded = prompts.flatMap((p) => Array.from({ length: G }, () => p));
  const seeds = prompts.flatMap((_, p) => Array.from({ length: G }, (__, s) => deriveSeed(options.seed, options.step, p, s)));
  const eos = new Set(model.config.eosTokenIds);
  const stop = options.stop;
  const { tokens } = await model.generate(expanded, {
    maxNewTokens: options.maxNewTokens, sampling: options.sampling, seeds,
    shouldStop: tokenizer.stopWhenTextContains(stop ?? ''),
  });
  return tokens.map((ids, i) => {
    const ended = eos.has(ids.at(-1)!) || (stop !== undefined && stop !== '' && tokenizer.decode(ids).includes(stop));
    return {
      prompt: Math.floor(i / G), sample: i % G, tokens: ids,
      text: tokenizer.decode(ids.filter((id) => !eos.has(id))),
      truncated: !ended,
    };
  });
}

/** Sequences (prompt ++ completion) right-padded to one length, with the rows that predict each completion token. */
export interface ScoringLayout {
  batch: number;
  seqLen: number;
  ids: Uint32Array;
  lengths: Uint32Array;
  /** Row r's target: the completion token it predicts, else 0. */
  targets: Uint32Array;
  /** Completion token j of sequence i is predicted by row rowOf[i][j]. */
  rowOf: number[][];
}

export function scoringLayout(prompts: readonly (readonly number[])[], completions: readonly (readonly number[])[], seqLen: number): ScoringLayout {
  const batch = prompts.length;
  const ids = new Uint32Array(batch * seqLen);
  const lengths = new Uint32Array(batch);
  const targets = new Uint32Array(batch * seqLen);
  const rowOf = prompts.map((prompt, i) => {
    const completion = completions[i]!;
    const length = prompt.length + completion.length;
    if (length > seqLen) throw new InvalidArgumentError(`sequences[${i}]`, `at most ${seqLen} tokens (prompt + completion)`, `${length}`);
    lengths[i] = length;
    ids.set(prompt, i * seqLen);
    ids.set(completion, i * seqLen + prompt.length);
    return completion.map((token, j) => {
      const row = i * seqLen + prompt.length - 1 + j;
      targets[row] = token;
      return row;
    });
  });
  return { batch, seqLen, ids, lengths, targets, rowOf };
}

/** Gathers per-row values into the (completions × maxLength) layout and per-completion means. */
export function gatherCompletionStats(layout: ScoringLayout, maxLength: number, rows: { logprob: Float32Array; selfCertainty: Float32Array; entropy: Float32Array }): CompletionStats {
  const n = layout.rowOf.length;
  const out: CompletionStats = {
    logprob: new Float32Array(n * maxLength), selfCertainty: new Float32Array(n * maxLength), entropy: new Float32Array(n * maxLength),
    meanLogprob: new Float64Array(n), meanSelfCertainty: new Float64Array(n), meanEntropy: new Float64Array(n),
  };
  layout.rowOf.forEach((rowsOfSeq, i) => {
    rowsOfSeq.forEach((row, j) => {
      out.logprob[i * maxLength + j] = rows.logprob[row]!;
      out.selfCertainty[i * maxLength + j] = rows.selfCertainty[row]!;
      out.entropy[i * maxLength + j] = rows.entropy[row]!;
      out.meanLogprob[i] = out.meanLogprob[i]! + rows.logprob[row]! / rowsOfSeq.length;
      out.meanSelfCertainty[i] = out.meanSelfCertainty[i]! + rows.selfCertainty[row]! / rowsOfSeq.length;
      out.meanEntropy[i] = out.meanEntropy[i]! + rows.entropy[row]! / rowsOfSeq.length;
    });
  });
  return out;
}

/** Reads a forward's per-row statistics back (the layout's rows only) and gathers them per completion. */
export async function readCompletionStats(ctx: GpuContext, op: string, buffers: { logprob: GPUBuffer; selfCertainty: GPUBuffer; entropy: GPUBuffer }, layout: ScoringLayout, maxLength: number): Promise<CompletionStats> {
  const bytes = layout.batch * layout.seqLen * 4;
  const read = async (b: GPUBuffer) => new Float32Array(await ctx.read(op, b, bytes));
  return gatherCompletionStats(layout, maxLength, { logprob: await read(buffers.logprob), selfCertainty: await read(buffers.selfCertainty), entropy: await read(buffers.entropy) });
}

/** 1 on each completion token (completions × maxLength), 0 past its end and, with dropTruncated, on truncated completions. */
export function completionMask(completions: readonly Completion[], maxLength: number, dropTruncated = false): Float32Array {
  const mask = new Float32Array(completions.length * maxLength);
  completions.forEach((c, i) => {
    if (!(dropTruncated && c.truncated)) mask.fill(1, i * maxLength, i * maxLength + c.tokens.length);
  });
  return mask;
}

/**
 * The per-row log-prob gradient (rows long, zero elsewhere) of a layout whose completion i is
 * completion `first + i` of `gradLogprobs` (completions × maxLength, as grpoLoss returns it).
 */
export function rowGradients(layout: ScoringLayout, gradLogprobs: Float32Array, maxLength: number, rows: number, first = 0): Float32Array {
  const out = new Float32Array(rows);
  layout.rowOf.forEach((rowsOfSeq, i) => rowsOfSeq.forEach((row, j) => (out[row] = gradLogprobs[(first + i) * maxLength + j]!)));
  return out;
}

/** Sequences [start, start + count) of a layout, as a layout of their own (rows re-based). */
export function sliceLayout(layout: ScoringLayout, start: number, count: number): ScoringLayout {
  const { seqLen } = layout;
  const range = (a: Uint32Array) => a.slice(start * seqLen, (start + count) * seqLen);
  return {
    batch: count, seqLen, ids: range(layout.ids), lengths: layout.lengths.slice(start, start + count), targets: range(layout.targets),
    rowOf: layout.rowOf.slice(start, start + count).map((rows) => rows.map((row) => row - start * seqLen)),
  };
}

/**
 * Sequences per micro-batch of a forward over `seqLen`-token sequences: as many as keep its widest
 * per-token buffer (sequences × seqLen × `rowFloats` float32, named `what` in errors) within one
 * storage binding, at most `total`.
 */
export function sequencesPerPass(maxBindingBytes: number, seqLen: number, rowFloats: number, total: number, what = 'widest activation'): number {
  const fit = Math.floor(maxBindingBytes / (seqLen * rowFloats * 4));
  if (fit < 1) {
    throw new InvalidArgumentError('maxPromptLength + maxCompletionLength', `a sequence length whose ${what} (length × ${rowFloats} float32) fits one storage binding (${maxBindingBytes} bytes)`, `${seqLen} tokens`);
  }
  return Math.min(fit, total);
}

/** Floats per token of a forward's widest activation (the buffer that bounds its rows per binding). */
export function widestActivation(config: PolicyModel['config']): number {
  return Math.max(config.hiddenSize, config.numHeads * config.headDim, config.intermediateSize);
}

/** Concatenates per-completion statistics of consecutive micro-batches. */
export function concatStats(parts: readonly CompletionStats[]): CompletionStats {
  if (parts.length === 1) return parts[0]!;
  const join = <A extends Float32Array | Float64Array>(key: keyof CompletionStats, make: (n: number) => A): A => {
    const out = make(parts.reduce((n, p) => n + p[key].length, 0));
    let offset = 0;
    for (const p of parts) {
      out.set(p[key], offset);
      offset += p[key].length;
    }
    return out;
  };
  const f32 = (n: number) => new Float32Array(n);
  const f64 = (n: number) => new Float64Array(n);
  return {
    logprob: join('logprob', f32), selfCertainty: join('selfCertainty', f32), entropy: join('entropy', f32),
    meanLogprob: join('meanLogprob', f64), meanSelfCertainty: join('meanSelfCertainty', f64), meanEntropy: join('meanEntropy', f64),
  };
}

/**
 * Scores completions under `model` without training state (a frozen reference, or the policy under
 * other prompts): forwards over the layout, in as many micro-batches as its activations need (see
 * sequencesPerPass), each ending in the lm_head fused with the token statistics at `temperature`
 * (src/ops/lm-head-stats.ts: no logits stored).
 */
export async function scoreCompletions(model: PolicyModel, layout: ScoringLayout, maxLength: number, temperature: number): Promise<CompletionStats> {
  const per = sequencesPerPass(model.ctx.maxBindingBytes, layout.seqLen, widestActivation(model.config), layout.batch);
  const parts: CompletionStats[] = [];
  for (let start = 0; start < layout.batch; start += per) parts.push(await scoreOnce(model, sliceLayout(layout, start, Math.min(per, layout.batch - start)), maxLength, temperature));
  return concatStats(parts);
}

async function scoreOnce(model: PolicyModel, layout: ScoringLayout, maxLength: number, temperature: number): Promise<CompletionStats> {
  const ctx = model.ctx;
  const c = model.config;
  const rows = layout.batch * layout.seqLen;
  const forward = await model.prepareForward(layout.batch, layout.seqLen, { lmHead: false });
  const targets = ctx.upload('score:targets', layout.targets);
  const stats = allocateOutputs(ctx, rows, true);
  try {
    const lmHead = model.weights.lmHead;
    const statsStep = await prepareLmHeadStats(ctx, { rows, hidden: c.hiddenSize, vocab: c.vocabSize, weightDType: lmHead.dtype },
      { hidden: forward.hidden, weight: lmHead.windows, ids: targets }, stats, { invTemperature: 1 / temperature });
    try {
      await model.run(forward, layout.ids, layout.lengths, { pass: (pass) => statsStep.encode(pass) });
    } finally {
      statsStep.destroy();
    }
    return await readCompletionStats(ctx, 'score', { logprob: stats.logprob!, selfCertainty: stats.selfCertainty, entropy: stats.entropy }, layout, maxLength);
  } finally {
    for (const b of [targets, stats.logsumexp, stats.selfCertainty, stats.entropy, stats.logprob!, stats.validCount]) b.destroy();
    forward.destroy();
  }
}
