/**
 * The policy: a Qwen2/Llama decoder on WebGPU, loaded from a Hugging Face folder (config.json,
 * safetensors, tokenizer). This file is the forward pass over a batch of right-padded sequences
 * (prefill), producing logits that stay on the GPU for the token-statistics kernels:
 *
 *   x = embed(ids)
 *   per layer:  q, k, v = linear(rmsnorm(x));  rope(q), rope(k);  a = attention(q, k, v)
 *               x += linear_o(a);  x += linear_down(silu(linear_gate(rmsnorm(x))) ⊙ linear_up(rmsnorm(x)))
 *   logits = linear_lm_head(rmsnorm(x))
 *
 * Every step is one prepared op recorded into a single compute pass; activations are allocated
 * once per (batch, length). The norms before q/k/v and before gate/up go with their projections
 * (src/ops/linear-norm.ts): decoding up to 8 sequences, the norm, q, k and v are one dispatch, and
 * the norm, gate, up and SwiGLU another; more rows run the norm and each projection on their own.
 *
 * Generation: the prefill also writes each layer's (RoPE'd) keys and values into a per-sequence
 * cache; each decode step then runs the same layers on one token per sequence, attending to the
 * cache, then picks the next tokens on the GPU (greedy, or sampled with temperature, top-k, top-p
 * and min-p) along with their log-probs and self-certainty. The picks feed the next step on the
 * GPU; the host reads them (three numbers per sequence) while later steps already run.
 */
import { InvalidArgumentError, describe, positiveInteger } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { prepareAttention } from '../ops/attention.js';
import { prepareEmbedding } from '../ops/embedding.js';
import { prepareAttentionDecode } from '../ops/kv-cache.js';
import { prepareLinear } from '../ops/linear.js';
import { linearNormScratch, prepareLinearNorm, type LinearNormShape } from '../ops/linear-norm.js';
import { prepareRmsNorm } from '../ops/rmsnorm.js';
import { prepareRopeQk } from '../ops/rope.js';
import { rowsPerWindow } from '../ops/split.js';
import { allocateOutputs, prepareForward as prepareStatsForward } from '../ops/token-stats/webgpu.js';
import { prepareSample, type SamplingOptions } from '../sampling/sample.js';
import { deriveSeed } from '../util/random.js';
import { loadModelConfig, ropeInverseFrequencies, type ModelConfig } from './config.js';
import { loadWeights, type GpuTensor, type LoadWeightsOptions, type ModelWeights } from './weights.js';

interface Step {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

/** Keys and values of every layer, (batch, maxLen, kvHeads · headDim) f32 each. */
export interface KvCache {
  batch: number;
  maxLen: number;
  k: GPUBuffer[];
  v: GPUBuffer[];
  destroy(): void;
}

/** Picks one token per row of some logits: the draw, its log-prob and the row's self-certainty. */
interface TokenPicker {
  /** (rows) u32 seeds of the draws. */
  seeds: GPUBuffer;
  /** (rows) u32 picked tokens. */
  ids: GPUBuffer;
  /** (rows) f32 log-prob of the picked token and self-certainty, both at the sampling temperature. */
  logprob: GPUBuffer;
  selfCertainty: GPUBuffer;
  steps: Step[];
  buffers: GPUBuffer[];
}

/** One decoding step for every sequence of a cache: feed `tokens` at `positions`, pick the next. */
export interface PreparedDecode {
  tokens: GPUBuffer;
  positions: GPUBuffer;
  /** positions + 1: the keys each new query sees. */
  lengths: GPUBuffer;
  picker: TokenPicker;
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

export interface GenerateOptions {
  maxNewTokens: number;
  /** Stop a sequence at any of these (default: the config's eos_token_id). */
  eosTokenIds?: number[];
  /** How tokens are picked (src/sampling/sample.ts). Default greedy: { temperature: 0 }. */
  sampling?: SamplingOptions;
  /** One seed per prompt; new token i of prompt b is drawn with deriveSeed(seeds[b], i). Default 0 for all. */
  seeds?: readonly number[];
  /** Asked after each new token of a sequence (e.g. for stop strings); true ends that sequence. */
  shouldStop?: (index: number, tokens: readonly number[]) => boolean;
}

/** Each sequence's new tokens (a stopping EOS included), and per token its log-prob and the self-certainty of the distribution it was drawn from. */
export interface Generation {
  tokens: number[][];
  logprobs: number[][];
  selfCertainty: number[][];
}

/** A forward pass prepared for one (batch, length): buffers and dispatches, reusable across inputs of that shape. */
export interface PreparedForward {
  batch: number;
  seqLen: number;
  /** (batch · seqLen) u32 token ids, written by `run`. */
  ids: GPUBuffer;
  /** (batch) u32 sequence lengths. */
  lengths: GPUBuffer;
  /** With lastTokenOnly: (batch) u32, the row of each sequence's last token, written by `run`; else null. */
  lastTokenRows: GPUBuffer | null;
  /** With logitWindow: (window) u32, the token rows (b · seqLen + t) whose logits to compute, written by the caller; else null. */
  windowRows: GPUBuffer | null;
  /**
   * (batch, seqLen, vocab) f32 logits, (batch, vocab) with lastTokenOnly, (window, vocab) with
   * logitWindow; null with lmHead: false.
   */
  logits: GPUBuffer | null;
  /** The final (normed) hidden states of the rows the lm_head takes, (rows, hidden) f32: all rows, or those gathered. */
  hidden: GPUBuffer;
  encode(pass: GPUComputePassEncoder): void;
  /** Only the lm_head (and its row gather): new logits (or gathered hidden states) from the hidden states the last run left. */
  encodeLogits(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

/**
 * Decode steps submitted ahead of the host reading their picks: with 2 the GPU runs step s + 1
 * while the host reads step s and records step s + 2.
 */
const DECODE_STEPS_IN_FLIGHT = 2;

/** `ids` as u32, each checked to be a token id in [0, vocab) (named by its index in errors). */
function tokenIds(ids: ArrayLike<number>, vocab: number): Uint32Array {
  const out = new Uint32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const id = Number(ids[i]);
    if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new InvalidArgumentError(`ids[${i}]`, `a token id in [0, ${vocab})`, String(ids[i]));
    out[i] = id;
  }
  return out;
}

function release(steps: Step[], buffers: GPUBuffer[]): void {
  for (const step of steps) step.destroy();
  for (const b of buffers) b.destroy();
}

export class PolicyModel {
  readonly config: ModelConfig;
  readonly weights: ModelWeights;
  readonly ctx: GpuContext;
  /** RoPE inverse frequencies (headDim / 2) f32, shared by every forward built on this model. */
  readonly invFreq: GPUBuffer;

  private constructor(ctx: GpuContext, config: ModelConfig, weights: ModelWeights) {
    this.ctx = ctx;
    this.config = config;
    this.weights = weights;
    this.invFreq = ctx.upload('policy:rope_inv_freq', Float32Array.from(ropeInverseFrequencies(config)));
  }

  static async load(ctx: GpuContext, dir: string, options: LoadWeightsOptions = {}): Promise<PolicyModel> {
    const config = loadModelConfig(dir);
    return new PolicyModel(ctx, config, await loadWeights(ctx, dir, config, options));
  }

  /**
   * Allocates the activations of `rows` tokens and records the decoder over them: embedding of
   * `tokens`, every layer, the final norm, the lm_head into `logits`. With `cache`, each layer's
   * RoPE dispatch also stores its keys and values there (token row r is sequence r / seqLen).
   * `attend` records the attention of layer `index`, the only part in which a prefill and a
   * decode step differ. With `logitRows` < rows, only the rows listed in the returned
   * `logitIndex` (logitRows u32) go through the lm_head, in that order. The last `headSteps` steps
   * are that gather and the lm_head. Without `lmHead` there is no lm_head (nor logits): `hidden`
   * is what it would have read.
   */
  private async buildDecoder(label: string, rows: number,
    attend: (index: number, a: { q: GPUBuffer; k: GPUBuffer; v: GPUBuffer; out: GPUBuffer }) => Promise<Step>,
    positionsOf: (row: number) => number, { cache, seqLen = 1, logitRows = rows, lmHead = true }: { cache?: KvCache; seqLen?: number; logitRows?: number; lmHead?: boolean } = {},
  ): Promise<{ tokens: GPUBuffer; positions: GPUBuffer; logitIndex: GPUBuffer | null; hidden: GPUBuffer; logits: GPUBuffer | null; steps: Step[]; headSteps: number; buffers: GPUBuffer[] }> {
    const ctx = this.ctx;
    const c = this.config;
    const qWidth = c.numHeads * c.headDim;
    const kvWidth = c.numKeyValueHeads * c.headDim;
    const steps: Step[] = [];
    const normedShape = (normWeight: GpuTensor, ws: GpuTensor[], biases: (GpuTensor | null)[], glu: boolean): LinearNormShape => ({
      m: rows, k: c.hiddenSize, eps: c.rmsNormEps, normDType: normWeight.dtype, glu,
      projections: ws.map((w, i) => ({ n: w.shape[0]!, weightDType: w.dtype, biasDType: biases[i]?.dtype })),
    });
    const first = this.weights.layers[0]!;
    // gate and up exist only where the MLP's norm and projections run unfused (more than 8 rows).
    const mlpScratch = linearNormScratch(normedShape(first.postNorm, [first.gate, first.up], [null, null], true), ctx.limits);
    // Every activation at once, so running out of memory says how much the forward needs.
    const gathered = logitRows !== rows;
    const elements = {
      tokens: rows, positions: rows, x: rows * c.hiddenSize, h: rows * c.hiddenSize, q: rows * qWidth, k: rows * kvWidth, v: rows * kvWidth,
      attn: rows * qWidth, gate: mlpScratch.gate, up: mlpScratch.up, act: rows * c.intermediateSize,
      logits: lmHead ? logitRows * c.vocabSize : 0, logit_rows: gathered ? logitRows : 0, h_logit_rows: gathered ? logitRows * c.hiddenSize : 0,
    };
    const names = (Object.keys(elements) as (keyof typeof elements)[]).filter((name) => elements[name] > 0);
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const buffers = await ctx.allocate(label, names.map((name) => ({ label: `${label}:${name}`, bytes: 4 * elements[name], usage })));
    const named = Object.fromEntries(names.map((name, i) => [name, buffers[i]!])) as Partial<Record<keyof typeof elements, GPUBuffer>>;
    const need = (name: keyof typeof elements): GPUBuffer => named[name]!;
    const [tokens, positions, x, h, q, k, v] = [need('tokens'), need('positions'), need('x'), need('h'), need('q'), need('k'), need('v')] as const;
    const [attn, act] = [need('attn'), need('act')] as const;
    const scratch = { h, gate: named.gate ?? null, up: named.up ?? null };
    const { logits = null, logit_rows: logitIndex, h_logit_rows: picked } = named;
    ctx.writeBuffer(positions, 0, Uint32Array.from({ length: rows }, (_, i) => positionsOf(i)));
    try {
      const linear = (input: GPUBuffer, kIn: number, w: GpuTensor, bias: GpuTensor | null, output: GPUBuffer, m = rows) =>
        prepareLinear(ctx, { m, k: kIn, n: w.shape[0]!, weightDType: w.dtype, biasDType: bias?.dtype }, input, w.windows, bias?.buffer ?? null, output);
      // x += linear(input) (+ bias): the residual connection in the projection's own dispatch.
      const residualLinear = (input: GPUBuffer, kIn: number, w: GpuTensor, bias: GpuTensor | null) =>
        prepareLinear(ctx, { m: rows, k: kIn, n: w.shape[0]!, weightDType: w.dtype, biasDType: bias?.dtype }, input, w.windows, bias?.buffer ?? null, x, { accumulate: true });
      const norm = (w: GpuTensor, output: GPUBuffer) =>
        prepareRmsNorm(ctx, { rows, hidden: c.hiddenSize, eps: c.rmsNormEps, weightDType: w.dtype }, x, w.buffer, output);
      // outputs = the projections of rmsnorm(x) (with glu: silu(gate) ⊙ up), the norm inside.
      const normedLinear = (normWeight: GpuTensor, ws: GpuTensor[], biases: (GpuTensor | null)[], outputs: GPUBuffer[], glu = false) =>
        prepareLinearNorm(ctx, normedShape(normWeight, ws, biases, glu),
          { x, norm: normWeight.buffer, weights: ws.map((w) => w.windows), biases: biases.map((b) => b?.buffer ?? null), outputs, scratch });

      steps.push(await prepareEmbedding(ctx, { tokens: rows, vocab: c.vocabSize, hidden: c.hiddenSize, dtype: this.weights.embed.dtype }, tokens, this.weights.embed.windows, x));
      for (const [index, layer] of this.weights.layers.entries()) {
        steps.push(await normedLinear(layer.inputNorm, [layer.q, layer.k, layer.v], [layer.qBias, layer.kBias, layer.vBias], [q, k, v]));
        steps.push(await prepareRopeQk(ctx, { tokens: rows, heads: c.numHeads, kvHeads: c.numKeyValueHeads, headDim: c.headDim, cache: cache && { seqLen, maxLen: cache.maxLen } },
          { q, k, positions, invFreq: this.invFreq, ...(cache && { v, kCache: cache.k[index]!, vCache: cache.v[index]! }) }));
        steps.push(await attend(index, { q, k, v, out: attn }));
        steps.push(await residualLinear(attn, qWidth, layer.o, layer.oBias));
        steps.push(await normedLinear(layer.postNorm, [layer.gate, layer.up], [null, null], [act], true));
        steps.push(await residualLinear(act, c.intermediateSize, layer.down, null));
      }
      steps.push(await norm(this.weights.finalNorm, h));
      if (logitRows === rows) {
        if (logits) steps.push(await linear(h, c.hiddenSize, this.weights.lmHead, null, logits));
        return { tokens, positions, logitIndex: null, hidden: h, logits, steps, headSteps: logits ? 1 : 0, buffers };
      }
      // The lm_head's rows are gathered first (a lookup in h as the table), so it costs logitRows, not rows.
      steps.push(await prepareEmbedding(ctx, { tokens: logitRows, vocab: rows, hidden: c.hiddenSize, dtype: 'f32' }, logitIndex!, h, picked!));
      if (logits) steps.push(await linear(picked!, c.hiddenSize, this.weights.lmHead, null, logits, logitRows));
      return { tokens, positions, logitIndex: logitIndex!, hidden: picked!, logits, steps, headSteps: logits ? 2 : 1, buffers };
    } catch (err) {
      release(steps, buffers);
      throw err;
    }
  }

  /**
   * Allocates activations and records every dispatch of a forward over (batch, seqLen); with a
   * cache, also fills it. With `lastTokenOnly`, logits are (batch, vocab): each sequence's last
   * token only (what a prefill before decoding needs), so the lm_head costs batch rows, not
   * batch · seqLen. With `logitWindow` = W, logits are (W, vocab) for the token rows the caller
   * writes into `windowRows`, and `encodeLogits` recomputes them for other rows after a run
   * (logits larger than one binding, in windows). With `lmHead: false` the lm_head is left out:
   * `logits` is null and `hidden` holds the final hidden states of those rows, for a head fused
   * with what reads the logits (src/ops/lm-head-stats.ts: no (rows, vocab) buffer at all).
   */
  async prepareForward(batch: number, seqLen: number, { cache, lastTokenOnly = false, logitWindow, lmHead = true }: { cache?: KvCache; lastTokenOnly?: boolean; logitWindow?: number; lmHead?: boolean } = {}): Promise<PreparedForward> {
    positiveInteger('batch', batch);
    positiveInteger('seqLen', seqLen);
    if (logitWindow !== undefined && (lastTokenOnly || !Number.isSafeInteger(logitWindow) || logitWindow < 1 || logitWindow >= batch * seqLen)) {
      throw new InvalidArgumentError('logitWindow', `an integer in [1, ${batch * seqLen}) rows, without lastTokenOnly`, describe(logitWindow));
    }
    if (seqLen > this.config.maxPositionEmbeddings) {
      throw new InvalidArgumentError('seqLen', `at most max_position_embeddings (${this.config.maxPositionEmbeddings})`, String(seqLen));
    }
    const ctx = this.ctx;
    const c = this.config;
    const lengths = ctx.upload('policy:lengths', new Uint32Array(batch).fill(seqLen), GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
    const lse = ctx.createBuffer('policy:attn_lse', batch * c.numHeads * seqLen * 4, GPUBufferUsage.STORAGE);
    let built: Awaited<ReturnType<PolicyModel['buildDecoder']>>;
    try {
      built = await this.buildDecoder('policy', batch * seqLen,
        (_, { q, k, v, out }) => prepareAttention(ctx, { batch, seqLen, heads: c.numHeads, kvHeads: c.numKeyValueHeads, headDim: c.headDim }, { q, k, v, lengths, out, lse }),
        (row) => row % seqLen, { cache, seqLen, logitRows: lastTokenOnly ? batch : logitWindow ?? batch * seqLen, lmHead });
    } catch (err) {
      lengths.destroy();
      lse.destroy();
      throw err;
    }
    const { tokens, logitIndex, hidden, logits, steps, headSteps, buffers } = built;
    buffers.push(lengths, lse);
    return {
      batch, seqLen, ids: tokens, lengths, logits, hidden,
      lastTokenRows: lastTokenOnly ? logitIndex : null,
      windowRows: logitWindow === undefined ? null : logitIndex,
      encode(pass) {
        for (const step of steps) step.encode(pass);
      },
      encodeLogits(pass) {
        for (const step of steps.slice(steps.length - headSteps)) step.encode(pass);
      },
      destroy() {
        release(steps, buffers);
      },
    };
  }

  async createCache(batch: number, maxLen: number): Promise<KvCache> {
    const c = this.config;
    positiveInteger('batch', batch);
    if (!Number.isSafeInteger(maxLen) || maxLen < 1 || maxLen > c.maxPositionEmbeddings) {
      throw new InvalidArgumentError('maxLen', `an integer in [1, ${c.maxPositionEmbeddings}] (max_position_embeddings)`, describe(maxLen));
    }
    const bytes = batch * maxLen * c.numKeyValueHeads * c.headDim * 4;
    const specs = ['k', 'v'].flatMap((kind) => Array.from({ length: c.numLayers }, (_, l) => ({ label: `policy:${kind}_cache.${l}`, bytes, usage: GPUBufferUsage.STORAGE })));
    const buffers = await this.ctx.allocate('policy:kv_cache', specs);
    const [k, v] = [buffers.slice(0, c.numLayers), buffers.slice(c.numLayers)];
    return { batch, maxLen, k, v, destroy: () => buffers.forEach((b) => b.destroy()) };
  }

  /**
   * Records the pick of one token per row of `logits` (rows, vocab). Sampling reads the logits, so
   * generation keeps the unfused lm_head (a few rows a step) and its statistics read those logits.
   */
  private async prepareTokenPicker(label: string, rows: number, logits: GPUBuffer, sampling: SamplingOptions): Promise<TokenPicker> {
    const ctx = this.ctx;
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const seeds = ctx.createBuffer(`${label}:seeds`, rows * 4, usage);
    const ids = ctx.createBuffer(`${label}:picked`, rows * 4, usage);
    const stats = allocateOutputs(ctx, rows, true);
    const buffers = [seeds, ids, stats.logsumexp, stats.selfCertainty, stats.entropy, stats.logprob!, stats.validCount];
    const steps: Step[] = [];
    try {
      steps.push(await prepareSample(ctx, { rows, vocab: this.config.vocabSize }, sampling, { logits, seeds, ids }));
      const invTemperature = sampling.temperature > 0 ? 1 / sampling.temperature : 1;
      steps.push(await prepareStatsForward(ctx, { dtype: 'f32', rows, vocab: this.config.vocabSize, logits, ids, invTemperature }, stats));
    } catch (err) {
      release(steps, buffers);
      throw err;
    }
    return { seeds, ids, logprob: stats.logprob!, selfCertainty: stats.selfCertainty, steps, buffers };
  }

  /** One decode step over every sequence of `cache` (see PreparedDecode). */
  async prepareDecode(cache: KvCache, sampling: SamplingOptions = { temperature: 0 }): Promise<PreparedDecode> {
    const ctx = this.ctx;
    const c = this.config;
    const rows = cache.batch;
    const lengths = ctx.createBuffer('policy_decode:lengths', rows * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST);
    let built: Awaited<ReturnType<PolicyModel['buildDecoder']>> | undefined;
    let picker: TokenPicker;
    try {
      built = await this.buildDecoder('policy_decode', rows,
        (index, { q, out }) => prepareAttentionDecode(ctx, { batch: rows, heads: c.numHeads, kvHeads: c.numKeyValueHeads, headDim: c.headDim, maxLen: cache.maxLen },
          { q, kCache: cache.k[index]!, vCache: cache.v[index]!, lengths, out }),
        () => 0, { cache });
      picker = await this.prepareTokenPicker('policy_decode', rows, built.logits!, sampling);
    } catch (err) {
      if (built) release(built.steps, built.buffers);
      lengths.destroy();
      throw err;
    }
    const { tokens, positions, steps, buffers } = built;
    buffers.push(lengths);
    return {
      tokens, positions, lengths, picker,
      encode(pass) {
        for (const step of [...steps, ...picker.steps]) step.encode(pass);
      },
      destroy() {
        release([...steps, ...picker.steps], [...buffers, ...picker.buffers]);
      },
    };
  }

  /**
   * Generation for a batch of prompts of any lengths: batched prefill, then one decode step per
   * token with the KV cache, each picking tokens on the GPU. A sequence stops at EOS (included),
   * when shouldStop says so, or at maxNewTokens.
   */
  async generate(prompts: readonly (readonly number[])[], options: GenerateOptions): Promise<Generation> {
    const c = this.config;
    if (!Array.isArray(prompts) || prompts.length === 0 || prompts.some((p) => !Array.isArray(p) || p.length === 0)) {
      throw new InvalidArgumentError('prompts', 'a non-empty array of non-empty token-id arrays', describe(prompts));
    }
    const maxNew = options.maxNewTokens;
    if (!Number.isSafeInteger(maxNew) || maxNew < 1) throw new InvalidArgumentError('maxNewTokens', 'a positive integer', describe(maxNew));
    const batch = prompts.length;
    const seeds = options.seeds ?? new Array<number>(batch).fill(0);
    if (seeds.length !== batch) throw new InvalidArgumentError('seeds', `one seed per prompt (${batch})`, `${seeds.length}`);
    const sampling = options.sampling ?? { temperature: 0 };
    const eos = new Set(options.eosTokenIds ?? c.eosTokenIds);
    const promptLen = Math.max(...prompts.map((p) => p.length));
    const maxLen = promptLen + maxNew;
    if (promptLen >= c.maxPositionEmbeddings) {
      throw new InvalidArgumentError('prompts', `prompts of fewer than ${c.maxPositionEmbeddings} tokens (max_position_embeddings), room left for a new token`, `a ${promptLen}-token prompt`);
    }
    if (maxLen > c.maxPositionEmbeddings) {
      throw new InvalidArgumentError('maxNewTokens', `at most ${c.maxPositionEmbeddings - promptLen} for a ${promptLen}-token prompt (max_position_embeddings ${c.maxPositionEmbeddings})`, String(maxNew));
    }
    // Each buffer of a batch must fit one storage binding: per sequence, the prefill's widest
    // activations, a layer's cache and a row of logits. A large batch of rollouts is generated
    // in chunks of sequences.
    const widest = Math.max(c.hiddenSize, c.numHeads * c.headDim, c.intermediateSize);
    const kvWidth = c.numKeyValueHeads * c.headDim;
    const perSequence = 4 * Math.max(promptLen * widest, maxLen * kvWidth, c.vocabSize);
    const fit = Math.floor(this.ctx.maxBindingBytes / perSequence);
    if (fit < 1) {
      const tokensFit = (width: number) => Math.floor(this.ctx.maxBindingBytes / (4 * width));
      throw new InvalidArgumentError('prompts', `prompts whose prefill activations (${promptLen} × ${widest} float32), cache (${maxLen} × ${kvWidth}) and logits (${c.vocabSize}) each fit one storage binding (${this.ctx.maxBindingBytes} bytes)`,
        `a ${promptLen}-token prompt (${maxNew} new tokens); at most ${tokensFit(widest)} prompt tokens and ${tokensFit(kvWidth)} prompt + new tokens fit`);
    }
    if (fit < batch) {
      const out: Generation = { tokens: [], logprobs: [], selfCertainty: [] };
      for (let start = 0; start < batch; start += fit) {
        const { shouldStop } = options;
        const part = await this.generate(prompts.slice(start, start + fit), {
          ...options, seeds: seeds.slice(start, start + fit), shouldStop: shouldStop && ((index, tokens) => shouldStop(start + index, tokens)),
        });
        out.tokens.push(...part.tokens);
        out.logprobs.push(...part.logprobs);
        out.selfCertainty.push(...part.selfCertainty);
      }
      return out;
    }
    const padded = new Array<number>(batch * promptLen).fill(0);
    prompts.forEach((p, b) => p.forEach((id: number, t: number) => (padded[b * promptLen + t] = id)));
    const cache = await this.createCache(batch, maxLen);
    const readbacks: GPUBuffer[] = [];
    const inFlight: Promise<ArrayBuffer>[] = [];
    let prefill: PreparedForward | undefined;
    let prefillPicker: TokenPicker | undefined;
    let decode: PreparedDecode | undefined;
    try {
      prefill = await this.prepareForward(batch, promptLen, { cache, lastTokenOnly: true });
      prefillPicker = await this.prepareTokenPicker('policy_prefill', batch, prefill.logits!, sampling);
      decode = await this.prepareDecode(cache, sampling);
      const out: Generation = { tokens: prompts.map(() => []), logprobs: prompts.map(() => []), selfCertainty: prompts.map(() => []) };
      const done = new Array<boolean>(batch).fill(false);
      /** Appends each running sequence's pick; true when every sequence has ended. */
      const accept = (picks: ArrayBuffer): boolean => {
        const ids = new Uint32Array(picks, 0, batch);
        const logprob = new Float32Array(picks, 4 * batch, batch);
        const selfCertainty = new Float32Array(picks, 8 * batch, batch);
        for (let b = 0; b < batch; b++) {
          if (done[b]) continue;
          out.tokens[b]!.push(ids[b]!);
          out.logprobs[b]!.push(logprob[b]!);
          out.selfCertainty[b]!.push(selfCertainty[b]!);
          if (eos.has(ids[b]!) || out.tokens[b]!.length >= maxNew || options.shouldStop?.(b, out.tokens[b]!)) done[b] = true;
        }
        return done.every(Boolean);
      };
      // Submission −1 is the prefill, which picks new token 0; decode step s ≥ 0 feeds token s and
      // picks token s + 1. Each submission's picks go on the GPU to the next step's input and to
      // a readback buffer, so submissions run DECODE_STEPS_IN_FLIGHT ahead of the host reading
      // them: the GPU has a step queued while the host reads one. Positions and seeds do not
      // depend on the picks and are written ahead (queue writes land in submission order). A
      // sequence that has ended keeps being computed until every one has (its extra tokens are
      // dropped, and rows never mix), so the result is the same as one step at a time.
      const lastStep = maxNew - 2;
      const pickBytes = batch * 4;
      for (let i = 0; i < Math.min(DECODE_STEPS_IN_FLIGHT, lastStep + 2); i++) {
        readbacks.push(this.ctx.createBuffer(`policy_generate:picks.${i}`, 3 * pickBytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST));
      }
      const [first, firstPicker, step] = [prefill, prefillPicker, decode];
      const submit = async (s: number): Promise<void> => {
        const picker = s < 0 ? firstPicker : step.picker;
        const readback = readbacks[(s + 1) % readbacks.length]!;
        const after = (encoder: GPUCommandEncoder) => {
          if (s < lastStep) encoder.copyBufferToBuffer(picker.ids, 0, step.tokens, 0, pickBytes);
          [picker.ids, picker.logprob, picker.selfCertainty].forEach((b, i) => encoder.copyBufferToBuffer(b, 0, readback, i * pickBytes, pickBytes));
        };
        this.ctx.writeBuffer(picker.seeds, 0, Uint32Array.from(seeds, (seed) => deriveSeed(seed, s + 1)));
        if (s < 0) {
          await this.run(first, padded, prompts.map((p) => p.length), { pass: (pass) => picker.steps.forEach((pick) => pick.encode(pass)), after });
        } else {
          const positions = Uint32Array.from(prompts, (p) => p.length + s);
          this.ctx.writeBuffer(step.positions, 0, positions);
          this.ctx.writeBuffer(step.lengths, 0, positions.map((pos) => pos + 1));
          await this.ctx.runPass('policy_decode', (pass) => step.encode(pass), { after });
        }
        inFlight.push(this.ctx.readMapped('policy_generate', readback, 3 * pickBytes));
      };
      let finished = false;
      for (let s = -1; !finished && s <= lastStep; s++) {
        while (inFlight.length < readbacks.length && s + inFlight.length <= lastStep) await submit(s + inFlight.length);
        finished = accept(await inFlight.shift()!);
      }
      return out;
    } finally {
      // Steps still in flight after every sequence ended are dropped: destroying their readback
      // buffers rejects the pending maps.
      for (const pending of inFlight) pending.catch(() => undefined);
      readbacks.forEach((b) => b.destroy());
      decode?.destroy();
      if (prefillPicker) release(prefillPicker.steps, prefillPicker.buffers);
      prefill?.destroy();
      cache.destroy();
    }
  }

  /**
   * Runs a prepared forward on `ids` (batch · seqLen, right-padded) with per-sequence `lengths`;
   * `pass` records more steps into the same pass (on the logits), `after` commands that follow it.
   */
  async run(prepared: PreparedForward, ids: ArrayLike<number>, lengths?: ArrayLike<number>,
    { pass: more, after }: { pass?: (pass: GPUComputePassEncoder) => void; after?: (encoder: GPUCommandEncoder) => void } = {}): Promise<void> {
    const { batch, seqLen } = prepared;
    if (ids.length !== batch * seqLen) throw new InvalidArgumentError('ids', `${batch * seqLen} token ids (batch · seqLen)`, `${ids.length}`);
    const idArray = tokenIds(ids, this.config.vocabSize);
    const lens = Uint32Array.from(lengths ?? new Array<number>(batch).fill(seqLen));
    const least = prepared.lastTokenRows ? 1 : 0;
    if (lens.length !== batch || lens.some((n) => n < least || n > seqLen)) throw new InvalidArgumentError('lengths', `${batch} lengths in [${least}, ${seqLen}]`, `[${Array.from(lens).join(', ')}]`);
    this.ctx.writeBuffer(prepared.ids, 0, idArray);
    this.ctx.writeBuffer(prepared.lengths, 0, lens);
    if (prepared.lastTokenRows) this.ctx.writeBuffer(prepared.lastTokenRows, 0, lens.map((n, b) => b * seqLen + n - 1));
    await this.ctx.runPass('policy_forward', (pass) => {
      prepared.encode(pass);
      more?.(pass);
    }, { after });
  }

  /**
   * Logits (batch, seqLen, vocab) as float32 on the host, of any size: sequences go through the
   * decoder in chunks whose activations fit one storage binding, and logits larger than one
   * binding are computed in windows of rows from the chunk's final hidden states.
   */
  async logits(ids: ArrayLike<number>, batch: number, seqLen: number, lengths?: ArrayLike<number>): Promise<Float32Array> {
    positiveInteger('batch', batch);
    positiveInteger('seqLen', seqLen);
    if (ids === null || typeof ids !== 'object' || ids.length !== batch * seqLen) {
      throw new InvalidArgumentError('ids', `${batch * seqLen} token ids (batch · seqLen)`, describe(ids));
    }
    if (lengths !== undefined && (lengths === null || typeof lengths !== 'object' || lengths.length !== batch)) {
      throw new InvalidArgumentError('lengths', `${batch} lengths (one per sequence)`, describe(lengths));
    }
    const c = this.config;
    const allIds = tokenIds(ids, c.vocabSize);
    const binding = this.ctx.maxBindingBytes;
    const rowBytes = 4 * c.vocabSize;
    const widest = 4 * Math.max(c.hiddenSize, c.numHeads * c.headDim, c.intermediateSize);
    if (seqLen * widest > binding) {
      throw new InvalidArgumentError('seqLen', `at most ${Math.floor(binding / widest)} tokens per sequence (its widest activation, ${widest / 4} float32 per token, must fit one ${binding}-byte storage binding)`, String(seqLen));
    }
    const windowRows = rowsPerWindow(rowBytes, binding);
    const chunk = Math.min(batch, Math.floor(binding / (seqLen * widest)), Math.max(1, Math.floor(windowRows / seqLen)));
    const out = new Float32Array(batch * seqLen * c.vocabSize);
    const prepared = new Map<number, PreparedForward>();
    try {
      for (let first = 0; first < batch; first += chunk) {
        const n = Math.min(chunk, batch - first);
        const rows = n * seqLen;
        const window = rows > windowRows ? windowRows : undefined;
        if (!prepared.has(n)) prepared.set(n, await this.prepareForward(n, seqLen, { logitWindow: window }));
        const forward = prepared.get(n)!;
        const chunkIds = allIds.subarray(first * seqLen, first * seqLen + rows);
        const chunkLengths = lengths && Array.from({ length: n }, (_, b) => lengths[first + b]!);
        const at = first * seqLen * c.vocabSize;
        if (window === undefined) {
          await this.run(forward, chunkIds, chunkLengths);
          out.set(new Float32Array(await this.ctx.read('policy_forward', forward.logits!, rows * rowBytes)), at);
          continue;
        }
        for (let start = 0; start < rows; start += window) {
          const count = Math.min(window, rows - start);
          // The last window repeats its last row past `count` (those logits are not read).
          this.ctx.writeBuffer(forward.windowRows!, 0, Uint32Array.from({ length: window }, (_, i) => start + Math.min(i, count - 1)));
          if (start === 0) await this.run(forward, chunkIds, chunkLengths);
          else await this.ctx.runPass('policy_logits', (pass) => forward.encodeLogits(pass));
          out.set(new Float32Array(await this.ctx.read('policy_forward', forward.logits!, count * rowBytes)), at + start * c.vocabSize);
        }
      }
      return out;
    } finally {
      for (const forward of prepared.values()) forward.destroy();
    }
  }

  destroy(): void {
    this.invFreq.destroy();
    this.weights.destroy();
  }
}
