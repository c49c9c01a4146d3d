/**
 * One optimiser update over a TrainingGraph's accumulated gradients: the per-tensor sums of
 * squares (one small read per step), a non-finite check that names the tensor, global-norm
 * clipping, the scheduled learning rate, and AdamW on the f32 master weights.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import type { TrainingGraph } from '../model/training.js';
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
    const adamw = await AdamW.create(ctx, graph.parameters.map((p) => ({ name: p.name, param: p.value, grad: p.grad, numel: p.numel, decay: p.decay })),
      { beta1: config.beta1, beta2: config.beta2, eps: config.eps, weightDecay: config.weightDecay });
    try {
      await adamw.prepare();
      const squares = await prepareGradSquares(ctx, graph.parameters.map((p) => ({ name: p.name, buffer: p.grad, numel: p.numel })));
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

  state(): Promise<AdamWState> {
    return this.adamw.state();
  }

  loadState(state: AdamWState): void {
    this.adamw.loadState(state);
  }

  destroy(): void {
    this.adamw.destroy();
    this.squares.destroy();
  }
}
