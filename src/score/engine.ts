/**
 * The one scoring path: per completion, its tokens' log-probs, self-certainty and entropy under a
 * model, from one forward over prompt ++ completion. `score-completions`, `serve` and the fleet's
 * workers all call `Scorer.score`.
 *
 * Token alignment (as in src/rl/rollout.ts): completion token j of a sequence whose prompt has P
 * tokens is predicted by row P − 1 + j. Only those rows go through the lm_head (the forward
 * gathers their final hidden states), so a pass costs the lm_head of its completion tokens, not
 * of its prompts. The lm_head is fused with the statistics (src/ops/lm-head-stats.ts): no logits
 * are ever stored, so a pass is sized by its activations alone, in one lm_head dispatch.
 *
 * Packing: items are sorted by length and cut into passes of similar lengths, each (batch, seqLen)
 * within the token budget and the storage binding of the widest activation. Sequence lengths are
 * rounded up to buckets and batches to powers of two, so a stream of passes reuses a few prepared
 * forwards (kept in a small cache) instead of building one per pass.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import type { LoadWeightsOptions } from '../model/weights.js';
import { PolicyModel, type PreparedForward } from '../model/policy.js';
import { PolicyTokenizer } from '../model/tokenizer.js';
import { prepareLmHeadStats } from '../ops/lm-head-stats.js';
import { rowsPerWindow } from '../ops/split.js';
import { allocateOutputs } from '../ops/token-stats/webgpu.js';
import { parseScoreItem, type ItemLimits, type ScoreItem } from './items.js';

export interface ScoreOptions {
  /** The statistics of z / T (default 1). */
  temperature?: number;
  /** Also return every token's log-prob, self-certainty and entropy. */
  perToken?: boolean;
}

/** One completion's statistics: sums and means over its tokens. */
export interface ScoreResult {
  id: string | number;
  tokens: number;
  /** Mean over the completion's tokens of KL(U ‖ p). */
  selfCertainty: number;
  logprobSum: number;
  logprobMean: number;
  /** Mean over the completion's tokens. */
  entropy: number;
  perToken?: { logprob: number[]; selfCertainty: number[]; entropy: number[] };
}

/** A result as the JSON lines and the HTTP API write it (snake_case, the arrays with per-token). */
export function resultJson(r: ScoreResult): Record<string, unknown> {
  return {
    id: r.id, tokens: r.tokens, self_certainty: r.selfCertainty, logprob_sum: r.logprobSum, logprob_mean: r.logprobMean, entropy: r.entropy,
    ...(r.perToken && { token_logprobs: r.perToken.logprob, token_self_certainty: r.perToken.selfCertainty, token_entropy: r.perToken.entropy }),
  };
}

/** One forward of the packing plan: items (indices into the request) padded to (batch, seqLen). */
export interface ScoringPass {
  items: number[];
  batch: number;
  seqLen: number;
}

export interface PackingLimits {
  /** Token rows (batch · seqLen) per pass. */
  maxRows: number;
  /** Longest sequence the model takes. */
  maxSeqLen: number;
}

/** Sequence lengths are rounded up to 16, 24, 32, 48, 64, 96, ...: at most 1.5× padding, few shapes. */
export function seqLenBucket(length: number, maxSeqLen: number): number {
  let bucket = 16;
  while (bucket < length) bucket = bucket % 3 === 0 ? (bucket / 3) * 4 : (bucket / 2) * 3;
  return Math.min(bucket, maxSeqLen);
}

/**
 * Packs sequences of the given lengths into passes: longest first, each pass as many sequences as
 * its bucketed length allows within maxRows, the batch of a partial pass rounded up to a power of
 * two (padding sequences are empty). A sequence longer than maxRows is refused by the caller.
 */
export function planPasses(lengths: readonly number[], limits: PackingLimits): ScoringPass[] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b]! - lengths[a]! || a - b);
  const passes: ScoringPass[] = [];
  for (let at = 0; at < order.length;) {
    const seqLen = Math.max(seqLenBucket(lengths[order[at]!]!, limits.maxSeqLen), lengths[order[at]!]!);
    const fit = Math.max(1, Math.floor(limits.maxRows / seqLen));
    const items = order.slice(at, at + fit);
    at += items.length;
    const batch = Math.min(fit, 2 ** Math.ceil(Math.log2(items.length)));
    passes.push({ items, batch, seqLen });
  }
  return passes;
}

/** Default token rows per pass: activations of a 0.5B model at this size take about 0.6 GB. */
export const DEFAULT_MAX_TOKENS_PER_PASS = 8192;
/** Prepared forwards kept for reuse (each holds one pass's activations). */
const FORWARD_CACHE_SIZE = 3;

export interface ScorerOptions {
  /** Token rows per forward (default DEFAULT_MAX_TOKENS_PER_PASS), lowered to what the adapter's binding allows. */
  maxTokensPerPass?: number;
}

/** A model and its tokenizer, scoring one batch at a time (calls queue up, so passes never interleave). */
export class Scorer {
  private model: PolicyModel;
  private tokenizer: PolicyTokenizer;
  private readonly requestedRows: number;
  private readonly forwards = new Map<string, PreparedForward>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(model: PolicyModel, tokenizer: PolicyTokenizer, options: ScorerOptions = {}) {
    this.model = model;
    this.tokenizer = tokenizer;
    const rows = options.maxTokensPerPass ?? DEFAULT_MAX_TOKENS_PER_PASS;
    if (!Number.isSafeInteger(rows) || rows < 2) throw new InvalidArgumentError('maxTokensPerPass', 'an integer ≥ 2', describe(rows));
    this.requestedRows = rows;
  }

  /** Loads a model folder (config, weights, tokenizer) onto `ctx`. */
  static async load(ctx: GpuContext, dir: string, options: ScorerOptions & LoadWeightsOptions = {}): Promise<Scorer> {
    const tokenizer = PolicyTokenizer.load(dir);
    const model = await PolicyModel.load(ctx, dir, options);
    try {
      return new Scorer(model, tokenizer, options);
    } catch (err) {
      model.destroy();
      throw err;
    }
  }

  get config(): PolicyModel['config'] {
    return this.model.config;
  }

  /** What an item must satisfy (for parseScoreItem). */
  get limits(): ItemLimits {
    return { tokenizer: this.tokenizer, vocabSize: this.model.config.vocabSize, maxTokens: Math.min(this.model.config.maxPositionEmbeddings, this.packing.maxRows) };
  }

  /** A request item as token ids, checked against this model (see parseScoreItem). */
  parse(value: unknown, where: string, fallbackId: string | number): ScoreItem {
    return parseScoreItem(value, where, fallbackId, this.limits);
  }

  /** Rows per pass: the requested budget, within one binding for the widest activation. */
  get packing(): PackingLimits {
    const c = this.model.config;
    const widest = 4 * Math.max(c.hiddenSize, c.numHeads * c.headDim, c.intermediateSize);
    return { maxRows: Math.min(this.requestedRows, rowsPerWindow(widest, this.model.ctx.maxBindingBytes)), maxSeqLen: c.maxPositionEmbeddings };
  }

  /** Runs `work` after every earlier call has finished: one pass on the GPU at a time. */
  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Swaps in another model (same architecture, e.g. newer weights) once the calls already queued
   * have finished on the old one, which is then destroyed. Calls made after this one use the new.
   */
  replaceModel(model: PolicyModel, tokenizer: PolicyTokenizer): Promise<void> {
    const old = this.model.config;
    const c = model.config;
    const same = (['architecture', 'vocabSize', 'hiddenSize', 'numLayers', 'numHeads', 'numKeyValueHeads', 'headDim', 'intermediateSize'] as const).every((k) => old[k] === c[k]);
    if (!same) throw new InvalidArgumentError('model', `a model of the same architecture as the one served (${old.architecture}, ${old.numLayers} layers, hidden ${old.hiddenSize}, vocab ${old.vocabSize})`, `${c.architecture}, ${c.numLayers} layers, hidden ${c.hiddenSize}, vocab ${c.vocabSize}`);
    return this.exclusive(async () => {
      this.dropForwards();
      this.model.destroy();
      this.model = model;
      this.tokenizer = tokenizer;
    });
  }

  /** Scores items in order; each result is independent of the others in the call. */
  score(items: readonly ScoreItem[], options: ScoreOptions = {}): Promise<ScoreResult[]> {
    const temperature = options.temperature ?? 1;
    if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature <= 0) throw new InvalidArgumentError('temperature', 'a finite number > 0', describe(temperature));
    if (!Array.isArray(items)) throw new InvalidArgumentError('items', 'an array of parsed items', describe(items));
    return this.exclusive(async () => {
      const { maxRows } = this.packing;
      items.forEach((item, i) => {
        const length = item.promptIds.length + item.completionIds.length;
        if (length > maxRows) throw new InvalidArgumentError(`items[${i}]`, `at most ${maxRows} tokens (the rows of one pass on this adapter)`, `${length}`);
      });
      const results = new Array<ScoreResult>(items.length);
      const passes = planPasses(items.map((it) => it.promptIds.length + it.completionIds.length), this.packing);
      for (const pass of passes) await this.runPass(items, pass, 1 / temperature, options.perToken ?? false, results);
      return results;
    });
  }

  /** The prepared forward of (batch, seqLen), without lm_head, gathering up to batch · seqLen − 1 rows' hidden states. */
  private async forwardFor(batch: number, seqLen: number): Promise<PreparedForward> {
    const key = `${batch}x${seqLen}`;
    const cached = this.forwards.get(key);
    if (cached) {
      this.forwards.delete(key);
      this.forwards.set(key, cached);
      return cached;
    }
    while (this.forwards.size >= FORWARD_CACHE_SIZE) {
      const [oldest, forward] = this.forwards.entries().next().value!;
      forward.destroy();
      this.forwards.delete(oldest);
    }
    // Every item has a prompt token, so at most batch · seqLen − 1 rows are scored.
    const forward = await this.model.prepareForward(batch, seqLen, { logitWindow: batch * seqLen - 1, lmHead: false });
    this.forwards.set(key, forward);
    return forward;
  }

  private async runPass(items: readonly ScoreItem[], pass: ScoringPass, invTemperature: number, perToken: boolean, results: ScoreResult[]): Promise<void> {
    const { batch, seqLen } = pass;
    const ctx = this.model.ctx;
    const c = this.model.config;
    const ids = new Uint32Array(batch * seqLen);
    const lengths = new Uint32Array(batch);
    // The rows to score, in item order, and each row's target (the completion token it predicts).
    const rows: number[] = [];
    const targets: number[] = [];
    pass.items.forEach((index, b) => {
      const { promptIds, completionIds } = items[index]!;
      ids.set(promptIds, b * seqLen);
      ids.set(completionIds, b * seqLen + promptIds.length);
      lengths[b] = promptIds.length + completionIds.length;
      completionIds.forEach((token, j) => {
        rows.push(b * seqLen + promptIds.length - 1 + j);
        targets.push(token);
      });
    });
    const forward = await this.forwardFor(batch, seqLen);
    const count = rows.length;
    const window = batch * seqLen - 1;
    // The gathered rows past `count` repeat the last one (they are not scored).
    ctx.writeBuffer(forward.windowRows!, 0, Uint32Array.from({ length: window }, (_, i) => rows[Math.min(i, count - 1)]!));
    const targetBuffer = ctx.upload('score:targets', Uint32Array.from(targets));
    const stats = allocateOutputs(ctx, count, true);
    let logprob: Float32Array;
    let selfCertainty: Float32Array;
    let entropy: Float32Array;
    try {
      const lmHead = this.model.weights.lmHead;
      const statsStep = await prepareLmHeadStats(ctx, { rows: count, hidden: c.hiddenSize, vocab: c.vocabSize, weightDType: lmHead.dtype },
        { hidden: forward.hidden, weight: lmHead.windows, ids: targetBuffer }, stats, { invTemperature });
      try {
        await this.model.run(forward, ids, lengths, { pass: (p) => statsStep.encode(p) });
      } finally {
        statsStep.destroy();
      }
      const read = async (b: GPUBuffer) => new Float32Array(await ctx.read('score', b, count * 4));
      [logprob, selfCertainty, entropy] = await Promise.all([read(stats.logprob!), read(stats.selfCertainty), read(stats.entropy)]);
    } finally {
      for (const b of [targetBuffer, stats.logsumexp, stats.selfCertainty, stats.entropy, stats.logprob!, stats.validCount]) b.destroy();
    }
    let row = 0;
    for (const index of pass.items) {
      const n = items[index]!.completionIds.length;
      const lp = logprob.subarray(row, row + n);
      const sc = selfCertainty.subarray(row, row + n);
      const en = entropy.subarray(row, row + n);
      row += n;
      // Sums in float64, as the reference does.
      const sum = (a: Float32Array) => a.reduce((s, v) => s + v, 0);
      const logprobSum = sum(lp);
      results[index] = {
        id: items[index]!.id, tokens: n, selfCertainty: sum(sc) / n, logprobSum, logprobMean: logprobSum / n, entropy: sum(en) / n,
        ...(perToken && { perToken: { logprob: Array.from(lp), selfCertainty: Array.from(sc), entropy: Array.from(en) } }),
      };
    }
  }

  private dropForwards(): void {
    for (const forward of this.forwards.values()) forward.destroy();
    this.forwards.clear();
  }

  /** Frees the model and the cached forwards (after the calls already queued). */
  destroy(): Promise<void> {
    return this.exclusive(async () => {
      this.dropForwards();
      this.model.destroy();
    });
  }
}
