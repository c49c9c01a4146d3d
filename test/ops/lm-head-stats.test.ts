/**
 * kernels/lm_head_stats.wgsl (src/ops/lm-head-stats.ts): the fused lm_head + token statistics,
 * forward and backward, against the float64 reference and against the unfused path (the linear
 * op, then the token-stats op; the token-stats backward, then the linear backward), on shapes
 * that are not multiples of its tiles. Outputs are poisoned before every run.
 */
import { jest } from '@jest/globals';
import { encode, type DType } from '../../src/dtype.js';
import { InvalidArgumentError } from '../../src/errors.js';
import type { GpuContext } from '../../src/gpu/context.js';
import {
  lmHeadStats, lmHeadStatsBackward, lmHeadStatsPlan, lmHeadStatsSlabCols, lmHeadStatsTileRows, prepareLmHeadStats, prepareLmHeadStatsBackward,
  referenceLmHeadStats, referenceLmHeadStatsBackward, type LmHeadStatsShape,
} from '../../src/ops/lm-head-stats.js';
import { linear } from '../../src/ops/linear.js';
import { linearBackward } from '../../src/ops/linear-backward.js';
import { tokenStats, tokenStatsBackward } from '../../src/ops/token-stats.js';
import { allocateOutputs } from '../../src/ops/token-stats/webgpu.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

interface Case {
  rows: number;
  hidden: number;
  vocab: number;
  dtype: DType;
  /** W uploaded in row windows of this many rows. */
  windowRows?: number;
  vocabLimit?: number;
  temperature?: number;
  /** Rows of W scaled by 100: logits of magnitude ~10^3. */
  outliers?: boolean;
  /** Row 1's hidden state holds a NaN: that row's statistics are NaN, the others unaffected. */
  nanRow?: boolean;
  path: string;
}

// Paths: rows ≤ 8, ≤ 16, ≤ 32 = 8-, 16-, 32-row tiles of (8, 1), (8, 2), (8, 4) threads, else
// 64-row tiles of (8, 8) (lmHeadStatsTileRows: no padding rows for a few rows); "aligned" =
// hidden % 4 = 0 (vec4 / packed-pair loads), else element by element; ranges = vocabulary ranges
// per row (lmHeadStatsPlan), reduced by token_stats_forward.wgsl's finalize_main.
const CASES: Case[] = [
  { rows: 1, hidden: 8, vocab: 1, dtype: 'f32', path: 'rows = 1, V = 1: one range, one live column of a 64-column tile (63 past the window), one finite entry: selfCertainty and entropy exactly 0' },
  { rows: 1, hidden: 7, vocab: 7, dtype: 'f32', path: 'hidden not a multiple of 4: unaligned x and W reads; V = 7 inside one group of the tile' },
  { rows: 33, hidden: 12, vocab: 1000, dtype: 'bf16', path: '64-row tiles, rows not a multiple of them (31 empty rows in the tile); aligned bf16 pairs; V = 1000 not a multiple of 64 (ragged last tile)' },
  { rows: 5, hidden: 13, vocab: 4099, dtype: 'f16', path: 'an 8-row tile, 3 empty rows; odd hidden with 16-bit W: rows start mid-word; V = 4099: 65 ranges of 64 (a few rows get the narrowest ranges), the last of 3 columns' },
  { rows: 70, hidden: 16, vocab: 4099, dtype: 'f32', windowRows: 1000, path: 'W in 5 row windows (the last of 99 rows): the canonical 65 ranges of 64, one partials dispatch per window for those inside it, the 4 crossing a boundary read from gathered seam rows' },
  { rows: 31, hidden: 24, vocab: 700, dtype: 'f32', path: '32-row tile with one padding row' },
  { rows: 12, hidden: 16, vocab: 300, dtype: 'bf16', windowRows: 39, path: '16-row tile (4 padding rows); bf16 W in 8 windows of 39 rows, none a multiple of 4: every range of 64 crosses a window, gathered to f32 seam rows' },
  { rows: 9, hidden: 16, vocab: 1000, dtype: 'f32', outliers: true, path: 'outlier weights (a few W rows × 100): logits ~10^3, the online max moves and rescales' },
  { rows: 20, hidden: 8, vocab: 1000, dtype: 'f32', vocabLimit: 900, path: 'masked vocabulary: columns ≥ 900 (a padded vocabulary) left out as −inf logits are; rows 0 and 1 choose a masked id: logprob −inf' },
  { rows: 65, hidden: 20, vocab: 130, dtype: 'bf16', temperature: 0.7, path: 'temperature 0.7; 64-row tiles with one row in the second tile row; V = 130: 3 tiles' },
  { rows: 3, hidden: 8, vocab: 200, dtype: 'f32', nanRow: true, path: 'a NaN hidden state in row 1: its logits are NaN (slow path, bad flag), its statistics NaN; rows 0 and 2 unaffected; an 8-row tile with 5 padding rows' },
];

function inputs(c: Case) {
  const rand = mulberry32(c.rows * 7919 + c.hidden * 31 + c.vocab);
  const hidden = Float32Array.from({ length: c.rows * c.hidden }, () => gaussian(rand));
  if (c.nanRow) hidden[c.hidden + 2] = NaN;
  const values = Float64Array.from({ length: c.vocab * c.hidden }, () => (2 * gaussian(rand)) / Math.sqrt(c.hidden));
  if (c.outliers) {
    for (const row of [0, 17, c.vocab - 1]) for (let p = 0; p < c.hidden; p++) values[row * c.hidden + p] = values[row * c.hidden + p]! * 100;
  }
  const weight = encode(c.dtype, values);
  const limit = c.vocabLimit ?? c.vocab;
  const ids = Int32Array.from({ length: c.rows }, (_, r) => (c.vocabLimit !== undefined && r < 2 ? limit + r : Math.floor(rand() * limit)));
  const shape: LmHeadStatsShape = { rows: c.rows, hidden: c.hidden, vocab: c.vocab, weightDType: c.dtype, vocabLimit: c.vocabLimit };
  return { hidden, weight, ids, shape };
}

describeGpu('lm_head + token statistics, fused (WebGPU)', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  test.each(CASES.map((c) => [c.path, c] as const))('forward: %s', async (_path, c) => {
    const { hidden, weight, ids, shape } = inputs(c);
    const temperature = c.temperature ?? 1;
    const got = await lmHeadStats(ctx, hidden, weight, shape, { ids, temperature, poison: true, windowRows: c.windowRows });
    const want = referenceLmHeadStats(hidden, weight, shape, ids, temperature);
    const tol = TOLERANCES.lmHeadStats;
    for (const key of ['logsumexp', 'selfCertainty', 'entropy', 'logprob'] as const) expectClose(`${key} vs float64`, got[key]!, want[key]!, tol);
    expect(Array.from(got.validCount)).toEqual(Array.from(want.validCount));
    if (c.vocabLimit !== undefined) expect([got.logprob![0], got.logprob![1]]).toEqual([-Infinity, -Infinity]);
    if (c.nanRow) expect([Number.isNaN(got.logsumexp[1]!), Number.isFinite(got.logsumexp[0]!), Number.isFinite(got.logsumexp[2]!)]).toEqual([true, true, true]);
    if (c.vocab === 1) expect([got.selfCertainty[0], got.entropy[0], got.logprob![0]]).toEqual([0, 0, 0]);

    // The unfused path: logits from the linear op (masked columns set to −inf), then token stats.
    {
      const logits = await linear(ctx, hidden, weight, null, { m: c.rows, k: c.hidden, n: c.vocab, weightDType: c.dtype });
      const limit = c.vocabLimit ?? c.vocab;
      for (let r = 0; r < c.rows; r++) logits.fill(-Infinity, r * c.vocab + limit, (r + 1) * c.vocab);
      const unfused = await tokenStats({ logits, shape: [c.rows, c.vocab], ids, temperature }, { backend: 'webgpu', context: ctx });
      for (const key of ['logsumexp', 'selfCertainty', 'entropy', 'logprob'] as const) expectClose(`${key} vs unfused`, got[key]!, unfused[key]!, tol);
    }
  });

  test('the forward can fail: a wrong weight changes the statistics beyond the tolerance', async () => {
    const c = CASES[2]!;
    const { hidden, weight, ids, shape } = inputs(c);
    const got = await lmHeadStats(ctx, hidden, weight, shape, { ids });
    const other = Uint16Array.from(weight as Uint16Array);
    other[5 * c.hidden] = other[5 * c.hidden]! ^ 0x4000;   // one weight's exponent flipped
    const want = referenceLmHeadStats(hidden, other, shape, ids);
    expect(() => expectClose('logsumexp', got.logsumexp, want.logsumexp, TOLERANCES.lmHeadStats)).toThrow();
  });

  const BACKWARD: (Case & { slabBytes?: number; gradients: 'both' | 'logprob' | 'selfCertainty' })[] = [
    { rows: 1, hidden: 7, vocab: 1, dtype: 'f32', gradients: 'both', path: 'rows = 1, V = 1, odd hidden: one slab of one column; p = 1 so dz = 0 but for the one-hot' },
    { rows: 33, hidden: 12, vocab: 1000, dtype: 'f32', slabBytes: 33 * 4 * 192, gradients: 'both', path: 'slabs of 192 columns (6 slabs, the last of 40): scratch reused, d(hidden) accumulated slab after slab; 64-row tiles, 31 rows empty' },
    { rows: 70, hidden: 16, vocab: 4099, dtype: 'f32', windowRows: 1000, slabBytes: 70 * 4 * 256, gradients: 'both', path: 'W and dW in 5 row windows, slabs of 256 inside each (bound at byte offsets into the window): the linear backward on offset bindings' },
    { rows: 9, hidden: 16, vocab: 1000, dtype: 'f32', outliers: true, gradients: 'selfCertainty', path: 'outlier weights, gSelfCertainty only (no ids flag needed for the one-hot); a 16-row tile' },
    { rows: 3, hidden: 64, vocab: 300, dtype: 'f32', windowRows: 39, slabBytes: 3 * 4 * 128, gradients: 'both', path: '8-row tile; windows of 39 rows, slabs of 128 from column 0 cut into a piece per window they cross (the linear backward takes the pieces as windows, bound at 256-byte multiples)' },
    { rows: 31, hidden: 8, vocab: 500, dtype: 'f32', gradients: 'both', path: '32-row tile with one padding row' },
    { rows: 20, hidden: 8, vocab: 1000, dtype: 'f32', vocabLimit: 900, temperature: 0.7, gradients: 'logprob', path: 'masked vocabulary (≥ 900): dz = 0 there but for the one-hot of rows 0 and 1, whose chosen id is masked; temperature 0.7; gLogprob only' },
  ];

  test.each(BACKWARD.map((c) => [c.path, c] as const))('backward: %s', async (_path, c) => {
    const { hidden, weight, ids, shape } = inputs(c);
    const temperature = c.temperature ?? 1;
    const w = weight as Float32Array;
    const fwd = referenceLmHeadStats(hidden, w, shape, ids, temperature);
    const rand = mulberry32(99);
    const logsumexp = Float32Array.from(fwd.logsumexp);
    const gLogprob = c.gradients !== 'selfCertainty' ? Float32Array.from({ length: c.rows }, () => gaussian(rand)) : null;
    const gSelfCertainty = c.gradients !== 'logprob' ? Float32Array.from({ length: c.rows }, () => gaussian(rand)) : null;
    const useIds = c.gradients !== 'selfCertainty';
    const dWeightInit = Float32Array.from({ length: c.vocab * c.hidden }, () => gaussian(rand));
    const got = await lmHeadStatsBackward(ctx, hidden, w, shape, {
      ids: useIds ? ids : null, temperature, logsumexp, validCount: fwd.validCount, gLogprob, gSelfCertainty, dWeightInit, poison: true, windowRows: c.windowRows, slabBytes: c.slabBytes,
    });
    const tol = TOLERANCES.lmHeadStatsBackward;
    const want = referenceLmHeadStatsBackward(hidden, w, shape, useIds ? ids : null, temperature, logsumexp, fwd.validCount, gLogprob, gSelfCertainty);
    expectClose('d(hidden) vs float64', got.dHidden, want.dHidden, tol);
    expectClose('dW vs float64', got.dWeight, want.dWeight.map((v, i) => v + dWeightInit[i]!), tol);

    // The unfused path: logits, the token-stats backward into dz (rows, V), then the linear backward.
    const logits = await linear(ctx, hidden, w, null, { m: c.rows, k: c.hidden, n: c.vocab });
    const limit = c.vocabLimit ?? c.vocab;
    for (let r = 0; r < c.rows; r++) logits.fill(-Infinity, r * c.vocab + limit, (r + 1) * c.vocab);
    const dz = await tokenStatsBackward({ logits, shape: [c.rows, c.vocab], ids: useIds ? ids : null, temperature, logsumexp, validCount: fwd.validCount, gLogprob, gSelfCertainty },
      { backend: 'webgpu', context: ctx });
    const unfused = await linearBackward(ctx, hidden, w, dz, { m: c.rows, k: c.hidden, n: c.vocab, hasBias: false }, { dWeight: dWeightInit });
    expectClose('d(hidden) vs unfused', got.dHidden, unfused.dx, tol);
    expectClose('dW vs unfused', got.dWeight, unfused.dWeight, tol);
  });

  test('backward on a NaN row: that row\'s d(hidden) is NaN, the others finite', async () => {
    const c = CASES.find((k) => k.nanRow)!;
    const { hidden, weight, ids, shape } = inputs(c);
    const fwd = referenceLmHeadStats(hidden, weight, shape, ids);
    const got = await lmHeadStatsBackward(ctx, hidden, weight as Float32Array, shape, {
      ids, logsumexp: Float32Array.from(fwd.logsumexp), validCount: fwd.validCount, gLogprob: new Float32Array([1, 1, 1]), poison: true,
    });
    const row = (r: number) => Array.from(got.dHidden.subarray(r * c.hidden, (r + 1) * c.hidden));
    expect(row(1).every(Number.isNaN)).toBe(true);
    expect([...row(0), ...row(2)].every(Number.isFinite)).toBe(true);
  });

  const bits = (values: Float32Array) => Array.from(new Uint32Array(values.buffer, values.byteOffset, values.length));

  // Windows of 39 and 1000 rows against one buffer: every range and slab starts at the same
  // column either way, and those crossing a window boundary read gathered rows or run as pieces.
  const SLOW_MS = 600_000;
  test.each([['f32', 39], ['bf16', 39], ['f32', 250]] as const)('forward: %s W in windows of %i rows gives the bits of whole W', async (dtype, windowRows) => {
    const c: Case = { rows: 5, hidden: 16, vocab: 700, dtype, path: '' };
    const { hidden, weight, ids, shape } = inputs(c);
    const whole = await lmHeadStats(ctx, hidden, weight, shape, { ids });
    const split = await lmHeadStats(ctx, hidden, weight, shape, { ids, windowRows, poison: true });
    for (const key of ['logsumexp', 'selfCertainty', 'entropy', 'logprob'] as const) expect(bits(split[key]!)).toEqual(bits(whole[key]!));
  }, SLOW_MS);

  // hidden 64: a piece of a slab binds W at a multiple of 256 bytes from any window row.
  test.each([39, 250])('backward: W and dW in windows of %i rows give the bits of whole W', async (windowRows) => {
    const c: Case = { rows: 5, hidden: 64, vocab: 700, dtype: 'f32', path: '' };
    const { hidden, weight, ids, shape } = inputs(c);
    const fwd = referenceLmHeadStats(hidden, weight, shape, ids);
    const rand = mulberry32(5);
    const args = {
      ids, logsumexp: Float32Array.from(fwd.logsumexp), validCount: fwd.validCount, slabBytes: 5 * 4 * 256,
      gLogprob: Float32Array.from({ length: c.rows }, () => gaussian(rand)), gSelfCertainty: Float32Array.from({ length: c.rows }, () => gaussian(rand)),
    };
    const whole = await lmHeadStatsBackward(ctx, hidden, weight as Float32Array, shape, args);
    const split = await lmHeadStatsBackward(ctx, hidden, weight as Float32Array, shape, { ...args, windowRows, poison: true });
    expect(bits(split.dHidden)).toEqual(bits(whole.dHidden));
    expect(bits(split.dWeight)).toEqual(bits(whole.dWeight));
  }, SLOW_MS);

  test('no (rows, V) buffer: every buffer the fused forward and backward make is far smaller than the logits', async () => {
    const c: Case = { rows: 64, hidden: 8, vocab: 4099, dtype: 'f32', path: '' };
    const { hidden, weight, ids, shape } = inputs(c);
    const logitsBytes = c.rows * c.vocab * 4;
    const h = ctx.upload('test:hidden', hidden);
    const wBuf = ctx.upload('test:weight', weight);
    const idsBuf = ctx.upload('test:ids', Uint32Array.from(ids));
    const outputs = allocateOutputs(ctx, c.rows, true);
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const dHidden = ctx.createBuffer('test:d_hidden', hidden.byteLength, usage);
    const dWeight = ctx.createBuffer('test:d_weight', weight.byteLength, usage);
    const made: { label: string; size: number }[] = [];
    const original = ctx.createBuffer.bind(ctx);
    const spy = jest.spyOn(ctx, 'createBuffer').mockImplementation((label: string, size: number, bufferUsage: GPUBufferUsageFlags) => {
      made.push({ label, size });
      return original(label, size, bufferUsage);
    });
    const before = ctx.memory.liveBytes;
    ctx.resetPeak();
    try {
      const forward = await prepareLmHeadStats(ctx, shape, { hidden: h, weight: wBuf, ids: idsBuf }, outputs);
      const backward = await prepareLmHeadStatsBackward(ctx, shape, {
        hidden: h, weight: wBuf, ids: idsBuf, logsumexp: outputs.logsumexp, validCount: outputs.validCount, gLogprob: outputs.entropy, gSelfCertainty: null, dHidden, dWeight,
      }, { slabBytes: 64 * 4 * 512 });
      await ctx.runPass('test', (pass) => {
        forward.encode(pass);
        backward.encode(pass);
      });
      forward.destroy();
      backward.destroy();
    } finally {
      spy.mockRestore();
    }
    const peak = ctx.memory.peakBytes - before;
    expect(made.length).toBeGreaterThan(0);
    const largest = Math.max(...made.map((b) => b.size));
    // The largest is the backward's slab of dz (64 rows × 512 columns): an eighth of the logits.
    expect(largest).toBeLessThanOrEqual(logitsBytes / 8);
    expect(peak).toBeLessThan(logitsBytes / 2);
    for (const b of [h, wBuf, idsBuf, dHidden, dWeight, outputs.logsumexp, outputs.selfCertainty, outputs.entropy, outputs.logprob!, outputs.validCount]) b.destroy();
  });

  test('plans: row tiles, ranges and slabs', () => {
    // 4096 rows of Qwen2.5's vocabulary: 64 row tiles × 32 ranges = 2048 workgroups.
    expect(lmHeadStatsPlan(4096, 151936)).toEqual({ tileM: 64, rangeCols: 4800, ranges: 32 });
    expect(lmHeadStatsPlan(8, 1099)).toEqual({ tileM: 8, rangeCols: 64, ranges: 18 });
    expect([1, 3, 8, 9, 16, 17, 31, 32, 33].map(lmHeadStatsTileRows)).toEqual([8, 8, 8, 16, 16, 32, 32, 32, 64]);
    expect(lmHeadStatsSlabCols(4096, 151936, 2 ** 30)).toBe(4096);
    expect(lmHeadStatsSlabCols(1, 100, 2 ** 30)).toBe(128);
  });

  test('typed errors name the argument', async () => {
    const c = CASES[1]!;
    const { hidden, weight, shape } = inputs(c);
    await expect(lmHeadStats(ctx, hidden, weight, { ...shape, vocabLimit: 8 })).rejects.toMatchObject({ argument: 'vocabLimit' });
    await expect(lmHeadStats(ctx, hidden, weight, { ...shape, rows: 0 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(lmHeadStats(ctx, hidden.subarray(1), weight, shape)).rejects.toMatchObject({ argument: 'hidden' });
    await expect(lmHeadStats(ctx, hidden, weight, shape, { ids: new Int32Array([7]) })).rejects.toMatchObject({ argument: 'ids[0]' });
    await expect(lmHeadStatsBackward(ctx, hidden, weight as Float32Array, { ...shape, weightDType: 'bf16' }, { logsumexp: new Float32Array(1), validCount: new Uint32Array(1) }))
      .rejects.toMatchObject({ argument: 'weightDType' });
    // A slab piece binds W at (its first row in the window) · hidden · 4 bytes: 25 · 48 here, off the 256-byte alignment.
    {
      const odd: Case = { rows: 2, hidden: 12, vocab: 200, dtype: 'f32', path: '' };
      const args = inputs(odd);
      await expect(lmHeadStatsBackward(ctx, args.hidden, args.weight as Float32Array, args.shape,
        { logsumexp: new Float32Array(2), validCount: new Uint32Array(2).fill(200), gSelfCertainty: new Float32Array(2), windowRows: 39, slabBytes: 2 * 4 * 64 }))
        .rejects.toMatchObject({ argument: 'weight', message: expect.stringMatching(/piece starts 25 rows in \(1200 bytes\)/) });
    }
    // Slabs at a byte offset are the backward's own use of the linear backward; other ops refuse them.
    const buffer = ctx.upload('test:w', new Float32Array(64 * 7));
    const outputs = allocateOutputs(ctx, 1, false);
    try {
      await expect(prepareLmHeadStats(ctx, shape, { hidden: buffer, weight: [{ buffer, firstRow: 0, rows: 7, byteOffset: 256 }], ids: null }, outputs))
        .rejects.toMatchObject({ argument: 'weight byteOffset' });
    } finally {
      for (const b of [buffer, outputs.logsumexp, outputs.selfCertainty, outputs.entropy, outputs.validCount]) b.destroy();
    }
  });
});
