/**
 * One optimiser update over a TrainingGraph's accumulated gradients: the per-tensor sums of
 * squares (one small read per step), a non-finite check that names the tensor, global-norm
 * clipping, the scheduled learning rate, and AdamW on the f32 master weights.
 *
 * A parameter in row windows (larger than one storage binding) is one AdamW tensor and one sum of
 * squares per window, named `<name>[first:end]`; the global norm adds them all, and its moments
 * are joined back under the Hugging Face name in state() (and cut again by loadState), so a
 * checkpoint does not depend on the window size.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import type { TrainableParameter, TrainingGraph } from '../model/training.js';
import type { RowWindow } from '../ops/split.js';
import { NonFiniteError } from '../model/training.js';
import { AdamW, type AdamWState } from '../optim/adamw.js';
import { clipScale, firstNonFinite, globalNorm, prepareGradSquares, type PreparedGradSquares } from '../optim/grad-norm.js';
import { learningRate } from '../optim/schedule.js';

export interface OptimizerConfig {
  /** Peak learning rate. */
  lr: number;
  /** 'constant' or 'cosine' (both after linear warmup; see src/optim/schedule.ts). */
  schedule: 'constant' | 'cosine';
  warmupSteps: number;
  /** Optimiser updates in the whole run (the cosine's end). */
  totalSteps: number;
  /** Clip the global gradient 2-norm to this; 0 turns clipping off. */
  maxGradNorm: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
}

export const DEFAULT_OPTIMIZER: Omit<OptimizerConfig, 'lr' | 'totalSteps'> = {
  schedule: 'constant', warmupSteps: 0, maxGradNorm: 1.0, weightDecay: 0.0, beta1: 0.9, beta2: 0.999, eps: 1e-8,
};

export interface UpdateReport {
  lr: number;
  /** The global 2-norm before clipping. */
  gradNorm: number;
  /** The factor the gradients were multiplied by (1 when under the limit). */
  clipScale: number;
}

export class Optimizer {
  private constructor(private readonly graph: TrainingGraph, private readonly config: OptimizerConfig, private readonly adamw: AdamW, private readonly squares: PreparedGradSquares) {}

  static async create(graph: TrainingGraph, config: OptimizerConfig): Promise<Optimizer> {
    if (!(config.maxGradNorm >= 0)) throw new InvalidArgumentError('maxGradNorm', 'a number ≥ 0 (0 turns clipping off)', describe(config.maxGradNorm));
    learningRate(0, config);
    const ctx = graph.model.ctx;
    const windows = graph.parameters.flatMap((p) => p.values.map((value, i) => ({ ...windowOf(p, value), param: value.buffer, grad: p.grads[i]!.buffer, decay: p.decay })));
    const adamw = await AdamW.create(ctx, windows, { beta1: config.beta1, beta2: config.beta2, eps: config.eps, weightDecay: config.weightDecay });
    try {
      await adamw.prepare();
      const squares = await prepareGradSquares(ctx, windows.map((w) => ({ name: w.name, buffer: w.grad, numel: w.numel })));
      return new Optimizer(graph, config, adamw, squares);
    } catch (err) {
      adamw.destroy();
      throw err;
    }
  }

  /**
   * Applies update number `step` (1-based) from the gradients accumulated since the last zeroGrads.
   * A non-finite gradient throws NonFiniteError naming the step and the tensor, before any
   * weight changes.
   */
  async update(step: number): Promise<UpdateReport> {
    const ctx = this.graph.model.ctx;
    await ctx.runPass('grad_norm', (pass) => this.squares.encode(pass));
    const sums = await this.squares.read();
    const bad = firstNonFinite(this.squares.names, sums);
    if (bad !== null) throw new NonFiniteError(step, `the gradient of ${bad}`, `its sum of squares is ${sums[this.squares.names.indexOf(bad)]}`);
    const gradNorm = globalNorm(sums);
    const scale = this.config.maxGradNorm > 0 ? clipScale(gradNorm, this.config.maxGradNorm) : 1;
    const lr = learningRate(step - 1, this.config);
    await ctx.runPass('adamw', (pass) => this.adamw.encodeStep(pass, { step, lr, gradScale: scale }));
    return { lr, gradNorm, clipScale: scale };
  }

  /** Both moments of every parameter, by Hugging Face name (windows joined). */
  async state(): Promise<AdamWState> {
    const windows = await this.adamw.state();
    const state: AdamWState = {};
    for (const p of this.graph.parameters) {
      if (p.values.length === 1) {
        state[p.name] = windows[p.name]!;
        continue;
      }
      const joined = { m: new Float32Array(p.numel), v: new Float32Array(p.numel) };
      for (const w of p.values) {
        const { name, offset } = windowOf(p, w);
        joined.m.set(windows[name]!.m, offset);
        joined.v.set(windows[name]!.v, offset);
      }
      state[p.name] = joined;
    }
    return state;
  }

  /** Replaces the moments from state() or a checkpoint (by Hugging Face name; checked whole before any is written). */
  loadState(state: AdamWState): void {
    if (state === null || typeof state !== 'object') throw new InvalidArgumentError('state', 'an object mapping parameter names to { m, v }', describe(state));
    const split = new Map(this.graph.parameters.filter((p) => p.values.length > 1).map((p) => [p.name, p]));
    const windows: AdamWState = {};
    for (const [name, entry] of Object.entries(state)) {
      const p = split.get(name);
      if (p === undefined) {
        windows[name] = entry;
        continue;
      }
      for (const key of ['m', 'v'] as const) {
        const data = entry?.[key];
        if (!(data instanceof Float32Array) || data.length !== p.numel) throw new InvalidArgumentError(`state[${JSON.stringify(name)}].${key}`, `a Float32Array of ${p.numel} elements`, describe(data));
      }
      for (const w of p.values) {
        const { name: windowName, offset, numel } = windowOf(p, w);
        windows[windowName] = { m: entry.m.subarray(offset, offset + numel), v: entry.v.subarray(offset, offset + numel) };
      }
    }
    this.adamw.loadState(windows);
  }

  destroy(): void {
    this.adamw.destroy();
    this.squares.destroy();
  }
}

/** A parameter's window as an optimiser tensor: its name (`<name>[first:end]` when split), its elements and their offset in the whole. */
function windowOf(p: TrainableParameter, w: RowWindow): { name: string; numel: number; offset: number } {
  const name = p.values.length === 1 ? p.name : `${p.name}[${w.firstRow}:${w.firstRow + w.rows}]`;
  return { name, numel: w.rows * p.rowElements, offset: w.firstRow * p.rowElements };
}
