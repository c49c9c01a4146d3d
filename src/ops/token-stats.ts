/**
 * Token statistics over language-model logits, one read of each row:
 *   logprob = x[id] − logsumexp(x), selfCertainty = KL(U‖p) = logsumexp(x) − mean(x) − log V,
 *   entropy, logsumexp, with x = z / T; and their backward (dL/dz from per-row gradients of
 *   logprob and selfCertainty). Semantics of −inf (masked), NaN and +inf entries are in
 *   ./token-stats/reference.ts.
 *
 * Backends behind one API: `webgpu` (kernels/token_stats_*.wgsl), `native` (C++ addon,
 * multi-threaded, off the event loop), `js` (the float64 reference). `auto` picks webgpu when a
 * context is given or an adapter exists, else native, else js.
 *
 * This file validates (shapes, dtypes, ids, temperature) and dispatches; a wrong shape never
 * reaches a kernel.
 */
import { BYTES_PER_ELEMENT, POISON_BITS, checkHostArray, parseDType, type DType, type HostArray } from '../dtype.js';
import { BackendUnavailableError, InvalidArgumentError, describe } from '../errors.js';
import { GpuContext } from '../gpu/context.js';
import { nativeBackward, nativeForward, nativeStatus } from '../native/addon.js';
import { referenceBackward, referenceForward } from './token-stats/reference.js';
import {
  allocateOutputs, prepareBackward, prepareForward, type GpuStatsInputs, type GpuStatsOutputs, type PreparedDispatch,
} from './token-stats/webgpu.js';

export const BACKENDS = ['auto', 'webgpu', 'native', 'js'] as const;
export type Backend = (typeof BACKENDS)[number];
export type ResolvedBackend = Exclude<Backend, 'auto'>;

export type IdsInput = Int32Array | Uint32Array | BigInt64Array | readonly number[];

export interface TokenStatsArgs {
  /** Logits, row-major with the vocabulary last: Float32Array (f32), Uint16Array of f16/bf16 bits, or a GPUBuffer. */
  logits: HostArray | GPUBuffer;
  /** Shape of the logits, (..., V). Leading axes are flattened into rows. */
  shape: readonly number[];
  /** Default 'f32'. Required for Uint16Array and 16-bit GPU buffers. */
  dtype?: DType;
  /** Chosen token per row, in [0, V). A GPUBuffer holds u32 (ids ≥ V give NaN logprob). */
  ids?: IdsInput | GPUBuffer | null;
  /** Softmax temperature T > 0: statistics of z / T. Default 1. */
  temperature?: number;
}

export interface TokenStatsOptions {
  backend?: Backend;
  /** WebGPU context to run on (reused across calls; otherwise one is opened per call). */
  context?: GpuContext;
  /** Native backend threads (default: all cores). */
  threads?: number;
  /** Fill outputs with a poison pattern before the run (tests: an element a kernel never wrote shows). */
  poisonOutputs?: boolean;
}

export interface TokenStats<A = Float32Array> {
  backend: ResolvedBackend;
  /** The logits' shape without the vocabulary axis. */
  shape: number[];
  logsumexp: A;
  selfCertainty: A;
  entropy: A;
  /** Present when ids were given. */
  logprob: A | null;
  /** Finite (unmasked) entries per row: the support of U in selfCertainty. Needed by backward. */
  validCount: A extends GPUBuffer ? GPUBuffer : Uint32Array;
}

export interface TokenStatsBackwardArgs extends TokenStatsArgs {
  /** The forward's temperature T. Required: the saved logsumexp is of z / T, and no default can know T. */
  temperature: number;
  /** The forward's logsumexp (of z / T), per row. */
  logsumexp: Float32Array | GPUBuffer;
  /** The forward's validCount, per row. */
  validCount: Uint32Array | GPUBuffer;
  /** Upstream gradient of logprob, per row (requires ids). */
  gLogprob?: Float32Array | GPUBuffer | null;
  /** Upstream gradient of selfCertainty, per row. */
  gSelfCertainty?: Float32Array | GPUBuffer | null;
}

export { POISON_BITS };

interface Validated {
  dtype: DType;
  rows: number;
  vocab: number;
  rowShape: number[];
  invTemperature: number;
  logits: HostArray | GPUBuffer;
  ids: Int32Array | GPUBuffer | null;
}

function isGpuBuffer(value: unknown): value is GPUBuffer {
  return typeof value === 'object' && value !== null && typeof (value as GPUBuffer).mapAsync === 'function' && typeof (value as GPUBuffer).size === 'number';
}

function checkGpuBuffer(argument: string, buffer: GPUBuffer, minBytes: number): void {
  if ((buffer.usage & GPUBufferUsage.STORAGE) === 0) {
    throw new InvalidArgumentError(argument, 'a GPUBuffer with STORAGE usage', `usage flags ${buffer.usage}`);
  }
  if (buffer.size < minBytes) throw new InvalidArgumentError(argument, `a GPUBuffer of at least ${minBytes} bytes`, `${buffer.size} bytes`);
}

function validate(args: TokenStatsArgs): Validated {
  if (typeof args !== 'object' || args === null) throw new InvalidArgumentError('args', 'an object { logits, shape, ... }', describe(args));
  const { shape } = args;
  if (!Array.isArray(shape) || shape.length === 0 || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new InvalidArgumentError('shape', 'a non-empty array of non-negative integers (..., V)', Array.isArray(shape) ? `[${shape.join(', ')}]` : describe(shape));
  }
  const vocab = shape[shape.length - 1]!;
  if (vocab === 0) throw new InvalidArgumentError('shape', 'a vocabulary axis (last) of at least 1', `[${shape.join(', ')}]`);
  const rowShape = shape.slice(0, -1);
  const rows = rowShape.reduce((a, b) => a * b, 1);
  const dtype = args.dtype === undefined ? 'f32' : parseDType(args.dtype, 'dtype');
  const temperature = args.temperature ?? 1;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature <= 0) {
    throw new InvalidArgumentError('temperature', 'a finite number > 0', describe(temperature));
  }
  const elements = rows * vocab;
  let logits: HostArray | GPUBuffer;
  if (isGpuBuffer(args.logits)) {
    checkGpuBuffer('logits', args.logits, Math.max(16, Math.ceil((elements * BYTES_PER_ELEMENT[dtype]) / 4) * 4));
    logits = args.logits;
  } else {
    logits = checkHostArray('logits', dtype, args.logits);
    if (logits.length !== elements) {
      throw new InvalidArgumentError('logits', `${elements} elements for shape [${shape.join(', ')}]`, `${logits.length}`);
    }
  }
  return { dtype, rows, vocab, rowShape, invTemperature: 1 / temperature, logits, ids: validateIds(args.ids, rows, vocab) };
}

function validateIds(ids: TokenStatsArgs['ids'], rows: number, vocab: number): Int32Array | GPUBuffer | null {
  if (ids === undefined || ids === null) return null;
  if (isGpuBuffer(ids)) {
    checkGpuBuffer('ids', ids, rows * 4);
    return ids;
  }
  if (!(ids instanceof Int32Array || ids instanceof Uint32Array || ids instanceof BigInt64Array || Array.isArray(ids))) {
    throw new InvalidArgumentError('ids', 'Int32Array, Uint32Array, BigInt64Array or number[]', describe(ids));
  }
  if (ids.length !== rows) throw new InvalidArgumentError('ids', `one id per row (${rows})`, `${ids.length} ids`);
  const out = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    const id = Number(ids[i]);
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new InvalidArgumentError(`ids[${i}]`, `an integer in [0, ${vocab})`, String(ids[i]));
    }
    out[i] = id;
  }
  return out;
}

function rowArray(argument: string, value: unknown, rows: number, ctor: typeof Float32Array | typeof Uint32Array): Float32Array | Uint32Array | GPUBuffer {
  if (isGpuBuffer(value)) {
    checkGpuBuffer(argument, value, rows * 4);
    return value;
  }
  if (!(value instanceof ctor)) throw new InvalidArgumentError(argument, `${ctor.name} or GPUBuffer with one value per row`, describe(value));
  if (value.length !== rows) throw new InvalidArgumentError(argument, `${rows} values (one per row)`, `${value.length}`);
  return value;
}

/** Decides the backend. Opens a context for webgpu when none was given (`opened` says so). */
async function resolveBackend(backend: Backend, options: TokenStatsOptions, gpuInputs: boolean): Promise<{ backend: ResolvedBackend; context: GpuContext | null; opened: boolean }> {
  if (!(BACKENDS as readonly string[]).includes(backend)) throw new InvalidArgumentError('backend', BACKENDS.join(' | '), describe(backend));
  if (gpuInputs && backend !== 'webgpu' && backend !== 'auto') {
    throw new InvalidArgumentError('backend', "'webgpu' or 'auto' for GPUBuffer inputs", `'${backend}'`);
  }
  if (backend === 'webgpu' || (backend === 'auto' && (options.context || gpuInputs))) {
    if (options.context) return { backend: 'webgpu', context: options.context, opened: false };
    if (gpuInputs) throw new InvalidArgumentError('context', 'the GpuContext that owns the GPUBuffer inputs', 'undefined');
    return { backend: 'webgpu', context: await GpuContext.create(), opened: true };
  }
  if (backend === 'auto') {
    try {
      return { backend: 'webgpu', context: await GpuContext.create(), opened: true };
    } catch (err) {
      if (!(err instanceof BackendUnavailableError)) throw err;
    }
    return { backend: nativeStatus().loaded ? 'native' : 'js', context: null, opened: false };
  }
  if (backend === 'native') {
    const status = nativeStatus();
    if (!status.loaded) throw new BackendUnavailableError('native', status.reason);
  }
  return { backend, context: null, opened: false };
}

function poisoned(length: number, poison: boolean): Float32Array {
  const out = new Float32Array(length);
  if (poison) new Uint32Array(out.buffer).fill(POISON_BITS);
  return out;
}

/** Token statistics with host results. */
export async function tokenStats(args: TokenStatsArgs, options: TokenStatsOptions = {}): Promise<TokenStats> {
  const v = validate(args);
  const gpuInputs = isGpuBuffer(v.logits) || isGpuBuffer(v.ids);
  const { backend, context, opened } = await resolveBackend(options.backend ?? 'auto', options, gpuInputs);
  try {
    if (backend === 'webgpu') {
      const gpu = await runForwardOnGpu(context!, v, options.poisonOutputs ?? false);
      try {
        const [logsumexp, selfCertainty, entropy, logprob, validCount] = await Promise.all([
          readF32(context!, gpu.logsumexp, v.rows), readF32(context!, gpu.selfCertainty, v.rows), readF32(context!, gpu.entropy, v.rows),
          gpu.logprob ? readF32(context!, gpu.logprob, v.rows) : Promise.resolve(null),
          context!.read('token_stats', gpu.validCount, v.rows * 4).then((b) => new Uint32Array(b)),
        ]);
        return { backend, shape: v.rowShape, logsumexp, selfCertainty, entropy, logprob, validCount };
      } finally {
        destroyOutputs(gpu);
      }
    }
    const logits = v.logits as HostArray;
    const ids = v.ids as Int32Array | null;
    if (backend === 'native') {
      const r = await nativeForward({ dtype: v.dtype, logits, rows: v.rows, vocab: v.vocab, ids, invTemperature: v.invTemperature, threads: options.threads });
      return { backend, shape: v.rowShape, ...r };
    }
    const r = referenceForward(v.dtype, logits, v.rows, v.vocab, ids, 1 / v.invTemperature);
    return {
      backend, shape: v.rowShape, logsumexp: Float32Array.from(r.logsumexp), selfCertainty: Float32Array.from(r.selfCertainty),
      entropy: Float32Array.from(r.entropy), logprob: r.logprob ? Float32Array.from(r.logprob) : null, validCount: r.validCount,
    };
  } finally {
    if (opened) context!.close();
  }
}

/** Token statistics on a GPU context, results left on the GPU (the caller destroys them). */
export async function tokenStatsGpu(context: GpuContext, args: TokenStatsArgs, options: Pick<TokenStatsOptions, 'poisonOutputs'> = {}): Promise<TokenStats<GPUBuffer>> {
  if (!(context instanceof GpuContext)) throw new InvalidArgumentError('context', 'a GpuContext', describe(context));
  const v = validate(args);
  const gpu = await runForwardOnGpu(context, v, options.poisonOutputs ?? false);
  return { backend: 'webgpu', shape: v.rowShape, ...gpu };
}

async function readF32(ctx: GpuContext, buffer: GPUBuffer, n: number): Promise<Float32Array> {
  return new Float32Array(await ctx.read('token_stats', buffer, n * 4));
}

function destroyOutputs(o: GpuStatsOutputs): void {
  for (const b of [o.logsumexp, o.selfCertainty, o.entropy, o.logprob, o.validCount]) b?.destroy();
}

type ToGpu = <T extends ArrayBufferView | GPUBuffer | null>(label: string, value: T) => T extends null ? null : GPUBuffer;

/** Runs `body` with a function that uploads host arrays (GPUBuffers pass through); frees the uploads after. */
async function withUploads<T>(ctx: GpuContext, body: (toGpu: ToGpu) => Promise<T>): Promise<T> {
  const uploads: GPUBuffer[] = [];
  const toGpu = ((label: string, value: ArrayBufferView | GPUBuffer | null) => {
    if (value === null || isGpuBuffer(value)) return value;
    const buffer = ctx.upload(label, value);
    uploads.push(buffer);
    return buffer;
  }) as ToGpu;
  try {
    return await body(toGpu);
  } finally {
    for (const b of uploads) b.destroy();
  }
}

function gpuInputs(v: Validated, toGpu: ToGpu): GpuStatsInputs {
  return {
    dtype: v.dtype, rows: v.rows, vocab: v.vocab, invTemperature: v.invTemperature,
    logits: toGpu('token_stats:logits', v.logits), ids: toGpu('token_stats:ids', v.ids),
  };
}

async function runPrepared(ctx: GpuContext, op: string, prepare: Promise<PreparedDispatch>): Promise<void> {
  const prepared = await prepare;
  try {
    await ctx.runPass(op, (pass) => prepared.encode(pass));
  } finally {
    prepared.destroy();
  }
}

function poison(ctx: GpuContext, buffers: (GPUBuffer | null)[]): void {
  for (const b of buffers) if (b) ctx.writeBuffer(b, 0, new Uint32Array(b.size / 4).fill(POISON_BITS));
}

async function runForwardOnGpu(ctx: GpuContext, v: Validated, poisonOutputs: boolean): Promise<GpuStatsOutputs> {
  const outputs = allocateOutputs(ctx, v.rows, v.ids !== null);
  try {
    if (v.rows === 0) return outputs;
    if (poisonOutputs) poison(ctx, [outputs.logsumexp, outputs.selfCertainty, outputs.entropy, outputs.logprob, outputs.validCount]);
    await withUploads(ctx, (toGpu) => runPrepared(ctx, 'token_stats', prepareForward(ctx, gpuInputs(v, toGpu), outputs)));
    return outputs;
  } catch (err) {
    destroyOutputs(outputs);
    throw err;
  }
}

interface ValidatedBackward extends Validated {
  logsumexp: Float32Array | GPUBuffer;
  validCount: Uint32Array | GPUBuffer;
  gLogprob: Float32Array | GPUBuffer | null;
  gSelfCertainty: Float32Array | GPUBuffer | null;
}

function validateBackward(args: TokenStatsBackwardArgs): ValidatedBackward {
  // A default of 1 would silently pair a T ≠ 1 forward's logsumexp with the wrong softmax.
  if (typeof args === 'object' && args !== null && args.temperature === undefined) {
    throw new InvalidArgumentError('temperature', "the forward's temperature (its logsumexp is of z / T; 1 if it ran at T = 1)", 'undefined');
  }
  const v = validate(args);
  const gLogprob = args.gLogprob == null ? null : rowArray('gLogprob', args.gLogprob, v.rows, Float32Array) as Float32Array | GPUBuffer;
  if (gLogprob && !v.ids) throw new InvalidArgumentError('ids', 'chosen ids when gLogprob is given', 'none');
  return {
    ...v,
    logsumexp: rowArray('logsumexp', args.logsumexp, v.rows, Float32Array) as Float32Array | GPUBuffer,
    validCount: rowArray('validCount', args.validCount, v.rows, Uint32Array) as Uint32Array | GPUBuffer,
    gLogprob,
    gSelfCertainty: args.gSelfCertainty == null ? null : rowArray('gSelfCertainty', args.gSelfCertainty, v.rows, Float32Array) as Float32Array | GPUBuffer,
  };
}

/** dL/dz (rows · V, float32) for per-row upstream gradients of logprob and selfCertainty. */
export async function tokenStatsBackward(args: TokenStatsBackwardArgs, options: TokenStatsOptions = {}): Promise<Float32Array> {
  const v = validateBackward(args);
  const gpuInputs = [v.logits, v.ids, v.logsumexp, v.validCount, v.gLogprob, v.gSelfCertainty].some(isGpuBuffer);
  const { backend, context, opened } = await resolveBackend(options.backend ?? 'auto', options, gpuInputs);
  const elements = v.rows * v.vocab;
  try {
    if (backend === 'webgpu') {
      const grad = await tokenStatsBackwardGpu(context!, args, options);
      try {
        return new Float32Array(await context!.read('token_stats_backward', grad, elements * 4));
      } finally {
        grad.destroy();
      }
    }
    const out = poisoned(elements, options.poisonOutputs ?? false);
    const host = { ...v, logits: v.logits as HostArray, ids: v.ids as Int32Array | null, logsumexp: v.logsumexp as Float32Array,
      validCount: v.validCount as Uint32Array, gLogprob: v.gLogprob as Float32Array | null, gSelfCertainty: v.gSelfCertainty as Float32Array | null };
    if (backend === 'native') {
      await nativeBackward({ ...host, out, threads: options.threads });
      return out;
    }
    out.set(referenceBackward(v.dtype, host.logits, v.rows, v.vocab, host.ids, 1 / v.invTemperature, host.logsumexp, host.validCount, host.gLogprob, host.gSelfCertainty));
    return out;
  } finally {
    if (opened) context!.close();
  }
}

/** Backward on a GPU context; returns a new f32 (rows · V) GPU buffer (the caller destroys it). */
export async function tokenStatsBackwardGpu(context: GpuContext, args: TokenStatsBackwardArgs, options: Pick<TokenStatsOptions, 'poisonOutputs'> = {}): Promise<GPUBuffer> {
  if (!(context instanceof GpuContext)) throw new InvalidArgumentError('context', 'a GpuContext', describe(context));
  const v = validateBackward(args);
  const grad = context.createBuffer('token_stats:grad', v.rows * v.vocab * 4, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST);
  try {
    if (options.poisonOutputs) poison(context, [grad]);
    if (v.rows === 0) return grad;
    await withUploads(context, (toGpu) => runPrepared(context, 'token_stats_backward', prepareBackward(context, {
      ...gpuInputs(v, toGpu), grad,
      logsumexp: toGpu('token_stats:logsumexp', v.logsumexp), validCount: toGpu('token_stats:valid_count', v.validCount),
      gLogprob: toGpu('token_stats:g_logprob', v.gLogprob), gSelfCertainty: toGpu('token_stats:g_self_certainty', v.gSelfCertainty),
    })));
    return grad;
  } catch (err) {
    grad.destroy();
    throw err;
  }
}
