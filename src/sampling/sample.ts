/**
 * Token sampling for rollouts on WebGPU (kernels/sample.wgsl): one id per row of logits, drawn
 * from softmax(logits / T) after Hugging Face transformers' warpers in the order
 * GenerationMixin._get_logits_processor (src/transformers/generation/utils.py) appends them:
 * TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper
 * (src/transformers/generation/logits_process.py). Per warper, as there:
 * - temperature: z = x / T; T = 0 means greedy (argmax, lowest index on ties).
 * - top-k: keep z ≥ the k-th largest z (ties with it stay); k = 0 or k ≥ vocab is off.
 * - top-p: over the survivors' softmax, drop a token when the mass of the tokens above it is ≥ p
 *   (HF: ascending cumulative mass ≤ 1 − p); the top token always stays. HF's tie order is
 *   torch.sort's, so here tied values are kept or dropped together. p = 1 is off.
 * - min-p: keep p_j ≥ minP · p_max (after the earlier cuts); 0 is off.
 * The draw is Gumbel-max with Philox2x32-10 noise keyed by the row's seed and counted by token
 * index, so a row's id depends only on (logits row, options, seed): not on the batch or the grid.
 * The kernel sums masses in float32, so a top-p or min-p boundary within ~1e-6 of a cumulative
 * mass may fall on the other side than in the float64 reference; options travel as float32 (a
 * temperature under ~1e-38 may act as greedy).
 */
import { POISON_BITS } from '../dtype.js';
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { bindingOf, boundDispatch } from '../ops/bindings.js';
import { grid } from '../ops/token-stats/plan.js';

export interface SamplingOptions {
  /** ≥ 0, finite; 0 = greedy. */
  temperature: number;
  /** Keep the k most likely tokens (ties with the k-th included); 0 (default) = off. */
  topK?: number;
  /** Keep the smallest top set with mass ≥ p, in (0, 1]; 1 (default) = off. */
  topP?: number;
  /** Keep tokens with p ≥ minP · p_max, in [0, 1); 0 (default) = off. */
  minP?: number;
}

export interface SampleShape {
  rows: number;
  vocab: number;
}

export interface PreparedSample {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
  /** New options for every submit after this call (one uniform write; no new pipeline). */
  setOptions(options: SamplingOptions): void;
}

const OPTION_KEYS = ['temperature', 'topK', 'topP', 'minP'];
/** The kernel's reductions carry counts and token indices as float32: exact up to 2^24. */
const MAX_VOCAB = 2 ** 24;

/** The options with defaults filled in; InvalidArgumentError names the first bad one (or an unknown key). */
export function checkSamplingOptions(o: unknown): Required<SamplingOptions> {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw new InvalidArgumentError('options', 'an object { temperature, topK?, topP?, minP? }', describe(o));
  const unknown = Object.keys(o).filter((key) => !OPTION_KEYS.includes(key));
  if (unknown.length > 0) throw new InvalidArgumentError('options', `only ${OPTION_KEYS.join(', ')}`, unknown.join(', '));
  const { temperature, topK = 0, topP = 1, minP = 0 } = o as SamplingOptions;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) throw new InvalidArgumentError('temperature', 'a finite number ≥ 0 (0 = greedy)', describe(temperature));
  if (!Number.isSafeInteger(topK) || topK < 0) throw new InvalidArgumentError('topK', 'a non-negative integer (0 = off)', describe(topK));
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) throw new InvalidArgumentError('topP', 'a number in (0, 1] (1 = off)', describe(topP));
  if (typeof minP !== 'number' || !(minP >= 0 && minP < 1)) throw new InvalidArgumentError('minP', 'a number in [0, 1) (0 = off)', describe(minP));
  return { temperature, topK, topP, minP };
}

function checkShape(shape: SampleShape): SampleShape {
  if (shape === null || typeof shape !== 'object') throw new InvalidArgumentError('shape', 'an object { rows, vocab }', describe(shape));
  if (!Number.isSafeInteger(shape.rows) || shape.rows < 1) throw new InvalidArgumentError('rows', 'a positive integer', describe(shape.rows));
  if (!Number.isSafeInteger(shape.vocab) || shape.vocab < 1 || shape.vocab > MAX_VOCAB) throw new InvalidArgumentError('vocab', `an integer in [1, ${MAX_VOCAB}]`, describe(shape.vocab));
  return { rows: shape.rows, vocab: shape.vocab };
}

function argmaxOf(row: ArrayLike<number>): number {
  let best = 0;
  for (let j = 1; j < row.length; j++) if (row[j]! > row[best]!) best = j;
  return best;
}

/**
 * The exact (float64) probability of each token of one row after the warpers. A row with no
 * finite logit gets all its mass on index 0, as the kernel returns its argmax.
 */
export function referenceSamplingDistribution(logitsRow: ArrayLike<number>, options: SamplingOptions): Float64Array {
  const { temperature, topK, topP, minP } = checkSamplingOptions(options);
  const vocab = logitsRow.length;
  const probs = new Float64Array(vocab);
  const top = argmaxOf(logitsRow);
  if (temperature === 0 || logitsRow[top] === -Infinity) {
    probs[top] = 1;
    return probs;
  }
  const z = Float64Array.from(logitsRow, (x) => x / temperature);
  const descending = [...z.keys()].sort((a, b) => z[b]! - z[a]! || a - b);
  const kept = new Uint8Array(vocab).fill(1);
  if (topK > 0 && topK < vocab) {
    const kth = z[descending[topK - 1]!]!;
    for (let j = 0; j < vocab; j++) if (z[j]! < kth) kept[j] = 0;
  }
  const softmaxOfKept = (): Float64Array => {
    const zMax = z[top]!;
    const p = Float64Array.from(z, (v, j) => (kept[j] ? Math.exp(v - zMax) : 0));
    const total = p.reduce((s, v) => s + v, 0);
    return p.map((v) => v / total);
  };
  if (topP < 1) {
    const p = softmaxOfKept();
    // Walk tied values as one group: a group stays while the mass strictly above it is < p.
    let above = 0;
    for (let g = 0; g < vocab;) {
      let end = g;
      let groupMass = 0;
      while (end < vocab && z[descending[end]!] === z[descending[g]!]) groupMass += p[descending[end++]!]!;
      if (above >= topP) for (let i = g; i < end; i++) kept[descending[i]!] = 0;
      above += groupMass;
      g = end;
    }
  }
  if (minP > 0) {
    const p = softmaxOfKept();
    const floor = minP * p[top]!;
    for (let j = 0; j < vocab; j++) if (p[j]! < floor) kept[j] = 0;
  }
  return softmaxOfKept();
}

/** High 32 bits of the 64-bit product of two u32s. */
function mulHi(a: number, b: number): number {
  const a0 = a & 0xffff;
  const a1 = a >>> 16;
  const b0 = b & 0xffff;
  const b1 = b >>> 16;
  const cross1 = a1 * b0;
  const cross2 = a0 * b1;
  const carry = (((a0 * b0) >>> 16) + (cross1 & 0xffff) + (cross2 & 0xffff)) >>> 16;
  return (a1 * b1 + (cross1 >>> 16) + (cross2 >>> 16) + carry) >>> 0;
}

/** Philox2x32-10 (Random123's philox2x32 with 10 rounds): [counter0, counter1] under `key`, as u32s. */
export function philox2x32(counter0: number, counter1: number, key: number): [number, number] {
  let c0 = counter0 >>> 0;
  let c1 = counter1 >>> 0;
  let k = key >>> 0;
  for (let round = 0; round < 10; round++) {
    const hi = mulHi(0xd256d193, c0);
    [c0, c1] = [(hi ^ k ^ c1) >>> 0, Math.imul(0xd256d193, c0) >>> 0];
    k = (k + 0x9e3779b9) >>> 0;
  }
  return [c0, c1];
}

/**
 * The kernel's draw for one row in float64 arithmetic: argmax over the reference's kept set of
 * (x_j − m) / T − log(E_j), E_j the Exp(1) noise from philox2x32(j, 0, seed). `margin` is the gap
 * to the runner-up score (Infinity when one token is kept): the kernel's float32 arithmetic can
 * pick otherwise only where the margin is within ~1e-5.
 */
export function referenceSampleDraw(logitsRow: ArrayLike<number>, options: SamplingOptions, seed: number): { id: number; margin: number } {
  const probs = referenceSamplingDistribution(logitsRow, options);
  const { temperature } = checkSamplingOptions(options);
  if (temperature === 0) return { id: argmaxOf(logitsRow), margin: Infinity };
  const rowMax = logitsRow[argmaxOf(logitsRow)]!;
  let id = -1;
  let best = -Infinity;
  let second = -Infinity;
  for (let j = 0; j < logitsRow.length; j++) {
    if (probs[j] === 0) continue;
    const [hi, lo] = philox2x32(j, 0, seed);
    const u = (hi + (lo + 0.5) * 2 ** -32) * 2 ** -32;
    const score = (logitsRow[j]! - rowMax) / temperature - Math.log(-Math.log1p(-u));
    if (score > best) {
      second = best;
      best = score;
      id = j;
    } else if (score > second) {
      second = score;
    }
  }
  return id < 0 ? { id: 0, margin: Infinity } : { id, margin: best - second };
}

/** The uniform's option words from byte 12: topK, then temperature, topP, minP, then the threshold passes to run. */
function optionWords(options: Required<SamplingOptions>, vocab: number): ArrayBuffer {
  const words = new ArrayBuffer(24);
  const topK = options.topK < vocab ? options.topK : 0;
  new Uint32Array(words, 0, 1)[0] = topK;
  new Float32Array(words, 4, 3).set([options.temperature, options.topP, options.minP]);
  // Passes 0-7 find the top-k threshold, 8-15 the top-p one (greedy rows skip both).
  const sampling = options.temperature > 0;
  const firstPass = sampling && topK > 0 ? 0 : 8;
  const endPass = sampling && options.topP < 1 ? 16 : 8;
  new Uint32Array(words, 16, 2).set([firstPass, endPass]);
  return words;
}

/**
 * Records ids[r] = a draw from row r of `logits` (rows·vocab f32) under `options`, with
 * seeds[r] (u32 per row); ids is u32 per row.
 */
export async function prepareSample(ctx: GpuContext, shape: SampleShape, options: SamplingOptions,
  buffers: { logits: GPUBuffer; seeds: GPUBuffer; ids: GPUBuffer }): Promise<PreparedSample> {
  const { rows, vocab } = checkShape(shape);
  const checked = checkSamplingOptions(options);
  if (buffers === null || typeof buffers !== 'object') throw new InvalidArgumentError('buffers', 'an object { logits, seeds, ids }', describe(buffers));
  const entries = [
    bindingOf(ctx, 'logits', buffers.logits, rows * vocab * 4),
    bindingOf(ctx, 'seeds', buffers.seeds, rows * 4),
    bindingOf(ctx, 'ids', buffers.ids, rows * 4),
  ];
  const [groupsX, groupsY] = grid(rows, ctx.limits.maxComputeWorkgroupsPerDimension);
  const pipeline = await ctx.pipeline('sample', 'sample_main');
  return ctx.scoped('sample:prepare', () => {
    const params = new ArrayBuffer(48);
    new Uint32Array(params, 0, 3).set([rows, vocab, groupsX]);
    new Uint8Array(params, 12, 24).set(new Uint8Array(optionWords(checked, vocab)));
    const uniform = ctx.uniform('sample:params', params);
    const dispatch = boundDispatch(ctx, pipeline, `sample ${rows}x${vocab}`, uniform, entries, [groupsX, groupsY]);
    return {
      ...dispatch,
      setOptions(next: SamplingOptions) {
        ctx.writeBuffer(uniform, 12, new Uint8Array(optionWords(checkSamplingOptions(next), vocab)));
      },
    };
  });
}

/** One draw per row of host logits (rows·vocab), seeds one u32 per row. Returns the ids. */
export async function sample(ctx: GpuContext, logits: Float32Array, shape: SampleShape, options: SamplingOptions, seeds: Uint32Array): Promise<Uint32Array> {
  const { rows, vocab } = checkShape(shape);
  checkSamplingOptions(options);
  if (!(logits instanceof Float32Array) || logits.length !== rows * vocab) throw new InvalidArgumentError('logits', `Float32Array of ${rows * vocab} elements (rows·vocab)`, describe(logits));
  if (!(seeds instanceof Uint32Array) || seeds.length !== rows) throw new InvalidArgumentError('seeds', `Uint32Array of ${rows} elements (one per row)`, describe(seeds));
  const owned: GPUBuffer[] = [];
  try {
    const logitsBuffer = ctx.upload('sample:logits', logits);
    owned.push(logitsBuffer);
    const seedsBuffer = ctx.upload('sample:seeds', seeds);
    owned.push(seedsBuffer);
    // Poisoned first: an id the kernel never wrote reads as POISON_BITS, far past any vocabulary.
    const ids = ctx.upload('sample:ids', new Uint32Array(rows).fill(POISON_BITS), GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    owned.push(ids);
    const prepared = await prepareSample(ctx, shape, options, { logits: logitsBuffer, seeds: seedsBuffer, ids });
    try {
      await ctx.runPass('sample', (pass) => prepared.encode(pass));
    } finally {
      prepared.destroy();
    }
    return new Uint32Array(await ctx.read('sample', ids, rows * 4));
  } finally {
    for (const buffer of owned) buffer.destroy();
  }
}
