/** Shared test inputs: seeded random logits with adversarial content, fixture paths, backends. */
import { fileURLToPath } from 'node:url';
import { encode, type DType, type HostArray } from '../src/dtype.js';
import { GpuContext } from '../src/gpu/context.js';
import { nativeStatus } from '../src/native/addon.js';
import { gaussian, mulberry32 } from '../src/util/random.js';

/** ../shared/fixtures beside the checkout, or INTUITOR_FIXTURES where the checkout travels alone. */
export const FIXTURES = process.env.INTUITOR_FIXTURES ?? fileURLToPath(new URL('../../../shared/fixtures/', import.meta.url));

export interface LogitsSpec {
  rows: number;
  vocab: number;
  dtype: DType;
  seed?: number;
  /** A few entries per row multiplied by 20. */
  outliers?: boolean;
  /** A few entries per row set to −inf (masked vocabulary). */
  masked?: boolean;
}

/** Random N(0, 3) logits, as the dtype's storage; `values` are the decoded numbers. */
export function makeLogits(spec: LogitsSpec): { logits: HostArray; ids: Int32Array } {
  const rand = mulberry32(spec.seed ?? 1234);
  const n = spec.rows * spec.vocab;
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = 3 * gaussian(rand);
  const ids = new Int32Array(spec.rows);
  for (let r = 0; r < spec.rows; r++) {
    ids[r] = Math.floor(rand() * spec.vocab);
    const base = r * spec.vocab;
    for (let k = 0; k < 3 && spec.vocab > 1; k++) {
      const j = Math.floor(rand() * spec.vocab);
      if (spec.outliers) values[base + j] = values[base + j]! * 20;
      const m = Math.floor(rand() * spec.vocab);
      if (spec.masked && m !== ids[r]) values[base + m] = -Infinity;
    }
  }
  return { logits: encode(spec.dtype, values), ids };
}

/** The GPU suite runs unless INTUITOR_SKIP_GPU=1 says otherwise: a missing adapter fails. */
export const SKIP_GPU = process.env.INTUITOR_SKIP_GPU === '1';
/** The native suite runs unless INTUITOR_SKIP_NATIVE=1: a missing addon fails. */
export const SKIP_NATIVE = process.env.INTUITOR_SKIP_NATIVE === '1';

export const describeGpu = SKIP_GPU ? describe.skip : describe;
export const describeNative = SKIP_NATIVE ? describe.skip : describe;

export async function openGpu(options: Parameters<typeof GpuContext.create>[0] = {}): Promise<GpuContext> {
  return GpuContext.create(options);
}

export function requireNative(): void {
  const status = nativeStatus();
  if (!status.loaded) throw new Error(`native addon not loaded (${status.reason}); set INTUITOR_SKIP_NATIVE=1 to skip explicitly`);
}

/** The tiny-qwen2 fixture as next-token rows: logits[:, :-1] as float32 (B, T−1, V) and ids[:, 1:]. */
export function fixtureNextToken(logits64: { shape: number[]; data: ArrayLike<number> }, inputIds: ArrayLike<number | bigint>): { logits: Float32Array; ids: Int32Array; shape: number[] } {
  const [batch, time, vocab] = logits64.shape as [number, number, number];
  const rows = batch * (time - 1);
  const logits = new Float32Array(rows * vocab);
  const ids = new Int32Array(rows);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < time - 1; t++) {
      const r = b * (time - 1) + t;
      for (let j = 0; j < vocab; j++) logits[r * vocab + j] = logits64.data[(b * time + t) * vocab + j]!;
      ids[r] = Number(inputIds[b * time + t + 1]!);
    }
  }
  return { logits, ids, shape: [batch, time - 1, vocab] };
}
