/**
 * Projections of an RMSNorm'd input: y_i = rmsnorm(x) · W_iᵀ + b_i for one to three projections
 * of the same input (q, k and v), or with `glu` y = silu(rmsnorm(x) · W_gateᵀ) ⊙ (rmsnorm(x) ·
 * W_upᵀ) (the MLP's gate and up with SwiGLU), on WebGPU (kernels/linear_norm.wgsl), with a
 * float64 reference. Weights, biases and the norm weight are f32, f16 or bf16 as src/ops/linear.ts
 * takes them, whole or in row windows (src/ops/split.ts); x and y are f32.
 *
 * Plan (linearNormPlan): a few rows (m ≤ 8: decoding a small batch, where src/ops/linear.ts runs
 * linear_rows_main) run fused, the norm computed by each workgroup from the x loads its projection
 * makes anyway and up to three projections (or row windows) per dispatch: a layer's input norm,
 * q, k and v take one dispatch instead of four, its MLP's norm, gate, up and SwiGLU one instead of
 * four. More rows (decoding 32 or 128 sequences, a prefill) run as rmsnorm (into the caller's
 * scratch) then one src/ops/linear.ts dispatch per projection (then swiglu): there the tiles' reuse
 * of W across 32 or 64 rows matters more than dispatches (on lavapipe, blocks of 8 rows re-reading
 * W made a batch-32 decode step 1.4× slower with bf16 weights), and a tile would have to re-read
 * its rows' whole length of x for the norm whenever k is split. The projections keep their own weight buffers (several
 * bindings, not one concatenated copy), because training updates those buffers in place and
 * generation must see the update without a second copy of the weights.
 */
import { BYTES_PER_ELEMENT, POISON_BITS, checkHostArray, parseDType, type DType, type HostArray } from '../dtype.js';
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { DispatchList, bindingOf } from './bindings.js';
import { DTYPE_CODE, prepareLinear, referenceLinear, type PreparedLinear } from './linear.js';
import { prepareRmsNorm, referenceRmsNorm } from './rmsnorm.js';
import { lanesFor, uploadRowWindows, windowsOf, type RowWindow } from './split.js';
import { prepareSwiglu, referenceSwiglu } from './swiglu.js';

export interface LinearNormProjection {
  /** Output features: rows of W, columns of this projection's y. */
  n: number;
  /** Storage of W. Default 'f32'. */
  weightDType?: DType;
  /** Storage of the bias, when the projection has one (its buffer is given). Default: weightDType. */
  biasDType?: DType;
}

export interface LinearNormShape {
  /** Rows of x (tokens). */
  m: number;
  /** Input features: columns of x, length of the norm weight, columns of every W. */
  k: number;
  /** Added to mean(x²): the model config's rms_norm_eps. Finite and ≥ 0. */
  eps: number;
  /** Storage of the norm weight. Default 'f32'. */
  normDType?: DType;
  /** One to three projections; with glu exactly two of equal n (gate, up) and no biases. */
  projections: readonly LinearNormProjection[];
  /** y = silu(projection 0) ⊙ projection 1 (SwiGLU), one output. */
  glu?: boolean;
}

export interface LinearNormBuffers {
  /** (m, k) f32. */
  x: GPUBuffer;
  /** (k) of normDType, 16-bit packed. */
  norm: GPUBuffer;
  /** Per projection: (n, k) of its weightDType, or row windows of it. */
  weights: readonly (GPUBuffer | readonly RowWindow[])[];
  /** Per projection: (n) of its biasDType, or null. */
  biases: readonly (GPUBuffer | null)[];
  /** Per projection (one with glu): (m, n) f32, distinct from x and from each other. */
  outputs: readonly GPUBuffer[];
  /**
   * The unfused plan's activations (sizes: linearNormScratch), which ops recorded one after
   * another may share: h, the normed x, and with glu gate and up. Unused by the fused plan.
   */
  scratch?: { h: GPUBuffer; gate: GPUBuffer | null; up: GPUBuffer | null };
}

/** Up to this many rows run fused (kernels/linear_norm.wgsl ROWS_MAX). */
const ROWS_MAX = 8;
/** Parts (projections or row windows) one fused dispatch takes: the kernel's w0 … w2. */
const PARTS_MAX = 3;
/** Storage buffers the fused kernel binds: x, the norm weight, three weights, biases and outputs. */
const FUSED_STORAGE_BUFFERS = 11;
const WORKGROUP = 256;
const NO_BIAS = 3;

interface CheckedProjection {
  n: number;
  weightDType: DType;
  biasDType: DType;
}

interface CheckedShape {
  m: number;
  k: number;
  eps: number;
  normDType: DType;
  projections: CheckedProjection[];
  glu: boolean;
}

function checkShape(shape: LinearNormShape): CheckedShape {
  if (shape === null || typeof shape !== 'object') throw new InvalidArgumentError('shape', 'an object { m, k, eps, projections }', describe(shape));
  for (const key of ['m', 'k'] as const) {
    const v = shape[key];
    if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(key, 'a positive integer', describe(v));
  }
  if (typeof shape.eps !== 'number' || !Number.isFinite(shape.eps) || shape.eps < 0) throw new InvalidArgumentError('eps', 'a finite number ≥ 0', describe(shape.eps));
  const glu = shape.glu ?? false;
  const list = shape.projections;
  if (!Array.isArray(list) || list.length < 1 || list.length > PARTS_MAX || (glu && list.length !== 2)) {
    throw new InvalidArgumentError('projections', glu ? 'two projections (gate, up)' : `one to ${PARTS_MAX} projections`, describe(list));
  }
  const projections = list.map((p: LinearNormProjection, i: number) => {
    if (p === null || typeof p !== 'object' || !Number.isSafeInteger(p.n) || p.n < 1) throw new InvalidArgumentError(`projections[${i}].n`, 'a positive integer', describe(p?.n));
    const weightDType = parseDType(p.weightDType ?? 'f32', `projections[${i}].weightDType`);
    return { n: p.n, weightDType, biasDType: parseDType(p.biasDType ?? weightDType, `projections[${i}].biasDType`) };
  });
  if (glu && projections[0]!.n !== projections[1]!.n) throw new InvalidArgumentError('projections', 'gate and up of equal n', `${projections[0]!.n} and ${projections[1]!.n}`);
  return { m: shape.m, k: shape.k, eps: shape.eps, normDType: parseDType(shape.normDType ?? 'f32', 'normDType'), projections, glu };
}

export interface LinearNormPlan {
  /** 'fused': kernels/linear_norm.wgsl; 'unfused': rmsnorm, then a linear per projection (then swiglu). */
  kernel: 'fused' | 'unfused';
  /** fused: threads per column of y, 4 … 32 (about 8 quads of k each). */
  lanes: number;
}

/**
 * How a shape runs: fused when m ≤ 8, every part's columns fit one grid dimension and the device
 * binds the kernel's 11 storage buffers (Dawn's desktop backends allow 16 and more); else unfused.
 */
export function linearNormPlan({ m, k, projections }: Pick<CheckedShape, 'm' | 'k' | 'projections'>, limits: Pick<GPUSupportedLimits, 'maxStorageBuffersPerShaderStage' | 'maxComputeWorkgroupsPerDimension'>): LinearNormPlan {
  const lanes = lanesFor(Math.ceil(k / 4), 8, 4, 32);
  const widest = Math.max(...projections.map((p) => p.n));
  const fused = m <= ROWS_MAX && limits.maxStorageBuffersPerShaderStage >= FUSED_STORAGE_BUFFERS
    && Math.ceil(widest / (WORKGROUP / lanes)) <= limits.maxComputeWorkgroupsPerDimension;
  return { kernel: fused ? 'fused' : 'unfused', lanes };
}

/** f32 elements of the scratch buffers a shape needs (LinearNormBuffers.scratch): all 0 when it runs fused. */
export function linearNormScratch(shape: LinearNormShape, limits: Pick<GPUSupportedLimits, 'maxStorageBuffersPerShaderStage' | 'maxComputeWorkgroupsPerDimension'>): { h: number; gate: number; up: number } {
  const s = checkShape(shape);
  if (linearNormPlan(s, limits).kernel === 'fused') return { h: 0, gate: 0, up: 0 };
  const gate = s.glu ? s.m * s.projections[0]!.n : 0;
  return { h: s.m * s.k, gate, up: gate };
}

/**
 * The float64 reference over values (decode 16-bit storage first): referenceRmsNorm, then
 * referenceLinear per projection; with glu one output, referenceSwiglu of the two.
 */
export function referenceLinearNorm(x: ArrayLike<number>, norm: ArrayLike<number>, weights: readonly ArrayLike<number>[], biases: readonly (ArrayLike<number> | null)[],
  { m, k, eps, projections, glu = false }: LinearNormShape): Float64Array[] {
  const h = referenceRmsNorm(x, norm, { rows: m, hidden: k, eps });
  const ys = projections.map((p, i) => referenceLinear(h, weights[i]!, biases[i] ?? null, { m, k, n: p.n }));
  return glu ? [referenceSwiglu(ys[0]!, ys[1]!)] : ys;
}

export interface PreparedLinearNorm {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

/** One part of a fused dispatch: a projection's row window. */
interface Part {
  projection: number;
  window: RowWindow;
  /** With glu: the same rows of up. */
  up?: RowWindow;
}

/**
 * Records the projections of rmsnorm(x) over GPU buffers into a caller's pass (see
 * LinearNormBuffers). Buffers may be larger than needed; the leading bytes are used (x and the
 * weights in whole 16-byte words: GpuContext pads every buffer so). destroy() frees the uniforms.
 */
export async function prepareLinearNorm(ctx: GpuContext, shape: LinearNormShape, buffers: LinearNormBuffers): Promise<PreparedLinearNorm> {
  const s = checkShape(shape);
  const { m, k, eps, normDType, projections, glu } = s;
  if (buffers === null || typeof buffers !== 'object') throw new InvalidArgumentError('buffers', 'an object { x, norm, weights, biases, outputs }', describe(buffers));
  const { x, norm, weights, biases, outputs } = buffers;
  const count = projections.length;
  if (!Array.isArray(weights) || weights.length !== count) throw new InvalidArgumentError('weights', `${count} weights (one per projection)`, describe(weights));
  if (!Array.isArray(biases) || biases.length !== count) throw new InvalidArgumentError('biases', `${count} biases or nulls (one per projection)`, describe(biases));
  if (glu && biases.some((b) => b !== null)) throw new InvalidArgumentError('biases', 'nulls with glu (gate and up carry no bias)', describe(biases));
  const outs = glu ? 1 : count;
  if (!Array.isArray(outputs) || outputs.length !== outs || new Set(outputs).size !== outs || outputs.includes(x)) {
    throw new InvalidArgumentError('outputs', `${outs} distinct output buffers, none of them x`, describe(outputs));
  }
  const windows = weights.map((w, i) => windowsOf(count === 1 ? 'weight' : `weights[${i}]`, w, projections[i]!.n));
  const plan = linearNormPlan(s, ctx.limits);
  if (plan.kernel === 'unfused') return prepareUnfused(ctx, s, buffers, windows);

  const { lanes } = plan;
  const columns = WORKGROUP / lanes;
  const round16 = (bytes: number) => Math.ceil(bytes / 16) * 16;
  const xBinding = bindingOf(ctx, 'x', x, round16(m * k * 4));
  const normBinding = bindingOf(ctx, 'norm', norm, k * BYTES_PER_ELEMENT[normDType]);
  const wBinding = (i: number, w: RowWindow) =>
    bindingOf(ctx, windows[i]!.length === 1 ? `weights[${i}]` : `weights[${i}][${w.firstRow}:${w.firstRow + w.rows}]`, w.buffer, round16(w.rows * k * BYTES_PER_ELEMENT[projections[i]!.weightDType]));
  const bBindings = biases.map((b, i) => (b === null ? null : bindingOf(ctx, `biases[${i}]`, b, projections[i]!.n * BYTES_PER_ELEMENT[projections[i]!.biasDType])));
  const yBindings = outputs.map((y, i) => bindingOf(ctx, `outputs[${i}]`, y, m * projections[i]!.n * 4));

  // Parts in order, grouped into dispatches: at most three, within one grid dimension, and never
  // two windows of one projection together (their outputs would be two writable bindings of one buffer).
  let parts: Part[];
  if (glu) {
    const [gate, up] = windows as [readonly RowWindow[], readonly RowWindow[]];
    if (gate.length !== up.length || gate.some((w, i) => w.rows !== up[i]!.rows)) {
      throw new InvalidArgumentError('weights', 'gate and up in the same row windows', `windows of ${gate.map((w) => w.rows).join(', ')} and ${up.map((w) => w.rows).join(', ')} rows`);
    }
    parts = gate.map((window, i) => ({ projection: 0, window, up: up[i]! }));
  } else {
    parts = windows.flatMap((list, projection) => list.map((window) => ({ projection, window })));
  }
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;
  const dispatches: Part[][] = [];
  for (const part of parts) {
    const last = dispatches.at(-1);
    const groups = (list: Part[]) => list.reduce((sum, p) => sum + Math.ceil(p.window.rows / columns), 0);
    if (last && !glu && last.length < PARTS_MAX && !last.some((p) => p.projection === part.projection) && groups([...last, part]) <= maxGroups) last.push(part);
    else dispatches.push([part]);
  }

  const code = (i: number | undefined, kind: 'weight' | 'bias'): number =>
    i === undefined ? (kind === 'weight' ? 0 : NO_BIAS) : kind === 'weight' ? DTYPE_CODE[projections[i]!.weightDType] : biases[i] === null ? NO_BIAS : DTYPE_CODE[projections[i]!.biasDType];
  const pipelines = await Promise.all(dispatches.map((list) => {
    const slots = glu ? [0, 1, undefined] : [0, 1, 2].map((j) => list[j]?.projection);
    return ctx.pipeline('linear_norm', 'linear_norm_rows', {
      ROWS_M: m, LANES: lanes, K_ALIGNED: k % 4 === 0 ? 1 : 0, GLU: glu ? 1 : 0, N_DTYPE: DTYPE_CODE[normDType],
      W0_DTYPE: code(slots[0], 'weight'), W1_DTYPE: code(slots[1], 'weight'), W2_DTYPE: code(slots[2], 'weight'),
      B0_DTYPE: glu ? NO_BIAS : code(slots[0], 'bias'), B1_DTYPE: glu ? NO_BIAS : code(slots[1], 'bias'), B2_DTYPE: glu ? NO_BIAS : code(slots[2], 'bias'),
    });
  }));

  return ctx.scoped('linear_norm:prepare', () => {
    const sizes = projections.map((p) => p.n).join('+');
    const label = `linear_norm ${m}x${k}x${sizes}${glu ? ' swiglu' : ''} ${projections.map((p) => p.weightDType).join('/')}`;
    const owned: GPUBuffer[] = [];
    const own = (buffer: GPUBuffer): GPUBuffer => (owned.push(buffer), buffer);
    // Bindings a dispatch declares but never reads: one read-only buffer, and one per unused output (writable bindings may not alias).
    let unreadBuffer: GPUBuffer | null = null;
    const unread = (): GPUBufferBinding => ({ buffer: (unreadBuffer ??= own(ctx.createBuffer('linear_norm:unread', 16, GPUBufferUsage.STORAGE))) });
    const unwrittenBuffers: GPUBuffer[] = [];
    const unwritten = (slot: number): GPUBufferBinding => ({ buffer: (unwrittenBuffers[slot] ??= own(ctx.createBuffer(`linear_norm:unwritten.${slot}`, 16, GPUBufferUsage.STORAGE))) });
    const uniforms = dispatches.map((list) => {
      const params = new ArrayBuffer(64);
      const words = new Uint32Array(params);
      words.set([m, k, list.length]);
      new Float32Array(params, 12, 1)[0] = eps;
      let groupEnd = 0;
      list.forEach((p, j) => {
        groupEnd += Math.ceil(p.window.rows / columns);
        words.set([groupEnd, p.window.rows, p.window.firstRow, projections[p.projection]!.n], 4 + 4 * j);
      });
      return own(ctx.uniform('linear_norm:params', params));
    });
    const list = new DispatchList(ctx, label, uniforms[0]!, owned);
    dispatches.forEach((group, d) => {
      const entries: [number, GPUBufferBinding][] = [[1, xBinding], [2, normBinding]];
      for (let j = 0; j < PARTS_MAX; j++) {
        const part = group[j];
        const w = glu ? (j === 0 ? wBinding(0, group[0]!.window) : j === 1 ? wBinding(1, group[0]!.up!) : unread()) : part ? wBinding(part.projection, part.window) : unread();
        const b = !glu && part ? bBindings[part.projection] ?? unread() : unread();
        const y = j === 0 ? yBindings[glu ? 0 : part!.projection]! : !glu && part ? yBindings[part.projection]! : unwritten(j);
        entries.push([3 + j, w], [6 + j, b], [9 + j, y]);
      }
      const rows = group.map((p) => `${p.projection}[${p.window.firstRow}:${p.window.firstRow + p.window.rows}]`).join(' ');
      const groups = group.reduce((sum, p) => sum + Math.ceil(p.window.rows / columns), 0);
      list.add(pipelines[d]!, `parts ${rows}`, entries, [groups, 1, 1], uniforms[d]);
    });
    return list.prepared();
  });
}

/** More rows: rmsnorm into scratch h, a linear per projection (into scratch gate and up with glu, then swiglu). */
async function prepareUnfused(ctx: GpuContext, { m, k, eps, normDType, projections, glu }: CheckedShape, { x, norm, biases, outputs, scratch }: LinearNormBuffers,
  windows: readonly (readonly RowWindow[])[]): Promise<PreparedLinearNorm> {
  if (scratch === undefined || scratch === null || (glu && (!scratch.gate || !scratch.up))) {
    throw new InvalidArgumentError('scratch', `buffers { h${glu ? ', gate, up' : ''} } for ${m} rows (linearNormScratch: the shape runs unfused)`, describe(scratch));
  }
  const { h } = scratch;
  const steps: PreparedLinear[] = [];
  try {
    steps.push(await prepareRmsNorm(ctx, { rows: m, hidden: k, eps, weightDType: normDType }, x, norm, h));
    const ys = glu ? [scratch.gate!, scratch.up!] : outputs;
    for (const [i, p] of projections.entries()) {
      const bias = biases[i] ?? null;
      steps.push(await prepareLinear(ctx, { m, k, n: p.n, weightDType: p.weightDType, biasDType: bias === null ? undefined : p.biasDType }, h, windows[i]!, bias, ys[i]!));
    }
    if (glu) steps.push(await prepareSwiglu(ctx, { rows: m, intermediate: projections[0]!.n }, ys[0]!, ys[1]!, outputs[0]!));
  } catch (err) {
    for (const step of steps) step.destroy();
    throw err;
  }
  return {
    encode(pass) {
      for (const step of steps) step.encode(pass);
    },
    destroy() {
      for (const step of steps) step.destroy();
    },
  };
}

/**
 * The projections of rmsnorm(x) for host arrays: x a Float32Array (m·k), norm (k), each weight
 * (n·k) and bias (n, or null) a Float32Array for f32 or a Uint16Array of f16/bf16 bits. Returns
 * each projection's y (m·n) as float32, or with glu the one SwiGLU output. `poison` fills the
 * outputs with NaN first. `windowRows` uploads each weight in row windows of that many rows.
 */
export async function linearNorm(ctx: GpuContext, x: Float32Array, norm: HostArray, weights: readonly HostArray[], biases: readonly (HostArray | null)[], shape: LinearNormShape,
  options: { poison?: boolean; windowRows?: number } = {}): Promise<Float32Array[]> {
  const s = checkShape(shape);
  const { m, k, normDType, projections, glu } = s;
  if (!(x instanceof Float32Array) || x.length !== m * k) throw new InvalidArgumentError('x', `Float32Array of ${m * k} elements (m·k)`, describe(x));
  checkHostArray('norm', normDType, norm);
  if (norm.length !== k) throw new InvalidArgumentError('norm', `${k} elements (k)`, describe(norm));
  if (!Array.isArray(weights) || weights.length !== projections.length) throw new InvalidArgumentError('weights', `${projections.length} weights`, describe(weights));
  if (!Array.isArray(biases) || biases.length !== projections.length) throw new InvalidArgumentError('biases', `${projections.length} biases or nulls`, describe(biases));
  projections.forEach((p, i) => {
    checkHostArray(`weights[${i}]`, p.weightDType, weights[i]);
    if (weights[i]!.length !== p.n * k) throw new InvalidArgumentError(`weights[${i}]`, `${p.n * k} elements (n·k)`, describe(weights[i]));
    const b = biases[i];
    if (b !== null && b !== undefined) {
      checkHostArray(`biases[${i}]`, p.biasDType, b);
      if (b.length !== p.n) throw new InvalidArgumentError(`biases[${i}]`, `${p.n} elements (n)`, describe(b));
    }
  });
  const { windowRows } = options;
  if (windowRows !== undefined && (!Number.isSafeInteger(windowRows) || windowRows < 1)) throw new InvalidArgumentError('windowRows', 'a positive integer', describe(windowRows));
  const outSizes = glu ? [m * projections[0]!.n] : projections.map((p) => m * p.n);
  const owned: GPUBuffer[] = [];
  const upload = (label: string, data: ArrayBufferView): GPUBuffer => (owned.push(ctx.upload(`linear_norm:${label}`, data)), owned.at(-1)!);
  try {
    const weightBuffers = weights.map((w, i) => uploadRowWindows(ctx, `linear_norm:weights[${i}]`, w, k, projections[i]!.n, windowRows, owned));
    const biasBuffers = biases.map((b, i) => (b === null ? null : upload(`biases[${i}]`, b)));
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
    const ys = outSizes.map((size, i) => (owned.push(options.poison ? ctx.upload(`linear_norm:outputs[${i}]`, new Uint32Array(size).fill(POISON_BITS), usage)
      : ctx.createBuffer(`linear_norm:outputs[${i}]`, size * 4, usage)), owned.at(-1)!));
    const sizes = linearNormScratch(shape, ctx.limits);
    const scratchBuffer = (name: string, elements: number) => (elements === 0 ? null : (owned.push(ctx.createBuffer(`linear_norm:${name}`, elements * 4, GPUBufferUsage.STORAGE)), owned.at(-1)!));
    const h = scratchBuffer('h', sizes.h);
    const scratch = h === null ? undefined : { h, gate: scratchBuffer('gate', sizes.gate), up: scratchBuffer('up', sizes.up) };
    const prepared = await prepareLinearNorm(ctx, shape, { x: upload('x', x), norm: upload('norm', norm), weights: weightBuffers, biases: biasBuffers, outputs: ys, scratch });
    try {
      await ctx.runPass('linear_norm', (pass) => prepared.encode(pass));
    } finally {
      prepared.destroy();
    }
    return await Promise.all(ys.map(async (y, i) => new Float32Array(await ctx.read('linear_norm', y, outSizes[i]! * 4))));
  } finally {
    for (const buffer of owned) buffer.destroy();
  }
}
