/**
 * Supervised fine-tuning on `{"prompt": ..., "completion": ...}` JSON lines: the mean next-token
 * cross-entropy over completion tokens only (the prompt conditions, the completion is learned, and
 * the end-of-sequence token closes every completion so the model learns to stop).
 *
 * Each optimiser update averages `gradAccum` micro-batches of `batchSize` examples, drawn in a
 * seeded shuffled order that restarts each epoch. Checkpoints hold the order and the position in
 * it, so `resume` continues bit-identically: same batches, same metrics.
 */
import { FileFormatError, InvalidArgumentError, describe, positiveInteger } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { readJsonlLines, stringField } from '../io/jsonl.js';
import { NonFiniteError } from '../model/training.js';
import { loadModelConfig } from '../model/config.js';
import { PolicyTokenizer } from '../model/tokenizer.js';
import { nextTokenBatch } from './batch.js';
import { DataOrder, type DataOrderState } from './data-order.js';
import { MetricsLog, type MetricValue } from './metrics-log.js';
import { DEFAULT_OPTIMIZER, type OptimizerConfig } from './optimizer.js';
import { TrainingSession } from './session.js';

export interface SftOptions {
  /** Hugging Face model folder to start from. */
  model: string;
  /** JSON lines of {"prompt", "completion"}. */
  data: string;
  /** Output folder: checkpoint-<step>/, latest.json, metrics.jsonl, metrics.csv. */
  out: string;
  /** Optimiser updates. */
  steps: number;
  /** Examples per micro-batch. Default 8. */
  batchSize?: number;
  /** Micro-batches per update. Default 1. */
  gradAccum?: number;
  /** Optimiser settings (lr required; the rest default as DEFAULT_OPTIMIZER). */
  optimizer: Partial<OptimizerConfig> & { lr: number };
  /** Shuffling seed. Default 0. */
  seed?: number;
  /** Save every this many updates (and after the last). Default 0: only at the end. */
  saveEvery?: number;
  /** Checkpoints kept. Default 2. */
  keep?: number;
  /** Longest prompt + completion + EOS in tokens. Default: max_position_embeddings. */
  maxLength?: number;
  resume?: boolean;
  /** Remove a non-empty `out` first (see TrainingSession.open). */
  overwrite?: boolean;
  /** Weights larger than this many bytes train in row windows (default and most: one storage binding; tests force small ones). */
  maxWindowBytes?: number;
  /** Called after every update, e.g. for a progress bar; may throw to stop the run. */
  onStep?: (record: SftRecord) => void;
}

export interface SftRecord extends Record<string, MetricValue> {
  step: number;
  loss: number;
  lr: number;
  grad_norm: number;
  clip_scale: number;
  tokens: number;
  tokens_per_s: number;
  step_ms: number;
  gpu_mib: number;
}

export const SFT_COLUMNS = ['step', 'loss', 'lr', 'grad_norm', 'clip_scale', 'tokens', 'tokens_per_s', 'step_ms', 'gpu_mib'] as const;

interface Example {
  ids: number[];
  /** Index of the first completion token: predictions of tokens from here on are in the loss. */
  completionStart: number;
}

/**
 * Tokenizes the dataset; every problem names the line. An example longer than `maxLength` is the
 * data's fault when the limit is the model's, the limit's when the caller chose it (`limitChosen`).
 */
export async function loadSftExamples(path: string, tokenizer: PolicyTokenizer, eos: number | null, maxLength: number, { limitChosen = false } = {}): Promise<Example[]> {
  return (await readJsonlLines(path)).map((record) => {
    const line = record.line;
    const prompt = tokenizer.encode(stringField(path, record, 'prompt')!, { source: `${path}: line ${line}: "prompt"` });
    const completion = tokenizer.encode(stringField(path, record, 'completion', { nonEmpty: true })!, { source: `${path}: line ${line}: "completion"` });
    if (completion.length === 0) throw new FileFormatError(path, `line ${line}: a completion of at least one token`, 'none');
    const ids = [...prompt, ...completion, ...(eos === null ? [] : [eos])];
    if (ids.length > maxLength && limitChosen) {
      throw new InvalidArgumentError('maxLength', `at least the ${ids.length} tokens of line ${line} of ${path} (prompt + completion + EOS)`, String(maxLength));
    }
    if (ids.length > maxLength) throw new FileFormatError(path, `line ${line}: at most ${maxLength} tokens (prompt + completion + EOS; the model's max_position_embeddings)`, `${ids.length} tokens`);
    if (prompt.length === 0) throw new FileFormatError(path, `line ${line}: a prompt of at least one token (the first token is never predicted)`, 'an empty prompt');
    return { ids, completionStart: prompt.length };
  });
}

/** Runs SFT; returns the folder of the last checkpoint and the last record. */
export async function runSft(ctx: GpuContext, options: SftOptions): Promise<{ checkpoint: string; last: SftRecord | null }> {
  const steps = positiveInteger('steps', options.steps);
  const batchSize = positiveInteger('batchSize', options.batchSize ?? 8);
  const gradAccum = positiveInteger('gradAccum', options.gradAccum ?? 1);
  const saveEvery = options.saveEvery ?? 0;
  if (!Number.isSafeInteger(saveEvery) || saveEvery < 0) throw new InvalidArgumentError('saveEvery', 'an integer ≥ 0 (0: only at the end)', describe(saveEvery));
  const config = loadModelConfig(options.model);
  const maxLength = options.maxLength ?? config.maxPositionEmbeddings;
  if (!Number.isSafeInteger(maxLength) || maxLength < 2 || maxLength > config.maxPositionEmbeddings) {
    throw new InvalidArgumentError('maxLength', `an integer in [2, ${config.maxPositionEmbeddings}] (max_position_embeddings)`, describe(maxLength));
  }
  const tokenizer = PolicyTokenizer.load(options.model);
  const examples = await loadSftExamples(options.data, tokenizer, config.eosTokenIds[0] ?? null, maxLength, { limitChosen: options.maxLength !== undefined });
  const seqLen = Math.max(...examples.map((e) => e.ids.length));

  const session = await TrainingSession.open(ctx, {
    model: options.model, out: options.out, resume: options.resume ?? false, overwrite: options.overwrite ?? false, keep: options.keep ?? 2, maxWindowBytes: options.maxWindowBytes,
    optimizer: { ...DEFAULT_OPTIMIZER, ...options.optimizer, totalSteps: steps },
  });
  try {
    const order = new DataOrder(examples.length, options.seed ?? 0, session.resumedState?.data as DataOrderState | undefined);
    const log = new MetricsLog(options.out, SFT_COLUMNS, session.startStep);
    const prepared = await session.graph.prepareStep(batchSize, seqLen);
    let checkpoint = '';
    let last: SftRecord | null = null;
    try {
      for (let step = session.startStep + 1; step <= steps; step++) {
        const started = performance.now();
        ctx.resetPeak();
        await session.graph.zeroGrads();
        let loss = 0;
        let tokens = 0;
        for (let micro = 0; micro < gradAccum; micro++) {
          const batch = Array.from({ length: batchSize }, () => examples[order.next()]!);
          const input = nextTokenBatch(batch.map((e) => e.ids), batch.map((e) => e.completionStart), seqLen);
          const gLogprob = input.gLogprob.map((g) => g / gradAccum);
          session.graph.writeBatch(prepared, { ...input, gLogprob });
          await session.graph.forwardBackward(prepared);
          const logprob = new Float32Array(await ctx.read('sft', prepared.stats.logprob, batchSize * seqLen * 4));
          // Rows outside the loss (weight 0) are skipped, so that a −inf log-prob there cannot make 0 · −inf.
          loss += logprob.reduce((sum, lp, i) => sum + (gLogprob[i] !== 0 ? gLogprob[i]! * lp : 0), 0);
          tokens += input.lengths.reduce((a, b) => a + b, 0);
        }
        if (!Number.isFinite(loss)) throw new NonFiniteError(step, 'the loss', String(loss));
        const update = await session.optimizer.update(step);
        const ms = performance.now() - started;
        last = {
          step, loss, lr: update.lr, grad_norm: update.gradNorm, clip_scale: update.clipScale, tokens,
          tokens_per_s: tokens / (ms / 1000), step_ms: ms, gpu_mib: ctx.memory.peakBytes / 2 ** 20,
        };
        log.append(last);
        if (step === steps || (saveEvery > 0 && step % saveEvery === 0)) {
          checkpoint = await session.save(step, { kind: 'sft', data: order.state(), seed: options.seed ?? 0 });
        }
        options.onStep?.(last);
      }
      return { checkpoint, last };
    } finally {
      prepared.destroy();
    }
  } finally {
    session.destroy();
  }
}
