/**
 * Token statistics on every backend and dtype against the float64 reference, the Hugging Face
 * fixture and finite differences. Outputs are poisoned before each run (POISON_BITS), so an
 * element a kernel forgot to write fails the comparison.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DTYPES, elementReader, encode, type DType, type HostArray } from '../../src/dtype.js';
import { InvalidArgumentError } from '../../src/errors.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { parseNpy } from '../../src/io/npy.js';
import {
  POISON_BITS, tokenStats, tokenStatsBackward, tokenStatsBackwardGpu, tokenStatsGpu, type ResolvedBackend, type TokenStatsOptions,
} from '../../src/ops/token-stats.js';
import { referenceBackward, referenceForward } from '../../src/ops/token-stats/reference.js';
import { FIXTURES, SKIP_GPU, SKIP_NATIVE, fixtureNextToken, makeLogits, openGpu, requireNative } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

const SHAPES: { rows: number; vocab: number; path: string }[] = [
  { rows: 1, vocab: 1, path: 'one element: head only, no aligned body' },
  { rows: 3, vocab: 5, path: 'rows straddle 16-byte units: head + tail per row' },
  { rows: 7, vocab: 1023, path: 'one chunk per row, odd V: unaligned starts, remainder loop' },
  { rows: 5, vocab: 151936, path: "Qwen2.5's V, few rows: each row split into chunks, partials combined" },
  { rows: 2, vocab: 1000003, path: 'V > 10^6, prime: many chunks per row, 4-deep unrolled body' },
];
const TEMPERATURE = 0.7;

const backends: ResolvedBackend[] = ['js', ...(SKIP_NATIVE ? [] : ['native' as const]), ...(SKIP_GPU ? [] : ['webgpu' as const])];
let gpu: GpuContext | null = null;

beforeAll(async () => {
  if (!SKIP_NATIVE) requireNative();
  if (!SKIP_GPU) gpu = await openGpu();
});
afterAll(() => gpu?.close());

function options(backend: ResolvedBackend): TokenStatsOptions {
  return { backend, context: gpu ?? undefined, poisonOutputs: true };
}

function expectNoPoison(what: string, values: Float32Array | Uint32Array): void {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const at = bits.indexOf(POISON_BITS);
  if (at >= 0) throw new Error(`${what}: element ${at} was never written`);
}

describe.each(backends)('token statistics, %s backend', (backend) => {
  // The js backend is the reference itself: run it only where it is cheap, to test its plumbing.
  const shapes = backend === 'js' ? SHAPES.slice(0, 3) : SHAPES;
  describe.each([...DTYPES])('%s', (dtype: DType) => {
    test.each(shapes)('forward and backward at ($rows, $vocab): $path', async ({ rows, vocab }) => {
      const { logits, ids } = makeLogits({ rows, vocab, dtype, seed: rows * 7919 + vocab, outliers: true, masked: vocab > 4 });
      const got = await tokenStats({ logits, shape: [rows, vocab], dtype, ids, temperature: TEMPERATURE }, options(backend));
      expect(got.backend).toBe(backend);
      expect(got.shape).toEqual([rows]);
      const want = referenceForward(dtype, logits, rows, vocab, ids, TEMPERATURE);
      for (const key of ['logsumexp', 'selfCertainty', 'entropy', 'logprob'] as const) {
        expectNoPoison(key, got[key]!);
        expectClose(`${backend}/${dtype} ${key}`, got[key]!, want[key]!, TOLERANCES.tokenStatsForward);
      }
      expect(Array.from(got.validCount)).toEqual(Array.from(want.validCount));

      const gLogprob = Float32Array.from({ length: rows }, (_, r) => 0.5 - r * 0.25);
      const gSelfCertainty = Float32Array.from({ length: rows }, (_, r) => 1 + r);
      const grad = await tokenStatsBackward({
        logits, shape: [rows, vocab], dtype, ids, temperature: TEMPERATURE,
        logsumexp: got.logsumexp, validCount: got.validCount, gLogprob, gSelfCertainty,
      }, options(backend));
      expectNoPoison('grad', grad);
      const wantGrad = referenceBackward(dtype, logits, rows, vocab, ids, TEMPERATURE, want.logsumexp, want.validCount, gLogprob, gSelfCertainty);
      expectClose(`${backend}/${dtype} grad`, grad, wantGrad, TOLERANCES.tokenStatsBackward);
    });
  });

  test.each([...DTYPES])('%s: one finite entry (V = 1, or the rest −inf) gives self-certainty and entropy of exactly 0', async (dtype) => {
    // V = 1; then V = 5, a row with one finite entry (the chosen one) above a row with four.
    for (const [vocab, rows, values] of [[1, 1, [2.75]], [5, 2, [-Infinity, 2.75, -Infinity, -Infinity, -Infinity, -1.5, 0.25, -Infinity, 0.5, 1]]] as const) {
      const logits = encode(dtype, values);
      const got = await tokenStats({ logits, shape: [rows, vocab], dtype, ids: new Array<number>(rows).fill(vocab === 1 ? 0 : 1), temperature: TEMPERATURE }, options(backend));
      expect([got.selfCertainty[0], got.entropy[0]]).toEqual([0, 0]);
      expect(got.logprob![0]).toBeCloseTo(0, 6);
    }
  });

  // V = 37: one chunk per row; V = 50021: each row split into chunks on webgpu and native (the bad
  // entry sits in a late chunk, so it reaches the row's result through the combination of partials).
  describe.each([...DTYPES])('%s', (dtype: DType) => {
    test.each([37, 50021])('rows with NaN, +inf or only −inf are NaN and leave the other rows exact (V = %d)', async (vocab) => {
      const rows = 6;
      const { logits, ids } = makeLogits({ rows, vocab, dtype, seed: 99 + vocab });
      const bad = logits.slice();
      const [nan, inf, minusInf] = encode(dtype, [NaN, Infinity, -Infinity]);
      const late = vocab - 7;
      bad[1 * vocab + late] = nan!;
      bad[2 * vocab + late] = inf!;
      bad.fill(minusInf!, 3 * vocab, 4 * vocab);
      bad[4 * vocab + ids[4]!] = minusInf!; // chosen token masked: logprob −inf, the rest finite
      const got = await tokenStats({ logits: bad, shape: [rows, vocab], dtype, ids }, options(backend));
      for (const key of ['logsumexp', 'selfCertainty', 'entropy', 'logprob'] as const) {
        expectNoPoison(key, got[key]!);   // POISON_BITS is itself a NaN: the bad rows must have been written
        for (const r of [1, 2, 3]) expect(got[key]![r]).toBeNaN();
      }
      expect(got.logprob![4]).toBe(-Infinity);
      expect(Number.isFinite(got.selfCertainty[4]!)).toBe(true);
      const want = referenceForward(dtype, logits, rows, vocab, ids, 1);
      for (const r of [0, 5]) {
        for (const key of ['logsumexp', 'selfCertainty', 'entropy', 'logprob'] as const) {
          expectClose(`${backend}/${dtype} ${key} row ${r}`, [got[key]![r]!], [want[key]![r]!], TOLERANCES.tokenStatsForward);
        }
      }
      const ones = new Float32Array(rows).fill(1);
      const grad = await tokenStatsBackward({ logits: bad, shape: [rows, vocab], dtype, ids, temperature: 1, logsumexp: got.logsumexp, validCount: got.validCount,
        gLogprob: ones, gSelfCertainty: ones }, options(backend));
      expectNoPoison('grad', grad);
      expect(grad.subarray(vocab, 4 * vocab).every(Number.isNaN)).toBe(true);
      // Valid rows, the one whose chosen entry is masked included, match the reference exactly as usual.
      const ref = referenceForward(dtype, bad, rows, vocab, ids, 1);
      const wantGrad = referenceBackward(dtype, bad, rows, vocab, ids, 1, ref.logsumexp, ref.validCount, ones, ones);
      for (const r of [0, 4, 5]) {
        expectClose(`${backend}/${dtype} grad row ${r}`, grad.subarray(r * vocab, (r + 1) * vocab), wantGrad.subarray(r * vocab, (r + 1) * vocab), TOLERANCES.tokenStatsBackward);
      }
    });
  });

  test('backward matches central finite differences of the float64 forward', async () => {
    const rows = 3;
    const vocab = 37;
    const { logits, ids } = makeLogits({ rows, vocab, dtype: 'f32', seed: 5, masked: true });
    const a = [0.7, -1.3, 0.4];
    const b = [1.1, 0.6, -0.9];
    // L = Σ_r a_r·logprob_r + b_r·selfCertainty_r, evaluated in float64 on the f32-rounded logits.
    const loss = (values: Float64Array): number => {
      const r = referenceForward('f32', values as unknown as HostArray, rows, vocab, ids, TEMPERATURE);
      let sum = 0;
      for (let i = 0; i < rows; i++) sum += a[i]! * r.logprob![i]! + b[i]! * r.selfCertainty[i]!;
      return sum;
    };
    const x = Float64Array.from(logits as Float32Array);
    const numeric = new Float64Array(x.length);
    const h = 1e-5;
    for (let j = 0; j < x.length; j++) {
      if (x[j] === -Infinity) continue; // masked entries: the derivative is the one-hot term, 0 here
      const keep = x[j]!;
      x[j] = keep + h;
      const up = loss(x);
      x[j] = keep - h;
      const down = loss(x);
      x[j] = keep;
      numeric[j] = (up - down) / (2 * h);
    }
    const fwd = await tokenStats({ logits, shape: [rows, vocab], ids, temperature: TEMPERATURE }, options(backend));
    const grad = await tokenStatsBackward({ logits, shape: [rows, vocab], ids, temperature: TEMPERATURE, logsumexp: fwd.logsumexp,
      validCount: fwd.validCount, gLogprob: Float32Array.from(a), gSelfCertainty: Float32Array.from(b) }, options(backend));
    expectClose(`${backend} grad vs finite differences`, grad, numeric, TOLERANCES.finiteDifferences);
  });

  test('matches the Hugging Face fixture (tiny-qwen2 next-token statistics)', async () => {
    const dir = join(FIXTURES, 'tiny-qwen2');
    const load = (name: string) => parseNpy(readFileSync(join(dir, name)), name);
    const logits64 = load('ref_logits_f64.npy');
    const { logits, ids, shape } = fixtureNextToken(logits64 as { shape: number[]; data: Float64Array }, load('ref_input_ids.npy').data as Int32Array);
    const got = await tokenStats({ logits, shape, ids }, options(backend));
    expect(got.shape).toEqual(shape.slice(0, -1));
    expectClose('logprob', got.logprob!, load('ref_next_logprob.npy').data as Float64Array, TOLERANCES.fixture);
    expectClose('selfCertainty', got.selfCertainty, load('ref_self_certainty.npy').data as Float64Array, TOLERANCES.fixture);
    expectClose('entropy', got.entropy, load('ref_entropy.npy').data as Float64Array, TOLERANCES.fixture);
  });

  // The fixture's logits rounded to 16 bits: each statistic stays within what the rounding explains,
  // to first order (×2 for the rest), per row: with δ = max_j |round(z_j) − z_j|, logsumexp moves by
  // ≤ δ, so logprob and self-certainty (a difference of two such terms) by ≤ 2δ; entropy
  // H = lse − Σ p z moves by Σ_j p_j |z_j − E_p z| · δ ≤ σ_p(z) · δ.
  test.each(['f16', 'bf16'] as const)('matches the Hugging Face fixture from %s logits, within their rounding', async (dtype) => {
    const dir = join(FIXTURES, 'tiny-qwen2');
    const load = (name: string) => parseNpy(readFileSync(join(dir, name)), name);
    const { logits, ids, shape } = fixtureNextToken(load('ref_logits_f64.npy') as { shape: number[]; data: Float64Array }, load('ref_input_ids.npy').data as Int32Array);
    const rounded = encode(dtype, logits);
    const got = await tokenStats({ logits: rounded, shape, dtype, ids }, options(backend));
    const vocab = shape[2]!;
    const read = elementReader(dtype, rounded);
    const want = { logprob: load('ref_next_logprob.npy').data, selfCertainty: load('ref_self_certainty.npy').data, entropy: load('ref_entropy.npy').data };
    for (let r = 0; r < ids.length; r++) {
      let delta = 0;
      let max = -Infinity;
      for (let j = 0; j < vocab; j++) {
        delta = Math.max(delta, Math.abs(read(r * vocab + j) - logits[r * vocab + j]!));
        max = Math.max(max, logits[r * vocab + j]!);
      }
      let [sum, mean, square] = [0, 0, 0];
      for (let j = 0; j < vocab; j++) {
        const z = logits[r * vocab + j]!;
        const e = Math.exp(z - max);
        [sum, mean, square] = [sum + e, mean + e * z, square + e * z * z];
      }
      const sigma = Math.sqrt(Math.max(0, square / sum - (mean / sum) ** 2));
      const bounds = { logprob: 2 * 2 * delta, selfCertainty: 2 * 2 * delta, entropy: 2 * sigma * delta };
      for (const key of ['logprob', 'selfCertainty', 'entropy'] as const) {
        const error = Math.abs(got[key]![r]! - Number(want[key][r]));
        if (!(error <= bounds[key] + TOLERANCES.fixture.atol)) throw new Error(`${dtype} ${key} row ${r}: off by ${error}, rounding bound ${bounds[key]}`);
      }
    }
  });
});

describe('bad input is refused at the boundary, naming the argument', () => {
  const logits = new Float32Array(6);
  const cases: [string, Parameters<typeof tokenStats>[0], RegExp][] = [
    ['id out of range', { logits, shape: [2, 3], ids: [0, 3] }, /ids\[1\]: expected an integer in \[0, 3\), got 3/],
    ['negative id', { logits, shape: [2, 3], ids: [-1, 0] }, /ids\[0\]: expected an integer in \[0, 3\), got -1/],
    ['ids count differs from rows', { logits, shape: [2, 3], ids: [0] }, /ids: expected one id per row \(2\), got 1 ids/],
    ['empty vocabulary', { logits: new Float32Array(0), shape: [2, 0] }, /shape: expected a vocabulary axis/],
    ['unknown dtype', { logits, shape: [2, 3], dtype: 'f8' as DType }, /dtype: expected one of f32, f16, bf16, got "f8"/],
    ['dtype storage mismatch', { logits, shape: [2, 3], dtype: 'bf16' }, /logits: expected Uint16Array for dtype bf16, got Float32Array/],
    ['size mismatch', { logits, shape: [4, 3] }, /logits: expected 12 elements for shape \[4, 3\], got 6/],
    ['temperature 0', { logits, shape: [2, 3], temperature: 0 }, /temperature: expected a finite number > 0, got 0/],
    ['temperature NaN', { logits, shape: [2, 3], temperature: NaN }, /temperature: expected a finite number > 0, got NaN/],
    ['temperature inf', { logits, shape: [2, 3], temperature: Infinity }, /temperature: expected a finite number > 0, got Infinity/],
  ];
  test.each(cases)('%s', async (_name, args, message) => {
    const call = tokenStats(args, { backend: 'js' });
    await expect(call).rejects.toThrow(InvalidArgumentError);
    await expect(tokenStats(args, { backend: 'js' })).rejects.toThrow(message);
  });

  test('unknown backend lists the choices', async () => {
    await expect(tokenStats({ logits, shape: [2, 3] }, { backend: 'cuda' as 'js' })).rejects.toThrow(/backend: expected auto \| webgpu \| native \| js, got "cuda"/);
  });

  test('backward needs ids for gLogprob and row-sized saved tensors', async () => {
    const base = { logits, shape: [2, 3], temperature: 1, logsumexp: new Float32Array(2), validCount: new Uint32Array([3, 3]) };
    await expect(tokenStatsBackward({ ...base, gLogprob: new Float32Array(2) }, { backend: 'js' })).rejects.toThrow(/ids: expected chosen ids when gLogprob is given/);
    await expect(tokenStatsBackward({ ...base, logsumexp: new Float32Array(3) }, { backend: 'js' })).rejects.toThrow(/logsumexp: expected 2 values \(one per row\), got 3/);
    const { temperature: _forwardTemperature, ...withoutTemperature } = base;
    await expect(tokenStatsBackward(withoutTemperature as typeof base, { backend: 'js' })).rejects.toThrow(/temperature: expected the forward's temperature .*, got undefined/);
  });
});

(SKIP_GPU ? describe.skip : describe)('webgpu specifics', () => {
  test('logits larger than one binding are split across dispatches (and the shared-memory reduction variant)', async () => {
    const small = await openGpu({ maxBindingBytes: 64 * 1024, useSubgroups: false });
    expect(small.variant.subgroups).toBe(false);
    try {
      for (const dtype of DTYPES) {
        const rows = 3;
        const vocab = 100003;
        const { logits, ids } = makeLogits({ rows, vocab, dtype, seed: 3, outliers: true, masked: true });
        const got = await tokenStats({ logits, shape: [rows, vocab], dtype, ids }, { backend: 'webgpu', context: small, poisonOutputs: true });
        const want = referenceForward(dtype, logits, rows, vocab, ids, 1);
        expectClose(`split ${dtype} selfCertainty`, got.selfCertainty, want.selfCertainty, TOLERANCES.tokenStatsForward);
        expectClose(`split ${dtype} logprob`, got.logprob!, want.logprob!, TOLERANCES.tokenStatsForward);
        const grad = await tokenStatsBackward({ logits, shape: [rows, vocab], dtype, ids, temperature: 1, logsumexp: got.logsumexp, validCount: got.validCount,
          gSelfCertainty: new Float32Array(rows).fill(1) }, { backend: 'webgpu', context: small, poisonOutputs: true });
        expectClose(`split ${dtype} grad`, grad, referenceBackward(dtype, logits, rows, vocab, ids, 1, want.logsumexp, want.validCount, null, new Float32Array(rows).fill(1)), TOLERANCES.tokenStatsBackward);
      }
    } finally {
      small.close();
    }
  });

  test('GPU-resident inputs and outputs: a trainer passes its own buffers and keeps results on the GPU', async () => {
    const ctx = gpu!;
    const rows = 4;
    const vocab = 999;
    const { logits, ids } = makeLogits({ rows, vocab, dtype: 'bf16', seed: 11 });
    const logitsBuffer = ctx.upload('test:logits', logits);
    const idsBuffer = ctx.upload('test:ids', new Uint32Array(ids));
    const stats = await tokenStatsGpu(ctx, { logits: logitsBuffer, shape: [rows, vocab], dtype: 'bf16', ids: idsBuffer });
    const lse = new Float32Array(await ctx.read('test', stats.logsumexp, rows * 4));
    const want = referenceForward('bf16', logits, rows, vocab, ids, 1);
    expectClose('gpu-resident logsumexp', lse, want.logsumexp, TOLERANCES.tokenStatsForward);
    const grad = await tokenStatsBackwardGpu(ctx, { logits: logitsBuffer, shape: [rows, vocab], dtype: 'bf16', ids: idsBuffer, temperature: 1,
      logsumexp: stats.logsumexp, validCount: stats.validCount, gLogprob: ctx.upload('test:g', new Float32Array(rows).fill(1)) });
    const g = new Float32Array(await ctx.read('test', grad, rows * vocab * 4));
    expectClose('gpu-resident grad', g, referenceBackward('bf16', logits, rows, vocab, ids, 1, want.logsumexp, want.validCount, new Float32Array(rows).fill(1), null), TOLERANCES.tokenStatsBackward);
    for (const b of [logitsBuffer, idsBuffer, stats.logsumexp, stats.selfCertainty, stats.entropy, stats.logprob!, stats.validCount, grad]) b.destroy();
  });

  test('host inputs with backend webgpu need no context argument (one is opened and closed)', async () => {
    const got = await tokenStats({ logits: new Float32Array([1, 2, 3]), shape: [1, 3] }, { backend: 'webgpu' });
    expect(got.logsumexp[0]).toBeCloseTo(Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3)), 5);
  });
});
