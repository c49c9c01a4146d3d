/**
 * The policy's training graph: a forward pass that keeps what the backward needs, the token
 * statistics of the logits (log-prob of each target, self-certainty, entropy), and the backward
 * of all of it into float32 parameter gradients, on the GPU.
 *
 * A loss is any function of the per-row log-probs and self-certainties: the caller writes its
 * gradient with respect to them (`gLogprob`, `gSelfCertainty`, one value per token row) and the
 * backward starts from the statistics' backward. The lm_head and the statistics are one fused op
 * (src/ops/lm-head-stats.ts), forward and backward: the (rows, vocab) logits and their gradient
 * never exist, only a slab of dL/dz at a time, so a micro-batch is bounded by its activations.
 *
 * What is stored (per layer, f32, rows = batch · seqLen): the layer input x, both RMSNorm outputs,
 * q and k after RoPE, v, the attention output and its logsumexp (B, H, T), the residual after
 * attention, gate, up and silu(gate)·up. That is rows · (5·hidden + 2·(q + kv width) + 3·inter) + B·H·T
 * floats per layer. Nothing is recomputed except the attention probabilities, which the
 * flash-style backward rebuilds from the saved logsumexp. Activation gradients use one set of
 * buffers shared by all layers; parameter gradients are one f32 buffer per parameter (tied
 * embeddings: one buffer receives both the embedding's and the lm_head's contributions).
 *
 * A parameter larger than one storage binding lives in row windows (src/ops/split.ts; the loader
 * cuts it) and so does its gradient, window for window: the embedding gather, the linear forward,
 * the projections' backward and the embedding's scatter-add run per window, each summing in the
 * one-buffer order, and the fused lm_head reduces over the vocabulary in ranges and slabs that
 * windows do not move, so the gradients are bit for bit those of an unsplit model.
 */
import { InvalidArgumentError, IntuitorError, describe } from '../errors.js';
import { prepareAdd } from '../ops/add.js';
import { prepareAttention } from '../ops/attention.js';
import { prepareAttentionBackward } from '../ops/attention-backward.js';
import { prepareEmbedding } from '../ops/embedding.js';
import { prepareEmbeddingBackward } from '../ops/embedding-backward.js';
import { prepareLinear } from '../ops/linear.js';
import { prepareLinearBackward } from '../ops/linear-backward.js';
import { prepareLmHeadStats, prepareLmHeadStatsBackward } from '../ops/lm-head-stats.js';
import { prepareRmsNorm } from '../ops/rmsnorm.js';
import { prepareRmsNormBackward } from '../ops/rmsnorm-backward.js';
import { prepareRopeQk } from '../ops/rope.js';
import { prepareSwiglu } from '../ops/swiglu.js';
import { prepareSwigluBackward } from '../ops/swiglu-backward.js';
import { allocateOutputs, type GpuStatsOutputs } from '../ops/token-stats/webgpu.js';
import type { PolicyModel } from './policy.js';
import type { RowWindow } from '../ops/split.js';
import type { GpuTensor } from './weights.js';

interface Step {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

/** One trainable tensor: its f32 value (the model's own buffers) and its f32 gradient. */
export interface TrainableParameter {
  /** Hugging Face name. */
  name: string;
  shape: number[];
  numel: number;
  /** Elements per row of the windows: shape[1] · shape[2] · …, numel for a vector (one row). */
  rowElements: number;
  /** The value's row windows (one, the whole tensor, when it fits one storage binding). */
  values: readonly RowWindow[];
  /** The gradient's, of the same rows: a buffer `grad:<name>` (`grad:<name>[first:end]`) each. */
  grads: readonly RowWindow[];
  /** Whether weight decay applies: matrices yes; norms and biases no (the Hugging Face Trainer's rule). */
  decay: boolean;
}

/** A forward + backward prepared for one (batch, seqLen); reusable across batches of that shape. */
export interface PreparedTrainStep {
  batch: number;
  seqLen: number;
  /** (batch · seqLen) u32 token ids. */
  ids: GPUBuffer;
  /** (batch) u32 sequence lengths. */
  lengths: GPUBuffer;
  /** (batch · seqLen) u32: the token whose log-prob row r reports (usually ids[r + 1]). */
  targets: GPUBuffer;
  /** (batch · seqLen) f32 upstream gradients of logprob and selfCertainty, written by the caller. */
  gLogprob: GPUBuffer;
  gSelfCertainty: GPUBuffer;
  /** Per-row statistics of the logits at the step's temperature (logprob of `targets`). */
  stats: GpuStatsOutputs & { logprob: GPUBuffer };
  encodeForward(pass: GPUComputePassEncoder): void;
  encodeBackward(pass: GPUComputePassEncoder): void;
  /** Buffers to zero before encodeBackward runs (gradients the kernels add into). */
  clearBeforeBackward: GPUBuffer[];
  destroy(): void;
}

export interface TrainStepOptions {
  /** Softmax temperature of the statistics and their gradients (GRPO scores samples at the sampling temperature). Default 1. */
  temperature?: number;
  /** Bytes of the lm_head backward's scratch: dL/dz of one vocabulary slab (default min(64 MiB, maxBindingBytes); see lmHeadStatsSlabCols). */
  lmHeadSlabBytes?: number;
}

/** Gradients and the training graph over a PolicyModel loaded with f32 weights. */
export class TrainingGraph {
  readonly model: PolicyModel;
  readonly parameters: TrainableParameter[];
  private readonly grads = new Map<GpuTensor, readonly RowWindow[]>();

  private constructor(model: PolicyModel) {
    this.model = model;
    const ctx = model.ctx;
    const seen = new Set<GpuTensor>();
    const tensors: GpuTensor[] = [];
    const w = model.weights;
    const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const add = (t: GpuTensor | null) => {
      if (t && !seen.has(t)) {
        seen.add(t);
        tensors.push(t);
      }
    };
    add(w.embed);
    for (const l of w.layers) for (const t of [l.inputNorm, l.q, l.qBias, l.k, l.kBias, l.v, l.vBias, l.o, l.oBias, l.postNorm, l.gate, l.up, l.down]) add(t);
    add(w.finalNorm);
    add(w.lmHead);
    for (const t of tensors) {
      if (t.dtype !== 'f32') throw new InvalidArgumentError('model', 'a PolicyModel loaded with f32 weights (PolicyModel.load(ctx, dir, { dtype: "f32" })) to train', `${t.name} stored as ${t.dtype}`);
    }
    this.parameters = tensors.map((t) => {
      const numel = t.shape.reduce((a, b) => a * b, 1);
      const rowElements = t.shape.length >= 2 ? numel / t.shape[0]! : numel;
      const grads = t.windows.map((w) => ({
        firstRow: w.firstRow, rows: w.rows,
        buffer: ctx.createBuffer(t.windows.length === 1 ? `grad:${t.name}` : `grad:${t.name}[${w.firstRow}:${w.firstRow + w.rows}]`, w.rows * rowElements * 4, STORAGE),
      }));
      this.grads.set(t, grads);
      return { name: t.name, shape: t.shape, numel, rowElements, values: t.windows, grads, decay: t.shape.length >= 2 };
    });
  }

  static create(model: PolicyModel): TrainingGraph {
    return new TrainingGraph(model);
  }

  /** Every gradient buffer: pass to runPass's `clear` to start accumulating a new optimiser step. */
  get gradBuffers(): GPUBuffer[] {
    return this.parameters.flatMap((p) => p.grads.map((w) => w.buffer));
  }

  private grad(t: GpuTensor): readonly RowWindow[] {
    return this.grads.get(t)!;
  }

  /** The gradient of a tensor read whole (norm weights, biases; their `.buffer` refuses a split one): its one buffer. */
  private wholeGrad(t: GpuTensor): GPUBuffer {
    return this.grads.get(t)![0]!.buffer;
  }

  async prepareStep(batch: number, seqLen: number, options: TrainStepOptions = {}): Promise<PreparedTrainStep> {
    for (const [name, v] of [['batch', batch], ['seqLen', seqLen]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(name, 'a positive integer', describe(v));
    }
    const c = this.model.config;
    if (seqLen > c.maxPositionEmbeddings) throw new InvalidArgumentError('seqLen', `at most max_position_embeddings (${c.maxPositionEmbeddings})`, String(seqLen));
    const temperature = options.temperature ?? 1;
    if (typeof temperature !== 'number' || !(temperature > 0) || !Number.isFinite(temperature)) throw new InvalidArgumentError('temperature', 'a finite number > 0', describe(temperature));

    const ctx = this.model.ctx;
    const w = this.model.weights;
    const rows = batch * seqLen;
    const H = c.hiddenSize;
    const I = c.intermediateSize;
    const qWidth = c.numHeads * c.headDim;
    const kvWidth = c.numKeyValueHeads * c.headDim;
    const buffers: GPUBuffer[] = [];
    const forward: Step[] = [];
    const backward: Step[] = [];
    const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const f32 = (name: string, elements: number): GPUBuffer => {
      const b = ctx.createBuffer(`train:${name}`, elements * 4, STORAGE);
      buffers.push(b);
      return b;
    };
    try {
      const ids = f32('ids', rows);
      const targets = f32('targets', rows);
      const lengths = f32('lengths', batch);
      const gLogprob = f32('g_logprob', rows);
      const gSelfCertainty = f32('g_self_certainty', rows);
      const positions = ctx.upload('train:positions', Uint32Array.from({ length: rows }, (_, i) => i % seqLen), STORAGE);
      buffers.push(positions);
      const attnShape = { batch, seqLen, heads: c.numHeads, kvHeads: c.numKeyValueHeads, headDim: c.headDim };
      const normShape = { rows, hidden: H, eps: c.rmsNormEps };
      const linear = (input: GPUBuffer, kIn: number, t: GpuTensor, bias: GpuTensor | null, output: GPUBuffer) =>
        prepareLinear(ctx, { m: rows, k: kIn, n: t.shape[0]!, weightDType: 'f32', biasDType: 'f32' }, input, t.windows, bias?.buffer ?? null, output);
      const linearBack = (input: GPUBuffer, kIn: number, t: GpuTensor, bias: GpuTensor | null, dy: GPUBuffer, dx: GPUBuffer | null, accumulateDx = false) =>
        prepareLinearBackward(ctx, { m: rows, k: kIn, n: t.shape[0]!, hasBias: bias !== null },
          { x: input, weight: t.windows, dy, dx, dWeight: this.grad(t), dBias: bias ? this.wholeGrad(bias) : null }, { accumulateDx });

      // Forward, keeping every layer's activations.
      const saved = w.layers.map((_, l) => ({
        xIn: f32(`x.${l}`, rows * H), h1: f32(`h1.${l}`, rows * H), q: f32(`q.${l}`, rows * qWidth), k: f32(`k.${l}`, rows * kvWidth),
        v: f32(`v.${l}`, rows * kvWidth), attn: f32(`attn.${l}`, rows * qWidth), lse: f32(`lse.${l}`, batch * c.numHeads * seqLen),
        xMid: f32(`x_mid.${l}`, rows * H), h2: f32(`h2.${l}`, rows * H), gate: f32(`gate.${l}`, rows * I), up: f32(`up.${l}`, rows * I), act: f32(`act.${l}`, rows * I),
      }));
      const xOut = f32('x_out', rows * H);
      const hOut = f32('h_out', rows * H);
      const proj = f32('proj', rows * H);
      forward.push(await prepareEmbedding(ctx, { tokens: rows, vocab: c.vocabSize, hidden: H, dtype: 'f32' }, ids, w.embed.windows, saved[0]?.xIn ?? xOut));
      for (const [l, layer] of w.layers.entries()) {
        const s = saved[l]!;
        const next = saved[l + 1]?.xIn ?? xOut;
        forward.push(await prepareRmsNorm(ctx, normShape, s.xIn, layer.inputNorm.buffer, s.h1));
        forward.push(await linear(s.h1, H, layer.q, layer.qBias, s.q));
        forward.push(await linear(s.h1, H, layer.k, layer.kBias, s.k));
        forward.push(await linear(s.h1, H, layer.v, layer.vBias, s.v));
        forward.push(await prepareRopeQk(ctx, { tokens: rows, heads: c.numHeads, kvHeads: c.numKeyValueHeads, headDim: c.headDim }, { q: s.q, k: s.k, positions, invFreq: this.model.invFreq }));
        forward.push(await prepareAttention(ctx, attnShape, { q: s.q, k: s.k, v: s.v, lengths, out: s.attn, lse: s.lse }));
        forward.push(await linear(s.attn, qWidth, layer.o, layer.oBias, proj));
        forward.push(await prepareAdd(ctx, { n: rows * H }, s.xIn, proj, s.xMid));
        forward.push(await prepareRmsNorm(ctx, normShape, s.xMid, layer.postNorm.buffer, s.h2));
        forward.push(await linear(s.h2, H, layer.gate, null, s.gate));
        forward.push(await linear(s.h2, H, layer.up, null, s.up));
        forward.push(await prepareSwiglu(ctx, { rows, intermediate: I }, s.gate, s.up, s.act));
        forward.push(await linear(s.act, I, layer.down, null, proj));
        forward.push(await prepareAdd(ctx, { n: rows * H }, s.xMid, proj, next));
      }
      forward.push(await prepareRmsNorm(ctx, normShape, xOut, w.finalNorm.buffer, hOut));
      const stats = allocateOutputs(ctx, rows, true) as GpuStatsOutputs & { logprob: GPUBuffer };
      buffers.push(stats.logsumexp, stats.selfCertainty, stats.entropy, stats.logprob, stats.validCount);
      const headShape = { rows, hidden: H, vocab: c.vocabSize };
      const invTemperature = 1 / temperature;
      forward.push(await prepareLmHeadStats(ctx, headShape, { hidden: hOut, weight: w.lmHead.windows, ids: targets }, stats, { invTemperature }));

      // Backward: activation gradients in buffers shared by all layers.
      const dX = f32('d_x', rows * H);
      const dH = f32('d_h', rows * H);
      const dQ = f32('d_q', rows * qWidth);
      const dK = f32('d_k', rows * kvWidth);
      const dV = f32('d_v', rows * kvWidth);
      const dAttn = f32('d_attn', rows * qWidth);
      const dGate = f32('d_gate', rows * I);
      const dUp = f32('d_up', rows * I);
      const dAct = f32('d_act', rows * I);
      backward.push(await prepareLmHeadStatsBackward(ctx, headShape, {
        hidden: hOut, weight: w.lmHead.windows, ids: targets, logsumexp: stats.logsumexp, validCount: stats.validCount, gLogprob, gSelfCertainty,
        dHidden: dH, dWeight: this.grad(w.lmHead),
      }, { invTemperature, slabBytes: options.lmHeadSlabBytes }));
      backward.push(await prepareRmsNormBackward(ctx, normShape, { x: xOut, weight: w.finalNorm.buffer, dy: dH, dx: dX, dWeight: this.wholeGrad(w.finalNorm) }));
      for (let l = w.layers.length - 1; l >= 0; l--) {
        const layer = w.layers[l]!;
        const s = saved[l]!;
        // dX holds dL/d(layer output) = dL/d(xMid + down(act)).
        backward.push(await linearBack(s.act, I, layer.down, null, dX, dAct));
        backward.push(await prepareSwigluBackward(ctx, { rows, intermediate: I }, { gate: s.gate, up: s.up, dAct, dGate, dUp }));
        backward.push(await linearBack(s.h2, H, layer.gate, null, dGate, dH));
        backward.push(await linearBack(s.h2, H, layer.up, null, dUp, dH, true));
        backward.push(await prepareRmsNormBackward(ctx, normShape, { x: s.xMid, weight: layer.postNorm.buffer, dy: dH, dx: dX, dWeight: this.wholeGrad(layer.postNorm) }));
        // dX now holds dL/dxMid = dL/d(xIn + o(attn)).
        backward.push(await linearBack(s.attn, qWidth, layer.o, layer.oBias, dX, dAttn));
        backward.push(await prepareAttentionBackward(ctx, attnShape, { q: s.q, k: s.k, v: s.v, out: s.attn, lse: s.lse, lengths, dOut: dAttn, dq: dQ, dk: dK, dv: dV }));
        backward.push(await prepareRopeQk(ctx, { tokens: rows, heads: c.numHeads, kvHeads: c.numKeyValueHeads, headDim: c.headDim }, { q: dQ, k: dK, positions, invFreq: this.model.invFreq }, true));
        backward.push(await linearBack(s.h1, H, layer.q, layer.qBias, dQ, dH));
        backward.push(await linearBack(s.h1, H, layer.k, layer.kBias, dK, dH, true));
        backward.push(await linearBack(s.h1, H, layer.v, layer.vBias, dV, dH, true));
        backward.push(await prepareRmsNormBackward(ctx, normShape, { x: s.xIn, weight: layer.inputNorm.buffer, dy: dH, dx: dX, dWeight: this.wholeGrad(layer.inputNorm) }));
      }
      backward.push(await prepareEmbeddingBackward(ctx, { tokens: rows, vocab: c.vocabSize, hidden: H }, { ids, dy: dX, dWeight: this.grad(w.embed) }));

      return {
        batch, seqLen, ids, lengths, targets, gLogprob, gSelfCertainty, stats,
        clearBeforeBackward: [dX],
        encodeForward(pass) {
          for (const step of forward) step.encode(pass);
        },
        encodeBackward(pass) {
          for (const step of backward) step.encode(pass);
        },
        destroy() {
          for (const step of [...forward, ...backward]) step.destroy();
          for (const b of buffers) b.destroy();
        },
      };
    } catch (err) {
      for (const step of [...forward, ...backward]) step.destroy();
      for (const b of buffers) b.destroy();
      throw err;
    }
  }

  /**
   * Writes a batch into a prepared step: right-padded `ids` (batch · seqLen), per-sequence
   * `lengths`, per-row `targets` and the upstream gradients (rows · 1 each; null = zeros).
   */
  writeBatch(step: PreparedTrainStep, batch: { ids: ArrayLike<number>; lengths: ArrayLike<number>; targets: ArrayLike<number>; gLogprob?: Float32Array | null; gSelfCertainty?: Float32Array | null }): void {
    const ctx = this.model.ctx;
    const rows = step.batch * step.seqLen;
    const vocab = this.model.config.vocabSize;
    const checkIds = (name: string, values: ArrayLike<number>, count: number, limit: number, what: string): Uint32Array => {
      if (values.length !== count) throw new InvalidArgumentError(name, `${count} values`, `${values.length}`);
      const out = new Uint32Array(count);
      for (let i = 0; i < count; i++) {
        const v = Number(values[i]);
        if (!Number.isInteger(v) || v < 0 || v >= limit) throw new InvalidArgumentError(`${name}[${i}]`, `${what} in [0, ${limit})`, String(values[i]));
        out[i] = v;
      }
      return out;
    };
    ctx.writeBuffer(step.ids, 0, checkIds('ids', batch.ids, rows, vocab, 'a token id'));
    ctx.writeBuffer(step.targets, 0, checkIds('targets', batch.targets, rows, vocab, 'a token id'));
    ctx.writeBuffer(step.lengths, 0, checkIds('lengths', batch.lengths, step.batch, step.seqLen + 1, 'a length'));
    for (const [name, buffer, values] of [['gLogprob', step.gLogprob, batch.gLogprob], ['gSelfCertainty', step.gSelfCertainty, batch.gSelfCertainty]] as const) {
      if (values != null && (!(values instanceof Float32Array) || values.length !== rows)) throw new InvalidArgumentError(name, `a Float32Array of ${rows} values`, describe(values));
      ctx.writeBuffer(buffer, 0, values ?? new Float32Array(rows));
    }
  }

  /** Runs the forward and the backward of a written batch in one submission; gradients are added to the parameters' grad buffers. */
  async forwardBackward(step: PreparedTrainStep): Promise<void> {
    await this.model.ctx.runPass('train_step', (pass) => {
      step.encodeForward(pass);
      step.encodeBackward(pass);
    }, { clear: step.clearBeforeBackward });
  }

  /** Runs only the forward (statistics land in step.stats), e.g. to compute a loss's gradient on the host first. */
  async forward(step: PreparedTrainStep): Promise<void> {
    await this.model.ctx.runPass('train_forward', (pass) => step.encodeForward(pass));
  }

  /** Runs only the backward of the last forward, with the gradients now in gLogprob / gSelfCertainty. */
  async backward(step: PreparedTrainStep): Promise<void> {
    await this.model.ctx.runPass('train_backward', (pass) => step.encodeBackward(pass), { clear: step.clearBeforeBackward });
  }

  /** Zeroes every parameter gradient. */
  async zeroGrads(): Promise<void> {
    await this.model.ctx.runPass('zero_grads', () => undefined, { clear: this.gradBuffers });
  }

  /** Reads every gradient to the host, by Hugging Face name (a split one joined back into one array). */
  async readGrads(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const p of this.parameters) out.set(p.name, await readJoined(this.model.ctx, 'read_grads', p, p.grads));
    return out;
  }

  /** Reads every parameter value to the host, by Hugging Face name (a split one joined back into one array). */
  async readParameters(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const p of this.parameters) out.set(p.name, await readJoined(this.model.ctx, 'read_parameters', p, p.values));
    return out;
  }

  destroy(): void {
    for (const p of this.parameters) for (const w of p.grads) w.buffer.destroy();
    this.grads.clear();
  }
}

/** A parameter's row windows (f32) read into one host array of the whole tensor. */
async function readJoined(ctx: PolicyModel['ctx'], label: string, p: TrainableParameter, windows: readonly RowWindow[]): Promise<Float32Array> {
  const out = new Float32Array(p.numel);
  for (const w of windows) out.set(new Float32Array(await ctx.read(label, w.buffer, w.rows * p.rowElements * 4)), w.firstRow * p.rowElements);
  return out;
}

/** Thrown when a loss or a gradient stops being finite; names the step and the tensor. */
export class NonFiniteError extends IntuitorError {
  constructor(readonly step: number, readonly tensor: string, detail: string) {
    super('NON_FINITE', `step ${step}: ${tensor} is not finite (${detail})`);
  }
}
