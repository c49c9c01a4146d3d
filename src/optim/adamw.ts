/**
 * AdamW on WebGPU (kernels/adamw.wgsl) over f32 master weights, with PyTorch's torch.optim.AdamW
 * semantics (decoupled weight decay, bias-corrected moments), and a float64 reference.
 *
 * Usage, once per optimiser step t = 1, 2, ... (1-based: it drives the bias correction):
 *
 *   const optimizer = await AdamW.create(ctx, params, { weightDecay: 0.1 });
 *   await optimizer.prepare();
 *   ...
 *   optimizer.encodeStep(pass, { step: t, lr, gradScale });  // then end the pass and submit
 *
 * The step's scalars travel in one uniform buffer that encodeStep rewrites (queue.writeBuffer), so
 * no pipeline or bind group is made per step; the price is that each encodeStep's pass must be
 * submitted before the next encodeStep, or both would run with the later scalars.
 *
 * The moments m (exp_avg) and v (exp_avg_sq) live on the GPU, one pair of f32 buffers per
 * parameter, zero at creation (as PyTorch's lazily created state); state() and loadState() move
 * them to and from the host for checkpoints.
 */
import { IntuitorError, InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { boundDispatch } from '../ops/bindings.js';
import { grid } from '../ops/token-stats/plan.js';
import { bindingWindows, checkTensorList } from './grad-norm.js';

export interface AdamWOptions {
  /** Decay rate of the first moment (β1). In [0, 1); default 0.9 (torch.optim.AdamW; Kingma & Ba 2015). */
  beta1?: number;
  /** Decay rate of the second moment (β2). In [0, 1); default 0.999 (torch.optim.AdamW; Kingma & Ba 2015). */
  beta2?: number;
  /** Added to sqrt(v̂) in the denominator, against division by zero. Finite, ≥ 0; default 1e-8 (torch.optim.AdamW). */
  eps?: number;
  /**
   * Decoupled weight decay: every step multiplies a decaying parameter by (1 − lr·weightDecay)
   * before the Adam update (Loshchilov & Hutter 2019). Finite, ≥ 0; default 0. torch.optim.AdamW
   * defaults to 0.01; Hugging Face's Trainer passes 0.0 unless told otherwise, as here.
   */
  weightDecay?: number;
}

export interface OptimParam {
  /** The Hugging Face parameter name; keys state() and loadState(). Unique. */
  name: string;
  /** The f32 master weights, updated in place: at least numel·4 bytes, STORAGE. */
  param: GPUBuffer;
  /** The f32 gradient (already summed over micro-batches): at least numel·4 bytes, STORAGE; only read. */
  grad: GPUBuffer;
  numel: number;
  /** Whether weight decay applies (Hugging Face's Trainer exempts biases and norm weights). */
  decay: boolean;
}

export interface AdamWStep {
  /** The 1-based number of this update, for the bias corrections 1 − β^t. */
  step: number;
  /** This step's learning rate (see learningRate in schedule.ts). Finite, ≥ 0. */
  lr: number;
  /** Multiplies every gradient first: the clipping factor (clipScale in grad-norm.ts). Finite, ≥ 0; default 1. */
  gradScale?: number;
}

/** The moments per parameter name, as state() returns and loadState() takes them. */
export type AdamWState = Record<string, { m: Float32Array; v: Float32Array }>;

function checkOptions(options: AdamWOptions): Required<AdamWOptions> {
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options', 'an object { beta1?, beta2?, eps?, weightDecay? }', describe(options));
  const { beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0 } = options;
  for (const [name, value] of [['beta1', beta1], ['beta2', beta2]] as const) {
    if (typeof value !== 'number' || !(value >= 0 && value < 1)) throw new InvalidArgumentError(name, 'a number in [0, 1)', describe(value));
  }
  for (const [name, value] of [['eps', eps], ['weightDecay', weightDecay]] as const) {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new InvalidArgumentError(name, 'a finite number ≥ 0', describe(value));
  }
  return { beta1, beta2, eps, weightDecay };
}

function checkStep(hp: AdamWStep): Required<AdamWStep> {
  if (hp === null || typeof hp !== 'object') throw new InvalidArgumentError('hyperparameters', 'an object { step, lr, gradScale? }', describe(hp));
  const { step, lr, gradScale = 1 } = hp;
  if (!Number.isSafeInteger(step) || step < 1) throw new InvalidArgumentError('step', 'a positive integer (1 for the first update)', describe(step));
  if (typeof lr !== 'number' || !Number.isFinite(lr) || lr < 0) throw new InvalidArgumentError('lr', 'a finite number ≥ 0', describe(lr));
  if (typeof gradScale !== 'number' || !Number.isFinite(gradScale) || gradScale < 0) throw new InvalidArgumentError('gradScale', 'a finite number ≥ 0', describe(gradScale));
  return { step, lr, gradScale };
}

/** One step of the float64 reference on every element, in place: PyTorch's AdamW formulas in exact arithmetic. */
export function referenceAdamW(param: Float64Array, m: Float64Array, v: Float64Array, grad: ArrayLike<number>, hp: AdamWStep, options: AdamWOptions, decay: boolean): void {
  const { beta1, beta2, eps, weightDecay } = checkOptions(options);
  const { step, lr, gradScale } = checkStep(hp);
  const bias1 = 1 - beta1 ** step;
  const bias2 = 1 - beta2 ** step;
  for (let i = 0; i < param.length; i++) {
    const g = grad[i]! * gradScale;
    if (decay) param[i] = param[i]! * (1 - lr * weightDecay);
    m[i] = beta1 * m[i]! + (1 - beta1) * g;
    v[i] = beta2 * v[i]! + (1 - beta2) * g * g;
    param[i] = param[i]! - (lr / bias1) * (m[i]! / (Math.sqrt(v[i]! / bias2) + eps));
  }
}

const WORKGROUP_SIZE = 256;
/** Bytes of the Step uniform in kernels/adamw.wgsl (12 f32). */
const STEP_BYTES = 48;

interface PreparedDispatch {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

interface Moments {
  m: GPUBuffer;
  v: GPUBuffer;
}

export class AdamW {
  readonly params: readonly OptimParam[];
  readonly options: Readonly<Required<AdamWOptions>>;
  private readonly ctx: GpuContext;
  private readonly moments: Moments[];
  private readonly stepUniform: GPUBuffer;
  private prepared: Promise<void> | null = null;
  private dispatches: PreparedDispatch[] | null = null;
  private destroyed = false;

  private constructor(ctx: GpuContext, params: OptimParam[], options: Required<AdamWOptions>, moments: Moments[], stepUniform: GPUBuffer) {
    this.ctx = ctx;
    this.params = params;
    this.options = options;
    this.moments = moments;
    this.stepUniform = stepUniform;
  }

  /** Checks the parameters and allocates their moments (zeros). Compiles nothing yet: see prepare(). */
  static async create(ctx: GpuContext, params: readonly OptimParam[], options: AdamWOptions = {}): Promise<AdamW> {
    const list = checkTensorList('params', params, ['param', 'grad']);
    const checked = checkOptions(options);
    const seen = new Set<GPUBuffer>();
    list.forEach((p, i) => {
      if (typeof p.decay !== 'boolean') throw new InvalidArgumentError(`params[${i}].decay`, 'true or false', describe(p.decay));
      if (p.param === p.grad) throw new InvalidArgumentError(`params[${i}].grad`, 'a buffer other than the parameter', `the same buffer (${JSON.stringify(p.name)})`);
      if (seen.has(p.param)) throw new InvalidArgumentError(`params[${i}].param`, 'a buffer no earlier parameter uses (tied weights are one parameter)', JSON.stringify(p.name));
      seen.add(p.param);
      // Fails here, not at prepare(), when a tensor cannot be cut into binding windows.
      bindingWindows(`params[${i}].numel`, p.numel, ctx.maxBindingBytes, ctx.limits.minStorageBufferOffsetAlignment / 4);
    });
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const owned: GPUBuffer[] = [];
    try {
      return await ctx.scoped('adamw:create', () => {
        const moments = list.map((p) => {
          const m = ctx.createBuffer(`adamw:exp_avg ${p.name}`, p.numel * 4, usage);
          owned.push(m);
          const v = ctx.createBuffer(`adamw:exp_avg_sq ${p.name}`, p.numel * 4, usage);
          owned.push(v);
          return { m, v };
        });
        const stepUniform = ctx.createBuffer('adamw:step', STEP_BYTES, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
        owned.push(stepUniform);
        return new AdamW(ctx, list, checked, moments, stepUniform);
      });
    } catch (error) {
      for (const buffer of owned) buffer.destroy();
      throw error;
    }
  }

  /** Compiles the pipeline and binds every parameter's windows, once; encodeStep needs it resolved. */
  prepare(): Promise<void> {
    this.assertLive('prepare');
    this.prepared ??= this.bindAll().then(
      (dispatches) => {
        if (this.destroyed) for (const d of dispatches) d.destroy();
        else this.dispatches = dispatches;
      },
      (error: unknown) => {
        this.prepared = null;
        throw error;
      },
    );
    return this.prepared;
  }

  private async bindAll(): Promise<PreparedDispatch[]> {
    const { ctx } = this;
    const pipeline = await ctx.pipeline('adamw', 'adamw_main');
    const align = ctx.limits.minStorageBufferOffsetAlignment / 4;
    return ctx.scoped('adamw:prepare', () => {
      const dispatches: PreparedDispatch[] = [];
      try {
        this.params.forEach((p, i) => {
          const { m, v } = this.moments[i]!;
          for (const { offset, count } of bindingWindows(`params[${i}].numel`, p.numel, ctx.maxBindingBytes, align)) {
            const window = (buffer: GPUBuffer): GPUBufferBinding => ({ buffer, offset: offset * 4, size: count * 4 });
            const [groupsX, groupsY] = grid(Math.ceil(count / WORKGROUP_SIZE), ctx.limits.maxComputeWorkgroupsPerDimension);
            const uniform = ctx.uniform('adamw:window', new Uint32Array([count, groupsX, p.decay ? 1 : 0, 0]).buffer);
            const label = `adamw ${p.name} [${offset}, +${count})`;
            dispatches.push(boundDispatch(ctx, pipeline, label, uniform, [{ buffer: this.stepUniform }, window(p.param), window(p.grad), window(m), window(v)], [groupsX, groupsY]));
          }
        });
      } catch (error) {
        for (const d of dispatches) d.destroy();
        throw error;
      }
      return dispatches;
    });
  }

  /**
   * Writes this step's scalars and records the update of every parameter into `pass` (after
   * prepare() resolved). Submit the pass before the next encodeStep (see the module comment).
   */
  encodeStep(pass: GPUComputePassEncoder, hp: AdamWStep): void {
    this.assertLive('encodeStep');
    const { step, lr, gradScale } = checkStep(hp);
    if (!this.dispatches) throw new IntuitorError('NOT_PREPARED', 'AdamW.encodeStep: call it after `await optimizer.prepare()` resolved');
    const { beta1, beta2, eps, weightDecay } = this.options;
    const scalars = new Float32Array(STEP_BYTES / 4);
    scalars.set([gradScale, 1 - lr * weightDecay, 1 - beta1, beta2, 1 - beta2, lr / (1 - beta1 ** step), Math.sqrt(1 - beta2 ** step), eps]);
    this.ctx.writeBuffer(this.stepUniform, 0, scalars);
    for (const d of this.dispatches) d.encode(pass);
  }

  /** One update in a pass of its own (prepares first when needed). */
  async step(hp: AdamWStep): Promise<void> {
    checkStep(hp);
    await this.prepare();
    await this.ctx.runPass('adamw', (pass) => this.encodeStep(pass, hp));
  }

  /** Copies every parameter's moments to the host (for a checkpoint). */
  async state(): Promise<AdamWState> {
    this.assertLive('state');
    const state: AdamWState = {};
    for (const [i, p] of this.params.entries()) {
      const { m, v } = this.moments[i]!;
      state[p.name] = {
        m: new Float32Array(await this.ctx.read('adamw:state', m, p.numel * 4)),
        v: new Float32Array(await this.ctx.read('adamw:state', v, p.numel * 4)),
      };
    }
    return state;
  }

  /** Replaces every parameter's moments (from state() or a checkpoint); all are checked before any is written. */
  loadState(state: AdamWState): void {
    this.assertLive('loadState');
    if (state === null || typeof state !== 'object') throw new InvalidArgumentError('state', 'an object mapping parameter names to { m, v }', describe(state));
    const names = new Set(this.params.map((p) => p.name));
    const extra = Object.keys(state).find((name) => !names.has(name));
    if (extra !== undefined) throw new InvalidArgumentError('state', 'only names of this optimiser\'s parameters', JSON.stringify(extra));
    for (const p of this.params) {
      const entry = state[p.name];
      if (entry === null || typeof entry !== 'object') throw new InvalidArgumentError(`state[${JSON.stringify(p.name)}]`, 'an object { m, v }', describe(entry));
      for (const key of ['m', 'v'] as const) {
        const data = entry[key];
        if (!(data instanceof Float32Array) || data.length !== p.numel) throw new InvalidArgumentError(`state[${JSON.stringify(p.name)}].${key}`, `a Float32Array of ${p.numel} elements`, describe(data));
      }
    }
    this.params.forEach((p, i) => {
      const { m, v } = this.moments[i]!;
      this.ctx.writeBuffer(m, 0, state[p.name]!.m);
      this.ctx.writeBuffer(v, 0, state[p.name]!.v);
    });
  }

  /** Frees the moments and uniforms (the parameter and gradient buffers stay the caller's). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const d of this.dispatches ?? []) d.destroy();
    for (const { m, v } of this.moments) {
      m.destroy();
      v.destroy();
    }
    this.stepUniform.destroy();
  }

  private assertLive(method: string): void {
    if (this.destroyed) throw new IntuitorError('DESTROYED', `AdamW.${method}: the optimiser was destroyed`);
  }
}
