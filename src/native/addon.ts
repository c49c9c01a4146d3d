/**
 * Loader and typed wrappers of the native CPU backend (native/*.cc, built by cmake-js into
 * build/Release/intuitor_native.node). The addon is loaded lazily, once, from the package root;
 * its token-statistics forward/backward (and the read-bandwidth probe the forward is measured
 * against) run on worker threads and resolve when done, so the event loop keeps turning.
 * Semantics are those of src/ops/token-stats/reference.ts; the arguments are assumed validated by
 * the public op, but the addon re-checks every length and id and throws TypeError/RangeError
 * rather than touch memory out of bounds.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { POISON_BITS, type DType, type HostArray } from '../dtype.js';
import { BackendUnavailableError } from '../errors.js';

export type NativeStatus =
  | { loaded: true; path: string; simd: string; threads: number }
  | { loaded: false; reason: string };

export interface NativeForwardArgs {
  dtype: DType;
  logits: HostArray;
  rows: number;
  vocab: number;
  ids: Int32Array | null;
  invTemperature: number;
  threads?: number;
}

export interface NativeForwardResult {
  logsumexp: Float32Array;
  selfCertainty: Float32Array;
  entropy: Float32Array;
  logprob: Float32Array | null;
  validCount: Uint32Array;
}

export interface NativeBackwardArgs {
  dtype: DType;
  logits: HostArray;
  rows: number;
  vocab: number;
  ids: Int32Array | null;
  invTemperature: number;
  logsumexp: Float32Array;
  validCount: Uint32Array;
  gLogprob: Float32Array | null;
  gSelfCertainty: Float32Array | null;
  /** rows·vocab, written. */
  out: Float32Array;
  threads?: number;
}

/** The exports of native/addon.cc. Positional arguments keep the C++ side free of property lookups. */
interface Binding {
  simd: string;
  hardwareConcurrency: number;
  forward(
    dtype: DType, logits: HostArray, rows: number, vocab: number, ids: Int32Array | null, invTemperature: number,
    logsumexp: Float32Array, selfCertainty: Float32Array, entropy: Float32Array, logprob: Float32Array | null,
    validCount: Uint32Array, threads: number | undefined,
  ): Promise<void>;
  backward(
    dtype: DType, logits: HostArray, rows: number, vocab: number, ids: Int32Array | null, invTemperature: number,
    logsumexp: Float32Array, validCount: Uint32Array, gLogprob: Float32Array | null,
    gSelfCertainty: Float32Array | null, out: Float32Array, threads: number | undefined,
  ): Promise<void>;
  readBandwidth(bytes: number, samples: number, threads: number | undefined): Promise<number[]>;
  /** Absent from an addon built before they were added. */
  beginStderrCapture?(): void;
  endStderrCapture?(): string;
}

const ADDON_PATH = ['build', 'Release', 'intuitor_native.node'];

/** The directory holding the package.json named "intuitor", walking up from this module. */
function packageRoot(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === 'intuitor') return dir;
      } catch {
        // An unreadable or malformed package.json on the way up is not ours; keep walking.
      }
    }
    const parent = dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

type LoadState =
  | { binding: Binding; status: Extract<NativeStatus, { loaded: true }> }
  | { binding: null; status: Extract<NativeStatus, { loaded: false }> };

let state: LoadState | undefined;

function unavailable(reason: string): LoadState {
  return { binding: null, status: { loaded: false, reason } };
}

function load(): LoadState {
  const root = packageRoot();
  if (root === null) return unavailable(`no package.json named "intuitor" above ${fileURLToPath(import.meta.url)}`);
  const path = join(root, ...ADDON_PATH);
  if (!existsSync(path)) {
    return unavailable(`${path} does not exist: build it with \`npm install\` or \`npx cmake-js compile --out build\` in ${root}`);
  }
  try {
    const binding = createRequire(import.meta.url)(path) as Binding;
    return { binding, status: { loaded: true, path, simd: binding.simd, threads: binding.hardwareConcurrency } };
  } catch (error) {
    return unavailable(`cannot load ${path}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

function loadOnce(): LoadState {
  try {
    state ??= load();
  } catch (error) {
    state = unavailable(String(error));
  }
  return state;
}

/** Whether the addon is usable here, and why not. Loads it on first call; never throws. */
export function nativeStatus(): NativeStatus {
  return loadOnce().status;
}

function binding(): Binding {
  const current = loadOnce();
  if (current.binding === null) throw new BackendUnavailableError('native', current.status.reason);
  return current.binding;
}

/**
 * Float results start as POISON_BITS (validCount as 0xffffffff), so an element the kernel failed
 * to write reads as invalid rather than as a plausible number, and tests can tell it from the
 * kernel's own NaNs.
 */
function poisoned(length: number): Float32Array {
  const out = new Float32Array(length);
  new Uint32Array(out.buffer).fill(POISON_BITS);
  return out;
}

/** Per-row logsumexp, selfCertainty, entropy, logprob (when ids are given) and validCount. */
export async function nativeForward(args: NativeForwardArgs): Promise<NativeForwardResult> {
  const native = binding();
  const { rows } = args;
  const result: NativeForwardResult = {
    logsumexp: poisoned(rows),
    selfCertainty: poisoned(rows),
    entropy: poisoned(rows),
    logprob: args.ids ? poisoned(rows) : null,
    validCount: new Uint32Array(rows).fill(0xffffffff),
  };
  await native.forward(
    args.dtype, args.logits, rows, args.vocab, args.ids, args.invTemperature,
    result.logsumexp, result.selfCertainty, result.entropy, result.logprob, result.validCount, args.threads,
  );
  return result;
}

/** Writes dL/dlogits for upstream gradients of logprob and selfCertainty into `args.out`. */
export async function nativeBackward(args: NativeBackwardArgs): Promise<void> {
  const native = binding();
  await native.backward(
    args.dtype, args.logits, args.rows, args.vocab, args.ids, args.invTemperature,
    args.logsumexp, args.validCount, args.gLogprob, args.gSelfCertainty, args.out, args.threads,
  );
}

/**
 * Milliseconds per pass of a parallel single-pass read over `bytes` bytes (allocated and touched
 * by the addon), one entry per sample: this machine's memory read bandwidth with the kernels'
 * threads and SIMD path, the ceiling the native forward is compared with.
 */
export async function nativeReadBandwidth(bytes: number, samples: number, threads?: number): Promise<number[]> {
  return binding().readBandwidth(bytes, samples, threads);
}

/**
 * Runs `fn` (synchronous) with file descriptor 2 pointed at a temporary file, and returns its value
 * with what native code (or anything else) wrote to stderr meanwhile. Without the addon, `fn` runs
 * as is and `stderr` is null: nothing was captured.
 */
export function captureNativeStderr<T>(fn: () => T): { value: T; stderr: string | null } {
  const native = loadOnce().binding;
  if (!native?.beginStderrCapture || !native.endStderrCapture) return { value: fn(), stderr: null };
  native.beginStderrCapture();
  let stderr: string | null = null;
  try {
    const value = fn();
    stderr = native.endStderrCapture();
    return { value, stderr };
  } finally {
    if (stderr === null) process.stderr.write(native.endStderrCapture());
  }
}
