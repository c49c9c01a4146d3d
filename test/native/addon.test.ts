/**
 * The native addon (native/*.cc through src/native/addon.ts) against the float64 reference
 * (src/ops/token-stats/reference.ts): every dtype, shapes from one element to a 10^6 vocabulary
 * (rows split into chunks), masked and invalid rows, the backward against the reference and
 * against finite differences, the event loop while a big call runs, argument checks, and every
 * kernel set the CPU has (the best in this process: AVX-512, AVX2 or scalar; the others forced
 * in a child process through INTUITOR_NATIVE_SIMD). Outputs are poisoned before each run (the
 * wrapper's poison for the forward, the same POISON_BITS here for the backward's `out`), and
 * no element may keep the pattern: even NaN rows must be written by the kernel.
 *
 * Jest runs this module in a vm context where every global lookup (Math, Number, ...) is an
 * interceptor call, about 30× slower: hot loops here use locals bound once, and the reference runs
 * in a worker thread (a plain realm) rather than here.
 */
import { spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { POISON_BITS, encode, f16BitsToFloat, type DType, type HostArray } from '../../src/dtype.js';
import { nativeBackward, nativeForward, nativeStatus, type NativeForwardResult } from '../../src/native/addon.js';
import { referenceBackward, referenceForward, type ReferenceForward } from '../../src/ops/token-stats/reference.js';
import { TOLERANCES, type Tolerance } from '../tolerances.js';

const { abs, cos, floor, imul, log, log2, round, sqrt, PI } = Math;
const { isFinite, isNaN } = Number;

const describeNative = process.env.INTUITOR_SKIP_NATIVE === '1' ? describe.skip : describe;

const DTYPES: DType[] = ['f32', 'f16', 'bf16'];
const TEMPERATURE = 0.7;
const INV_T = 1 / TEMPERATURE;
/** Written over `out` before each backward; a NaN pattern that no kernel writes. */

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = imul(a ^ (a >>> 15), a | 1);
    t ^= t + imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(rand: () => number): number {
  return sqrt(-2 * log(1 - rand())) * cos(2 * PI * rand());
}

/**
 * |got − want| ≤ atol + rtol·|want| (test/tolerances.ts's rule: NaN matches NaN, infinities must
 * be equal), written with the locals above so that 10^6-element checks stay fast under jest.
 */
function expectClose(what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: Tolerance): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    const ok = isNaN(w) || isNaN(g) ? isNaN(w) && isNaN(g)
      : !isFinite(w) || !isFinite(g) ? g === w
        : abs(g - w) <= tol.atol + tol.rtol * abs(w);
    if (!ok) throw new Error(`${what}: element ${i}: got ${g}, want ${w} (atol ${tol.atol}, rtol ${tol.rtol})`);
  }
}

/** Every float16 pattern decoded once: the reference reads f16 through a DataView, too slowly for 10^6 entries. */
const F16_VALUES = Float32Array.from({ length: 65536 }, (_, bits) => f16BitsToFloat(bits));

/** Nearest-ish float16 bits of x (any f16 value near x makes a fine input); encode('f16') is slow at 10^6. */
function f16Bits(x: number): number {
  if (isNaN(x)) return 0x7e00;
  const sign = x < 0 ? 0x8000 : 0;
  const a = abs(x);
  if (a < 2 ** -14) return sign | round(a * 2 ** 24);
  let e = floor(log2(a));
  if (a / 2 ** e < 1) e--;
  if (a / 2 ** e >= 2) e++;
  let m = round((a / 2 ** e) * 1024) - 1024;
  if (m === 1024) (e++, (m = 0));
  return e > 15 ? sign | 0x7c00 : sign | ((e + 15) << 10) | m;
}

function toDType(dtype: DType, values: Float64Array): HostArray {
  return dtype === 'f16' ? Uint16Array.from(values, f16Bits) : encode(dtype, values);
}

/** The same numbers as the reference sees them; big f16 inputs go to it as exact f32 values. */
function referenceInput(dtype: DType, logits: HostArray): [DType, HostArray] {
  if (dtype !== 'f16' || logits.length < 100_000) return [dtype, logits];
  return ['f32', Float32Array.from(logits as Uint16Array, (bits) => F16_VALUES[bits]!)];
}

interface Inputs {
  logits: HostArray;
  ids: Int32Array;
  gLogprob: Float32Array;
  gSelfCertainty: Float32Array;
}

/**
 * N(0, 3) logits with three ×20 outliers and three −inf entries per row; row 1 (when there is
 * one) has its chosen id masked.
 */
function makeInputs(dtype: DType, rows: number, vocab: number, seed: number): Inputs {
  const rand = mulberry32(seed);
  const values = new Float64Array(rows * vocab);
  for (let i = 0; i < values.length; i++) values[i] = 3 * gaussian(rand);
  const ids = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    const base = r * vocab;
    ids[r] = floor(rand() * vocab);
    for (let k = 0; k < 3 && vocab > 1; k++) {
      const j = floor(rand() * vocab);
      values[base + j] = values[base + j]! * 20;
      const m = floor(rand() * vocab);
      if (m !== ids[r]) values[base + m] = -Infinity;
    }
    if (r === 1 && vocab > 1) values[base + ids[r]!] = -Infinity;
  }
  const grads = () => Float32Array.from({ length: rows }, () => gaussian(rand));
  return { logits: toDType(dtype, values), ids, gLogprob: grads(), gSelfCertainty: grads() };
}

function poisonedOut(length: number): Float32Array {
  const out = new Float32Array(length);
  new Uint32Array(out.buffer).fill(POISON_BITS);
  return out;
}

/** No element still holds a poison pattern: NaN results must be written NaNs. */
function expectWritten(what: string, values: Float32Array, poisonBits: number): void {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const index = bits.indexOf(poisonBits);
  if (index >= 0) throw new Error(`${what}: element ${index} was never written`);
}

function expectForward(what: string, got: NativeForwardResult, want: ReferenceForward): void {
  const tol = TOLERANCES.tokenStatsForward;
  for (const key of ['logsumexp', 'selfCertainty', 'entropy', 'logprob'] as const) {
    const g = got[key];
    const w = want[key];
    expect(g === null).toBe(w === null);
    if (g && w) {
      expectClose(`${what} ${key}`, g, w, tol);
      expectWritten(`${what} ${key}`, g, POISON_BITS);
    }
  }
  expect(Array.from(got.validCount)).toEqual(Array.from(want.validCount));
}

interface Expected {
  want: ReferenceForward;
  /** The reference backward at the reference's own statistics, logsumexp rounded to f32. */
  wantGrad: Float64Array;
}

/** referenceForward then referenceBackward in a worker thread (tests run one at a time, so one job does too). */
class ReferenceWorker {
  private readonly worker: Worker;
  private pending: { resolve: (e: Expected) => void; reject: (error: Error) => void } | null = null;

  constructor() {
    const url = new URL('../../src/ops/token-stats/reference.js', import.meta.url).href;
    this.worker = new Worker(`
      const { parentPort } = require('node:worker_threads');
      const reference = import(${JSON.stringify(url)});
      parentPort.on('message', async ({ dtype, logits, rows, vocab, ids, temperature, gLogprob, gSelfCertainty }) => {
        const { referenceForward, referenceBackward } = await reference;
        const want = referenceForward(dtype, logits, rows, vocab, ids, temperature);
        const wantGrad = referenceBackward(dtype, logits, rows, vocab, ids, temperature, Float32Array.from(want.logsumexp),
          want.validCount, gLogprob, gSelfCertainty);
        parentPort.postMessage({ want, wantGrad }, [wantGrad.buffer]);
      });`, { eval: true });
    this.worker.on('message', (expected: Expected) => this.pending?.resolve(expected));
    this.worker.on('error', (error) => this.pending?.reject(error));
  }

  run(dtype: DType, rows: number, vocab: number, inputs: Inputs): Promise<Expected> {
    const [refDType, logits] = referenceInput(dtype, inputs.logits);
    return new Promise<Expected>((resolve, reject) => {
      this.pending = { resolve, reject };
      this.worker.postMessage({
        dtype: refDType, logits, rows, vocab, ids: inputs.ids, temperature: TEMPERATURE, gLogprob: inputs.gLogprob, gSelfCertainty: inputs.gSelfCertainty,
      });
    });
  }

  close(): Promise<number> {
    return this.worker.terminate();
  }
}

let reference: ReferenceWorker;

/** Native forward and backward (at the reference's statistics, so each is tested on its own) with their references. */
async function runBoth(dtype: DType, rows: number, vocab: number, inputs: Inputs, threads?: number, expected?: Expected) {
  const { logits, ids, gLogprob, gSelfCertainty } = inputs;
  const { want, wantGrad } = expected ?? await reference.run(dtype, rows, vocab, inputs);
  const got = await nativeForward({ dtype, logits, rows, vocab, ids, invTemperature: INV_T, threads });
  const out = poisonedOut(rows * vocab);
  await nativeBackward({
    dtype, logits, rows, vocab, ids, invTemperature: INV_T, logsumexp: Float32Array.from(want.logsumexp), validCount: want.validCount,
    gLogprob, gSelfCertainty, out, threads,
  });
  return { got, want, out, wantGrad };
}

describeNative('native token statistics', () => {
  beforeAll(() => {
    const status = nativeStatus();
    if (!status.loaded) throw new Error(`native addon not loaded (${status.reason}); set INTUITOR_SKIP_NATIVE=1 to skip explicitly`);
    reference = new ReferenceWorker();
  });
  afterAll(() => reference?.close());

  test('nativeStatus reports the loaded addon, its SIMD path and thread count', () => {
    const status = nativeStatus();
    expect(status).toMatchObject({ loaded: true });
    if (!status.loaded) return;
    expect(status.path).toMatch(/build[\\/]Release[\\/]intuitor_native\.node$/);
    expect(['avx512', 'avx2+fma', 'scalar']).toContain(status.simd);
    expect(status.threads).toBeGreaterThanOrEqual(1);
    expect(nativeStatus()).toBe(status);
  });

  test('the f16 test encoder and decode table agree with src/dtype.ts', () => {
    const rand = mulberry32(5);
    for (let k = 0; k < 2000; k++) {
      const x = 3 * gaussian(rand) * (k % 10 === 0 ? 20 : 1) * (k % 97 === 0 ? 1e-6 : 1);
      const bits = f16Bits(x);
      expect(Math.abs(F16_VALUES[bits]! - x)).toBeLessThanOrEqual(Math.abs(x) * 2 ** -10 + 2 ** -24);
    }
  });

  const SHAPES: [number, number][] = [[1, 1], [3, 5], [7, 1023], [5, 151936], [2, 1000003]];
  describe.each(DTYPES)('%s', (dtype) => {
    test.each(SHAPES)('(%i, %i): forward and backward match the reference', async (rows, vocab) => {
      const inputs = makeInputs(dtype, rows, vocab, rows * 7919 + vocab);
      const { got, want, out, wantGrad } = await runBoth(dtype, rows, vocab, inputs);
      expectForward(`${dtype} (${rows}, ${vocab})`, got, want);
      if (rows > 1 && vocab > 1) expect(got.logprob![1]).toBe(-Infinity);
      expectWritten('backward', out, POISON_BITS);
      expectClose(`${dtype} (${rows}, ${vocab}) backward`, out, wantGrad, TOLERANCES.tokenStatsBackward);
    });

    test('rows with NaN, +inf or only −inf are NaN; their neighbours are untouched', async () => {
      // 5·10^5 elements run on 2 threads, so 5 rows < 4 per thread: each row is cut into 2 chunks,
      // and the NaN and +inf land in the second one.
      const rows = 5;
      const vocab = 100_003;
      const threads = 4;
      const clean = makeInputs(dtype, rows, vocab, 99);
      const logits = clean.logits.slice();
      const [nan, inf, minusInf] = toDType(dtype, Float64Array.from([NaN, Infinity, -Infinity]));
      logits[1 * vocab + 70_000] = nan!;
      logits[3 * vocab + 60_001] = inf!;
      logits.fill(minusInf!, 4 * vocab, 5 * vocab);
      const { got, want, out, wantGrad } = await runBoth(dtype, rows, vocab, { ...clean, logits }, threads);
      expectForward(`${dtype} invalid rows`, got, want);
      for (const r of [1, 3, 4]) expect(got.logsumexp[r]).toBeNaN();
      expect(got.validCount[4]).toBe(0);
      expectWritten('backward', out, POISON_BITS);
      expectClose(`${dtype} invalid rows backward`, out, wantGrad, TOLERANCES.tokenStatsBackward);
      for (const r of [1, 3, 4]) expect(out.subarray(r * vocab, (r + 1) * vocab).every(isNaN)).toBe(true);

      // Same shape and threads, hence the same split: rows 0 and 2 are bit for bit those of the clean batch.
      const alone = await nativeForward({ dtype, logits: clean.logits, rows, vocab, ids: clean.ids, invTemperature: INV_T, threads });
      for (const key of ['logsumexp', 'selfCertainty', 'entropy', 'logprob'] as const) {
        for (const r of [0, 2]) expect(Object.is(got[key]![r], alone[key]![r])).toBe(true);
      }
    });
  });

  // Rows shaped for the vector kernels' slow paths: the AVX-512 forward sums blocks of 2048 entries
  // against one reference point, moving it when a block's sums grow (a rising row), redoing a block
  // whose maximum jumped far above it (a late outlier), and starting it at the first block that has
  // an unmasked entry (leading masked blocks, mostly masked rows).
  test.each(DTYPES)('%s: rising rows, late outliers and masked runs match the reference', async (dtype) => {
    const rows = 5;
    const vocab = 3 * 2048 + 77;
    const rand = mulberry32(2048);
    const values = new Float64Array(rows * vocab);
    for (let j = 0; j < vocab; j++) {
      const noise = (): number => 3 * gaussian(rand);
      values[j] = (60 * j) / vocab - 30 + 0.1 * noise();
      values[vocab + j] = j < 2.5 * 2048 ? -Infinity : noise();
      values[2 * vocab + j] = j === vocab - 100 ? 150 : noise();
      values[3 * vocab + j] = rand() < 0.9 ? -Infinity : noise();
      values[4 * vocab + j] = j % 2048 === 5 ? 40 * (j >> 11) : noise();
    }
    values[3 * vocab + 17] = 1; // the chosen id below is not masked
    const rand2 = mulberry32(7);
    const grads = (): Float32Array => Float32Array.from({ length: rows }, () => gaussian(rand2));
    const inputs: Inputs = {
      logits: toDType(dtype, values), ids: Int32Array.from([vocab - 1, vocab - 5, vocab - 100, 17, 2048 + 5]),
      gLogprob: grads(), gSelfCertainty: grads(),
    };
    const { got, want, out, wantGrad } = await runBoth(dtype, rows, vocab, inputs);
    expectForward(`${dtype} shaped rows`, got, want);
    expect(Array.from(got.logsumexp).every(isFinite)).toBe(true);
    expectWritten('backward', out, POISON_BITS);
    expectClose(`${dtype} shaped rows backward`, out, wantGrad, TOLERANCES.tokenStatsBackward);
  });

  test('any thread count gives the same statistics within tolerance', async () => {
    const rows = 3;
    const vocab = 151936;
    const inputs = makeInputs('f32', rows, vocab, 3);
    const expected = await reference.run('f32', rows, vocab, inputs);
    for (const threads of [1, 2, 3, 8]) {
      const { got, want, out, wantGrad } = await runBoth('f32', rows, vocab, inputs, threads, expected);
      expectForward(`threads=${threads}`, got, want);
      expectClose(`threads=${threads} backward`, out, wantGrad, TOLERANCES.tokenStatsBackward);
    }
  });

  test('backward may overwrite f32 logits in place', async () => {
    // 3 rows < 4 per thread: each row is cut into chunks; row 1's chosen id is masked, so its
    // one-hot term needs the logit after the kernel has overwritten it.
    const rows = 3;
    const vocab = 50_000;
    const { logits, ids, gLogprob, gSelfCertainty } = makeInputs('f32', rows, vocab, 11);
    const stats = await nativeForward({ dtype: 'f32', logits, rows, vocab, ids, invTemperature: INV_T });
    const args = { dtype: 'f32' as const, rows, vocab, ids, invTemperature: INV_T, logsumexp: stats.logsumexp, validCount: stats.validCount, gLogprob, gSelfCertainty };
    const out = poisonedOut(rows * vocab);
    await nativeBackward({ ...args, logits, out });
    const inPlace = (logits as Float32Array).slice();
    await nativeBackward({ ...args, logits: inPlace, out: inPlace });
    expect(Buffer.from(inPlace.buffer).equals(Buffer.from(out.buffer))).toBe(true);
  });

  test('views at a byte offset and on a SharedArrayBuffer read the same numbers', async () => {
    const rows = 3;
    const vocab = 1001;
    const { logits, ids } = makeInputs('bf16', rows, vocab, 21);
    const plain = await nativeForward({ dtype: 'bf16', logits, rows, vocab, ids, invTemperature: INV_T });
    const offset = new Uint16Array(rows * vocab + 3);
    offset.set(logits, 3);
    const shared = new Uint16Array(new SharedArrayBuffer(2 * rows * vocab));
    shared.set(logits);
    for (const view of [offset.subarray(3), shared]) {
      const got = await nativeForward({ dtype: 'bf16', logits: view, rows, vocab, ids, invTemperature: INV_T });
      expect(Array.from(got.logsumexp)).toEqual(Array.from(plain.logsumexp));
      expect(Array.from(got.entropy)).toEqual(Array.from(plain.entropy));
    }
  });

  test('empty shapes: no rows, or rows without entries (NaN, validCount 0)', async () => {
    const none = await nativeForward({ dtype: 'bf16', logits: new Uint16Array(0), rows: 0, vocab: 7, ids: new Int32Array(0), invTemperature: 1 });
    expect(none.logsumexp.length).toBe(0);
    const empty = await nativeForward({ dtype: 'f32', logits: new Float32Array(0), rows: 2, vocab: 0, ids: null, invTemperature: 1 });
    expect(Array.from(empty.validCount)).toEqual([0, 0]);
    expect(Array.from(empty.entropy).every(isNaN)).toBe(true);
    expectWritten('entropy', empty.entropy, POISON_BITS);
    expect(empty.logprob).toBeNull();
  });

  test('backward matches central finite differences of the reference forward', async () => {
    const rows = 3;
    const vocab = 37;
    const rand = mulberry32(37);
    const z = Float32Array.from({ length: rows * vocab }, () => 3 * gaussian(rand));
    z[1 * vocab + 5] = -Infinity;
    const ids = Int32Array.from([4, 17, 36]);
    const gLogprob = Float32Array.from([0.7, -1.3, 0.25]);
    const gSelfCertainty = Float32Array.from([-0.4, 0.9, 1.6]);
    const stats = await nativeForward({ dtype: 'f32', logits: z, rows, vocab, ids, invTemperature: INV_T });
    const out = poisonedOut(rows * vocab);
    await nativeBackward({
      dtype: 'f32', logits: z, rows, vocab, ids, invTemperature: INV_T, logsumexp: stats.logsumexp, validCount: stats.validCount,
      gLogprob, gSelfCertainty, out,
    });
    // The reference reads 'f32' data by index, so a Float64Array feeds it unrounded perturbations.
    const loss = (values: Float64Array): number => {
      const f = referenceForward('f32', values as unknown as Float32Array, rows, vocab, ids, TEMPERATURE);
      let sum = 0;
      for (let r = 0; r < rows; r++) sum += gLogprob[r]! * f.logprob![r]! + gSelfCertainty[r]! * f.selfCertainty[r]!;
      return sum;
    };
    const h = 1e-5;
    const base = Float64Array.from(z);
    const numeric = new Float64Array(rows * vocab);
    for (let i = 0; i < numeric.length; i++) {
      if (base[i] === -Infinity) continue; // masked: the loss does not depend on it (the id is not masked)
      const plus = base.slice();
      const minus = base.slice();
      plus[i] = plus[i]! + h;
      minus[i] = minus[i]! - h;
      numeric[i] = (loss(plus) - loss(minus)) / (2 * h);
    }
    expectWritten('backward', out, POISON_BITS);
    expectClose('backward vs finite differences', out, numeric, TOLERANCES.finiteDifferences);
  });

  test('the event loop keeps turning while a 64 × 151936 call runs', async () => {
    const rows = 64;
    const vocab = 151936;
    const rand = mulberry32(64);
    const logits = new Float32Array(rows * vocab);
    for (let i = 0; i < logits.length; i++) logits[i] = 6 * rand() - 3;
    const ids = Int32Array.from({ length: rows }, (_, r) => (r * 2381) % vocab);
    const ticking = async <T>(call: () => Promise<T>): Promise<{ value: T; ticks: number }> => {
      let ticks = 0;
      let running = true;
      const tick = (): void => {
        ticks++;
        if (running) setImmediate(tick);
      };
      setImmediate(tick);
      const value = await call();
      running = false;
      return { value, ticks };
    };
    const forward = await ticking(() => nativeForward({ dtype: 'f32', logits, rows, vocab, ids, invTemperature: INV_T, threads: 1 }));
    // A call that blocked the loop would resolve (as a microtask) before any immediate ran.
    expect(forward.ticks).toBeGreaterThan(0);
    expect(forward.value.logsumexp.every(isFinite)).toBe(true);
    const out = poisonedOut(rows * vocab);
    const backward = await ticking(() => nativeBackward({
      dtype: 'f32', logits, rows, vocab, ids, invTemperature: INV_T, logsumexp: forward.value.logsumexp, validCount: forward.value.validCount,
      gLogprob: new Float32Array(rows).fill(1), gSelfCertainty: new Float32Array(rows).fill(1), out, threads: 1,
    }));
    expect(backward.ticks).toBeGreaterThan(0);
    expectWritten('backward', out, POISON_BITS);
  });

  describe('argument checks in C++', () => {
    const rows = 2;
    const vocab = 10;
    const logits = new Float32Array(rows * vocab);
    const ids = Int32Array.from([0, 9]);
    const forwardArgs = { dtype: 'f32' as const, logits, rows, vocab, ids, invTemperature: 1 };
    const backwardArgs = {
      ...forwardArgs, logsumexp: new Float32Array(rows), validCount: new Uint32Array(rows).fill(vocab),
      gLogprob: new Float32Array(rows), gSelfCertainty: null, out: new Float32Array(rows * vocab),
    };
    // Errors made by the addon come from the main realm; compare by name, not by instanceof.
    const rejectsWith = async (promise: Promise<unknown>, name: string, message: RegExp): Promise<void> => {
      const error = await promise.then(() => null, (e: unknown) => e as Error);
      expect(error).not.toBeNull();
      expect(error!.name).toBe(name);
      expect(error!.message).toMatch(message);
    };

    test('length mismatches are TypeErrors', async () => {
      await rejectsWith(nativeForward({ ...forwardArgs, logits: logits.subarray(1) }), 'TypeError', /logits: expected Float32Array of length 20/);
      await rejectsWith(nativeForward({ ...forwardArgs, rows: 3 }), 'TypeError', /logits/);
      await rejectsWith(nativeForward({ ...forwardArgs, ids: new Int32Array(1) }), 'TypeError', /ids: expected Int32Array of length 2/);
      await rejectsWith(nativeBackward({ ...backwardArgs, out: new Float32Array(19) }), 'TypeError', /out: expected Float32Array of length 20/);
      await rejectsWith(nativeBackward({ ...backwardArgs, logsumexp: new Float32Array(3) }), 'TypeError', /logsumexp/);
      await rejectsWith(nativeBackward({ ...backwardArgs, validCount: new Uint32Array(1) }), 'TypeError', /validCount/);
      await rejectsWith(nativeBackward({ ...backwardArgs, gLogprob: new Float32Array(1) }), 'TypeError', /gLogprob/);
    });

    test('wrong array kinds and dtypes are TypeErrors; ids out of range are RangeErrors', async () => {
      await rejectsWith(nativeForward({ ...forwardArgs, dtype: 'f16' }), 'TypeError', /logits: expected Uint16Array/);
      await rejectsWith(nativeForward({ ...forwardArgs, dtype: 'f64' as DType }), 'TypeError', /dtype/);
      await rejectsWith(nativeForward({ ...forwardArgs, rows: 1.5 }), 'TypeError', /rows/);
      await rejectsWith(nativeForward({ ...forwardArgs, threads: -1 }), 'TypeError', /threads/);
      await rejectsWith(nativeBackward({ ...backwardArgs, validCount: new Int32Array(rows) as unknown as Uint32Array }), 'TypeError', /validCount: expected Uint32Array/);
      await rejectsWith(nativeForward({ ...forwardArgs, ids: Int32Array.from([0, 10]) }), 'RangeError', /ids\[1\] = 10 is outside \[0, 10\)/);
      await rejectsWith(nativeBackward({ ...backwardArgs, ids: Int32Array.from([-1, 0]) }), 'RangeError', /ids\[0\] = -1/);
    });
  });

  // Every kernel set this machine has: the best one runs in this process; the others are forced in
  // a child process through INTUITOR_NATIVE_SIMD (avx2 falls back to scalar without AVX2).
  const FORCED: [string, (best: string) => string][] = [
    ['scalar', () => 'scalar'],
    ['avx2', (best) => (best === 'scalar' ? 'scalar' : 'avx2+fma')],
  ];
  test.each(FORCED)('INTUITOR_NATIVE_SIMD=%s: the kernels it selects match the reference', (forced, expectedSimd) => {
    const best = nativeStatus();
    if (!best.loaded) throw new Error('native addon not loaded');
    const rows = 4;
    const vocab = 4099;
    const addonUrl = new URL('../../src/native/addon.js', import.meta.url).href;
    // The child runs both passes for each dtype and prints the results as base64 float32/uint32.
    const child = `
      import { nativeStatus, nativeForward, nativeBackward } from ${JSON.stringify(addonUrl)};
      const chunks = [];
      for await (const c of process.stdin) chunks.push(c);
      const jobs = JSON.parse(Buffer.concat(chunks).toString());
      const from = (b64, Type) => new Type(new Uint8Array(Buffer.from(b64, 'base64')).buffer);
      const to = (a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
      const results = [];
      for (const job of jobs) {
        const logits = from(job.logits, job.dtype === 'f32' ? Float32Array : Uint16Array);
        const ids = from(job.ids, Int32Array);
        const f = await nativeForward({ dtype: job.dtype, logits, rows: job.rows, vocab: job.vocab, ids, invTemperature: job.invT });
        const out = new Float32Array(job.rows * job.vocab);
        await nativeBackward({ dtype: job.dtype, logits, rows: job.rows, vocab: job.vocab, ids, invTemperature: job.invT,
          logsumexp: from(job.logsumexp, Float32Array), validCount: from(job.validCount, Uint32Array),
          gLogprob: from(job.gLogprob, Float32Array), gSelfCertainty: from(job.gSelfCertainty, Float32Array), out });
        results.push({ lse: to(f.logsumexp), sc: to(f.selfCertainty), ent: to(f.entropy), lp: to(f.logprob), vc: to(f.validCount), out: to(out) });
      }
      console.log(JSON.stringify({ simd: nativeStatus().simd, results }));
    `;
    const b64 = (a: ArrayBufferView): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
    const cases = DTYPES.map((dtype, k) => {
      const inputs = makeInputs(dtype, rows, vocab, 100 + k);
      if (dtype === 'f32') (inputs.logits as Float32Array)[2 * vocab + 7] = NaN;
      const want = referenceForward(dtype, inputs.logits, rows, vocab, inputs.ids, TEMPERATURE);
      const logsumexp = Float32Array.from(want.logsumexp);
      const wantGrad = referenceBackward(dtype, inputs.logits, rows, vocab, inputs.ids, TEMPERATURE, logsumexp, want.validCount,
        inputs.gLogprob, inputs.gSelfCertainty);
      const job = {
        dtype, rows, vocab, invT: INV_T, logits: b64(inputs.logits), ids: b64(inputs.ids), logsumexp: b64(logsumexp),
        validCount: b64(want.validCount), gLogprob: b64(inputs.gLogprob), gSelfCertainty: b64(inputs.gSelfCertainty),
      };
      return { dtype, want, wantGrad, job };
    });
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', child], {
      input: JSON.stringify(cases.map((c) => c.job)), env: { ...process.env, INTUITOR_NATIVE_SIMD: forced }, encoding: 'utf8',
    });
    expect(run.stderr).toBe('');
    const { simd, results } = JSON.parse(run.stdout) as { simd: string; results: Record<string, string>[] };
    expect(simd).toBe(expectedSimd(best.simd));
    // Copied out of Buffer's pool, whose offsets need not be aligned for a Float32Array.
    const from = <T>(text: string, Type: new (b: ArrayBuffer) => T): T => new Type(new Uint8Array(Buffer.from(text, 'base64')).buffer as ArrayBuffer);
    cases.forEach(({ dtype, want, wantGrad }, k) => {
      const r = results[k]!;
      expectForward(`${simd} ${dtype}`, {
        logsumexp: from(r.lse!, Float32Array), selfCertainty: from(r.sc!, Float32Array), entropy: from(r.ent!, Float32Array),
        logprob: from(r.lp!, Float32Array), validCount: from(r.vc!, Uint32Array),
      }, want);
      expectClose(`${simd} ${dtype} backward`, from(r.out!, Float32Array), wantGrad, TOLERANCES.tokenStatsBackward);
    });
  });
});
