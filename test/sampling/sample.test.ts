/**
 * kernels/sample.wgsl: draws against the float64 distribution (chi-square), against the float64
 * replay of the same Philox stream (exact ids), greedy ties, −inf entries, reproducibility and
 * independence from the batch, a Qwen2-size vocabulary, and the reference itself by hand.
 */
import { POISON_BITS } from '../../src/dtype.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { checkSamplingOptions, philox2x32, prepareSample, referenceSampleDraw, referenceSamplingDistribution, sample, type SamplingOptions } from '../../src/sampling/sample.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';

/** Draws per chi-square case: every kept token's expected count is checked to be ≥ 5. */
const DRAWS = 4000;
/** A fixed seed set makes each case deterministic; this level would make a fresh one flaky 1 time in 10^4. */
const SIGNIFICANCE = 1e-4;
const NEG = -Infinity;

/** ln Γ(x), Lanczos (g = 7, n = 9), x > 0. */
function lnGamma(x: number): number {
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  x -= 1;
  let a = c[0]!;
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += c[i]! / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

/** P(χ²_df ≥ stat): the regularized upper incomplete gamma Q(df/2, stat/2) (series or continued fraction). */
function chiSquareSurvival(stat: number, df: number): number {
  const a = df / 2;
  const x = stat / 2;
  if (x <= 0) return 1;
  const front = Math.exp(-x + a * Math.log(x) - lnGamma(a));
  if (x < a + 1) {
    let term = 1 / a;
    let sum = term;
    for (let n = 1; n < 1000 && term > sum * 1e-15; n++) sum += term *= x / (a + n);
    return 1 - sum * front;
  }
  let b = x + 1 - a;
  let c = 1e300;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 1000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    c = b + an / c;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-15) break;
  }
  return front * h;
}

function seedsFor(count: number, salt: number): Uint32Array {
  const rand = mulberry32(salt);
  return Uint32Array.from({ length: count }, () => Math.floor(rand() * 2 ** 32));
}

function tile(row: readonly number[], rows: number): Float32Array {
  const out = new Float32Array(rows * row.length);
  for (let r = 0; r < rows; r++) out.set(row, r * row.length);
  return out;
}

const L7 = [1.2, -0.3, 0.5, 2.0, -1.0, 0.0, 0.8];
const L10 = [0.3, 2.1, -0.5, 1.7, 0.9, -2.0, 1.1, 2.4, 0.0, -0.8];
/** V = 515: six large entries spread over the three strides of 256, 509 zeros (≈ 3% of the mass at T = 1). */
const SPREAD = Array.from({ length: 515 }, (_, j) => ({ 3: 8, 255: 7.6, 256: 7.9, 400: 7.2, 511: 8.1, 514: 7.5 })[j] ?? 0);

type DistributionCase = [name: string, logits: readonly number[], options: SamplingOptions, path: string];

const DISTRIBUTION_CASES: DistributionCase[] = [
  ['T = 1', L7, { temperature: 1 }, 'no cuts: only the Gumbel draw'],
  ['T = 0.7', L7, { temperature: 0.7 }, 'sharper'],
  ['T = 1.5', L7, { temperature: 1.5 }, 'flatter'],
  ['top-k 3', L7, { temperature: 1, topK: 3 }, 'count select, distinct values'],
  ['top-k 2, three ties at the 2nd value', [2, 1, 1, 1, 0, -1, 0.5], { temperature: 1, topK: 2 }, 'ties with the k-th stay: 4 kept'],
  ['top-p 0.8', L7, { temperature: 1, topP: 0.8 }, 'mass select over the whole row'],
  ['top-p 0.55 after T = 2', [Math.log(4), Math.log(2), 0], { temperature: 2, topP: 0.55 }, 'temperature before top-p: 2 kept (1 were T applied after)'],
  ['min-p 0.2', L7, { temperature: 1, minP: 0.2 }, 'exp(z) ≥ minP'],
  ['combined', L10, { temperature: 0.8, topK: 6, topP: 0.9, minP: 0.05 }, 'top-p renormalised over the top-k survivors'],
  ['−inf entries', [0.4, NEG, 1.0, -0.2, NEG, 0.9, NEG, -1.1, 0.1], { temperature: 1.2, topP: 0.95 }, 'masked tokens weigh 0 and are never drawn'],
  ['V = 515, top-k 6', SPREAD, { temperature: 1, topK: 6 }, 'count select across strides, ragged last stride'],
  ['V = 515, top-p 0.7', SPREAD, { temperature: 1, topP: 0.7 }, 'mass select across strides: 4 of the 6 large entries kept'],
];

/** Hand-computed distributions: [logits, options, exact probabilities]. */
const L = [0, Math.log(2), Math.log(4), NEG];
const HAND_CASES: [string, number[], SamplingOptions, number[]][] = [
  ['softmax', L, { temperature: 1 }, [1 / 7, 2 / 7, 4 / 7, 0]],
  ['T = 0.5 squares the odds', L, { temperature: 0.5 }, [1 / 21, 4 / 21, 16 / 21, 0]],
  ['greedy', L, { temperature: 0 }, [0, 0, 1, 0]],
  ['top-k 2', L, { temperature: 1, topK: 2 }, [0, 1 / 3, 2 / 3, 0]],
  ['top-k ≥ vocab is off', L, { temperature: 1, topK: 9 }, [1 / 7, 2 / 7, 4 / 7, 0]],
  ['top-p 0.6: 4/7 above the 2nd is < 0.6', L, { temperature: 1, topP: 0.6 }, [0, 1 / 3, 2 / 3, 0]],
  ['top-p 0.5: 4/7 above the 2nd is ≥ 0.5', L, { temperature: 1, topP: 0.5 }, [0, 0, 1, 0]],
  ['min-p 0.4: 2/7 ≥ 0.4·4/7 > 1/7', L, { temperature: 1, minP: 0.4 }, [0, 1 / 3, 2 / 3, 0]],
  ['min-p 0.6', L, { temperature: 1, minP: 0.6 }, [0, 0, 1, 0]],
  ['top-k ties', [1, 1, 0], { temperature: 1, topK: 1 }, [0.5, 0.5, 0]],
  ['top-k renormalises before top-p', [Math.log(4), Math.log(2), 0, 0], { temperature: 1, topK: 2, topP: 0.6 }, [1, 0, 0, 0]],
  ['top-p alone on the same row', [Math.log(4), Math.log(2), 0, 0], { temperature: 1, topP: 0.6 }, [2 / 3, 1 / 3, 0, 0]],
  ['temperature before top-p', [Math.log(4), Math.log(2), 0], { temperature: 2, topP: 0.55 }, [2 / (2 + Math.SQRT2), Math.SQRT2 / (2 + Math.SQRT2), 0]],
  ['no finite logit: index 0', [NEG, NEG], { temperature: 1 }, [1, 0]],
];

describe('sampling reference (float64)', () => {
  test.each(HAND_CASES)('%s', (_name, logits, options, want) => {
    const got = referenceSamplingDistribution(logits, options);
    want.forEach((p, j) => expect(got[j]).toBeCloseTo(p, 14));
  });

  test('Philox2x32-10 matches Random123 known-answer vectors', () => {
    expect(philox2x32(0, 0, 0)).toEqual([0xff1dae59, 0x6cd10df2]);
    expect(philox2x32(0xffffffff, 0xffffffff, 0xffffffff)).toEqual([0x2c3f628b, 0xab4fd7ad]);
    expect(philox2x32(0x243f6a88, 0x85a308d3, 0x13198a2e)).toEqual([0xdd7ce038, 0xf62a4c12]);
  });

  test('bad options are refused, naming the option', () => {
    const bad: [unknown, RegExp][] = [
      [null, /options: expected an object/],
      [{ temperature: 1, top_k: 5 }, /options: expected only temperature, topK, topP, minP, got top_k/],
      [{}, /temperature: expected a finite number ≥ 0/],
      [{ temperature: -0.1 }, /temperature: .* got -0.1/],
      [{ temperature: NaN }, /temperature: .* got NaN/],
      [{ temperature: Infinity }, /temperature: .* got Infinity/],
      [{ temperature: 1, topK: 1.5 }, /topK: expected a non-negative integer/],
      [{ temperature: 1, topK: -1 }, /topK: .* got -1/],
      [{ temperature: 1, topP: 0 }, /topP: expected a number in \(0, 1\]/],
      [{ temperature: 1, topP: 1.01 }, /topP: .* got 1.01/],
      [{ temperature: 1, topP: NaN }, /topP: .* got NaN/],
      [{ temperature: 1, minP: 1 }, /minP: expected a number in \[0, 1\)/],
      [{ temperature: 1, minP: -0.01 }, /minP: .* got -0.01/],
    ];
    for (const [options, message] of bad) expect(() => checkSamplingOptions(options)).toThrow(message);
    expect(checkSamplingOptions({ temperature: 0.7 })).toEqual({ temperature: 0.7, topK: 0, topP: 1, minP: 0 });
  });
});

describeGpu('sample (WebGPU)', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  test.each(DISTRIBUTION_CASES.map(([name, row, options, path], i) => [`${name} (${path})`, row, options, i] as const))('%s: draws fit the reference (chi-square)', async (_title, row, options, index) => {
    const want = referenceSamplingDistribution(row, options);
    const ids = await sample(ctx, tile(row, DRAWS), { rows: DRAWS, vocab: row.length }, options, seedsFor(DRAWS, 1000 + index));
    const counts = new Float64Array(row.length);
    for (const id of ids) {
      expect(id).toBeLessThan(row.length);
      counts[id]! += 1;
    }
    let stat = 0;
    let kept = 0;
    for (let j = 0; j < row.length; j++) {
      if (want[j] === 0) {
        expect(`token ${j} drawn ${counts[j]} times`).toBe(`token ${j} drawn 0 times`);
        continue;
      }
      const expected = DRAWS * want[j]!;
      if (expected < 5) continue; // pooled below
      stat += (counts[j]! - expected) ** 2 / expected;
      kept++;
    }
    // Tokens kept but too unlikely for their own bin (the 509 zeros at V = 515) share one bin.
    const rare = [...want.keys()].filter((j) => want[j]! > 0 && DRAWS * want[j]! < 5);
    if (rare.length > 0) {
      const expected = DRAWS * rare.reduce((s, j) => s + want[j]!, 0);
      expect(expected).toBeGreaterThanOrEqual(5);
      stat += (rare.reduce((s, j) => s + counts[j]!, 0) - expected) ** 2 / expected;
      kept++;
    }
    expect(kept).toBeGreaterThanOrEqual(2);
    expect(chiSquareSurvival(stat, kept - 1)).toBeGreaterThan(SIGNIFICANCE);
  });

  test('ids are the float64 replay of the same Philox stream (V = 1000, three option sets)', async () => {
    const rows = 48;
    const vocab = 1000;
    const rand = mulberry32(77);
    const logits = Float32Array.from({ length: rows * vocab }, () => 2 * gaussian(rand));
    const seeds = seedsFor(rows, 78);
    for (const options of [{ temperature: 1 }, { temperature: 0.6, topK: 40 }, { temperature: 1.3, topP: 0.85, minP: 0.02 }]) {
      const ids = await sample(ctx, logits, { rows, vocab }, options, seeds);
      let decisive = 0;
      for (let r = 0; r < rows; r++) {
        const { id, margin } = referenceSampleDraw(logits.subarray(r * vocab, (r + 1) * vocab), options, seeds[r]!);
        if (margin < 1e-4) continue;
        decisive++;
        expect([r, ids[r]]).toEqual([r, id]);
      }
      expect(decisive).toBeGreaterThanOrEqual(rows - 2);
    }
  });

  test('greedy is the argmax, lowest index on ties, whatever the seed', async () => {
    const vocab = 300;
    const rand = mulberry32(5);
    const rows: number[][] = [];
    const want: number[] = [];
    for (let r = 0; r < 6; r++) {
      const row = Array.from({ length: vocab }, () => gaussian(rand));
      const a = 7 + 45 * r;
      const b = a + 3 + 11 * r; // ties across threads, and across strides at r = 5
      row[a] = row[b] = 9;
      if (r % 2) row[a - 1] = NEG;
      rows.push(row);
      want.push(a);
    }
    rows.push(new Array(vocab).fill(NEG));
    want.push(0);
    const single = new Array(vocab).fill(NEG);
    single[299] = -5;
    rows.push(single);
    want.push(299);
    const ids = await sample(ctx, Float32Array.from(rows.flat()), { rows: rows.length, vocab }, { temperature: 0, topK: 3, topP: 0.5 }, seedsFor(rows.length, 6));
    expect([...ids]).toEqual(want);
    expect([...(await sample(ctx, Float32Array.of(-3), { rows: 1, vocab: 1 }, { temperature: 0 }, Uint32Array.of(1)))]).toEqual([0]);
  });

  test('a row that is −inf but for one token returns that token under every option', async () => {
    const vocab = 300;
    const row = new Array(vocab).fill(NEG);
    row[257] = 3;
    for (const options of [{ temperature: 1 }, { temperature: 0.01, topK: 5 }, { temperature: 2, topP: 0.3 }, { temperature: 1, minP: 0.5 }, { temperature: 1, topK: 1, topP: 0.1, minP: 0.9 }]) {
      expect([...(await sample(ctx, tile(row, 4), { rows: 4, vocab }, options, seedsFor(4, 9)))]).toEqual([257, 257, 257, 257]);
    }
  });

  test('same seeds → same ids; other seeds → other ids; a row does not depend on its batch', async () => {
    const rows = 64;
    const vocab = 1000;
    const rand = mulberry32(31);
    const logits = Float32Array.from({ length: rows * vocab }, () => 0.3 * gaussian(rand));
    const options = { temperature: 1, topP: 0.95 };
    const seeds = seedsFor(rows, 32);
    const first = await sample(ctx, logits, { rows, vocab }, options, seeds);
    expect(await sample(ctx, logits, { rows, vocab }, options, seeds)).toEqual(first);
    const other = await sample(ctx, logits, { rows, vocab }, options, seedsFor(rows, 33));
    expect(first.filter((id, r) => id !== other[r]).length).toBeGreaterThanOrEqual(rows - 3);
    for (const r of [0, 37, 63]) {
      const alone = await sample(ctx, logits.slice(r * vocab, (r + 1) * vocab), { rows: 1, vocab }, options, seeds.slice(r, r + 1));
      expect([r, alone[0]]).toEqual([r, first[r]]);
    }
    // The same logits and seed in two rows of one batch draw the same token.
    const twice = await sample(ctx, tile([...logits.subarray(0, vocab)], 2), { rows: 2, vocab }, options, Uint32Array.of(seeds[0]!, seeds[0]!));
    expect([...twice]).toEqual([first[0], first[0]]);
  });

  test('vocab 151936 (Qwen2): top-k 50 and top-p draws stay in the kept set, a one-token row returns it', async () => {
    const vocab = 151_936;
    const rows = 3;
    const rand = mulberry32(151);
    const logits = Float32Array.from({ length: rows * vocab }, () => 3 * gaussian(rand));
    logits.fill(NEG, 2 * vocab, 3 * vocab);
    logits[2 * vocab + 123_457] = -40;
    const seeds = seedsFor(rows, 152);
    for (const options of [{ temperature: 1, topK: 50 }, { temperature: 0.8, topP: 0.7, minP: 0.001 }]) {
      const ids = await sample(ctx, logits, { rows, vocab }, options, seeds);
      expect(ids[2]).toBe(123_457);
      for (let r = 0; r < 2; r++) {
        const row = logits.subarray(r * vocab, (r + 1) * vocab);
        const want = referenceSamplingDistribution(row, options);
        expect(want[ids[r]!]).toBeGreaterThan(0);
        if (options.topK) expect(want.filter((p) => p > 0).length).toBe(50);
        const { id, margin } = referenceSampleDraw(row, options, seeds[r]!);
        if (margin > 1e-4) expect(ids[r]).toBe(id);
      }
    }
  });

  test('setOptions changes the draw of a prepared dispatch without a new pipeline', async () => {
    const rows = 16;
    const vocab = 40;
    const rand = mulberry32(41);
    const logits = Float32Array.from({ length: rows * vocab }, () => gaussian(rand));
    const seeds = seedsFor(rows, 42);
    const logitsBuffer = ctx.upload('test:logits', logits);
    const seedsBuffer = ctx.upload('test:seeds', seeds);
    const ids = ctx.upload('test:ids', new Uint32Array(rows).fill(POISON_BITS), GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    const first = { temperature: 1 };
    const second = { temperature: 0.5, topK: 3, minP: 0.1 };
    const prepared = await prepareSample(ctx, { rows, vocab }, first, { logits: logitsBuffer, seeds: seedsBuffer, ids });
    try {
      await ctx.runPass('test', (pass) => prepared.encode(pass));
      expect(new Uint32Array(await ctx.read('test', ids, rows * 4))).toEqual(await sample(ctx, logits, { rows, vocab }, first, seeds));
      prepared.setOptions(second);
      await ctx.runPass('test', (pass) => prepared.encode(pass));
      expect(new Uint32Array(await ctx.read('test', ids, rows * 4))).toEqual(await sample(ctx, logits, { rows, vocab }, second, seeds));
      expect(() => prepared.setOptions({ temperature: 1, topP: 2 })).toThrow(/topP/);
    } finally {
      prepared.destroy();
      for (const buffer of [logitsBuffer, seedsBuffer, ids]) buffer.destroy();
    }
  });

  test('bad arguments are refused before any GPU work', async () => {
    const logits = new Float32Array(6);
    const seeds = new Uint32Array(2);
    await expect(sample(ctx, logits, { rows: 0, vocab: 3 }, { temperature: 1 }, seeds)).rejects.toThrow(/rows: expected a positive integer, got 0/);
    await expect(sample(ctx, logits, { rows: 2, vocab: 2 ** 24 + 1 }, { temperature: 1 }, seeds)).rejects.toThrow(/vocab: expected an integer in \[1, 16777216\]/);
    await expect(sample(ctx, logits, { rows: 2, vocab: 3 }, { temperature: -1 }, seeds)).rejects.toThrow(/temperature/);
    await expect(sample(ctx, new Float32Array(5), { rows: 2, vocab: 3 }, { temperature: 1 }, seeds)).rejects.toThrow(/logits: expected Float32Array of 6 elements/);
    await expect(sample(ctx, logits, { rows: 2, vocab: 3 }, { temperature: 1 }, new Uint32Array(3))).rejects.toThrow(/seeds: expected Uint32Array of 2 elements/);
    const small = ctx.createBuffer('test:small', 16, GPUBufferUsage.STORAGE);
    try {
      await expect(prepareSample(ctx, { rows: 2, vocab: 3 }, { temperature: 1 }, { logits: small, seeds: small, ids: small })).rejects.toThrow(/logits: expected a GPUBuffer of at least 24 bytes/);
    } finally {
      small.destroy();
    }
  });
});
