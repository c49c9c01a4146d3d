/**
 * Ops over a table or weight in row windows (src/ops/split.ts: a tensor larger than one storage
 * binding, a buffer per window): the embedding gather and the linear forward, and their backward
 * (dx, dW and db of the linear; the embedding's scatter-add into gradient windows), must give, bit
 * for bit, what one buffer of the whole tensor gives (every element read and summed in the same
 * order), with outputs poisoned first so an element no window writes shows.
 */
import { POISON_BITS, encode, type DType, type HostArray } from '../../src/dtype.js';
import { InvalidArgumentError } from '../../src/errors.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { prepareEmbedding } from '../../src/ops/embedding.js';
import { prepareEmbeddingBackward } from '../../src/ops/embedding-backward.js';
import { linearPlan, prepareLinear } from '../../src/ops/linear.js';
import { linearBackwardSplits, prepareLinearBackward } from '../../src/ops/linear-backward.js';
import type { RowWindow } from '../../src/ops/split.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';

interface Prepared {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

describeGpu('row windows (WebGPU)', () => {
  let ctx: GpuContext;
  const owned: GPUBuffer[] = [];
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterEach(() => owned.splice(0).forEach((b) => b.destroy()));
  afterAll(() => ctx.close());

  const upload = (label: string, data: ArrayBufferView): GPUBuffer => {
    const buffer = ctx.upload(label, data, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    owned.push(buffer);
    return buffer;
  };
  /** `table` (rows × cols) as one window per entry of `sizes` (row counts, in order). */
  const windowsOf = (table: HostArray, cols: number, sizes: number[]): RowWindow[] => {
    let firstRow = 0;
    return sizes.map((rows) => {
      const window = { buffer: upload(`table[${firstRow}]`, table.subarray(firstRow * cols, (firstRow + rows) * cols)), firstRow, rows };
      firstRow += rows;
      return window;
    });
  };
  /** Runs `prepare` into a poisoned (or `initial`) output of `elements` f32 and returns its bits. */
  const run = async (elements: number, prepare: (out: GPUBuffer) => Promise<Prepared>, initial?: Float32Array): Promise<Uint32Array> => {
    const out = upload('out', initial ?? new Uint32Array(elements).fill(POISON_BITS));
    const prepared = await prepare(out);
    try {
      await ctx.runPass('row-windows', (pass) => prepared.encode(pass));
    } finally {
      prepared.destroy();
    }
    return new Uint32Array(await ctx.read('row-windows', out, elements * 4));
  };

  // [tokens, vocab, hidden, dtype, window sizes, path]
  const EMBEDDING: [number, number, number, DType, number[], string][] = [
    [9, 37, 13, 'bf16', [6, 6, 6, 6, 6, 6, 1], 'odd hidden: even row counts keep every window on whole words; a last window of one row'],
    [12, 5, 3, 'f32', [1, 1, 1, 1, 1], 'a window per row: each token is written by exactly one of five dispatches'],
    [300, 70, 8, 'f16', [64, 6], 'more tokens than a window has rows; 16-bit pairs'],
  ];
  test.each(EMBEDDING)('embedding: %i tokens of (%i × %i) %s in windows %j: %s', async (tokens, vocab, hidden, dtype, sizes) => {
    const rand = mulberry32(tokens + vocab * 7 + hidden);
    const table = encode(dtype, Float64Array.from({ length: vocab * hidden }, () => gaussian(rand)));
    const ids = Uint32Array.from({ length: tokens }, (_, t) => (t === 0 ? vocab - 1 : t === 1 ? 0 : Math.floor(rand() * vocab)));
    const idBuffer = upload('ids', ids);
    const shape = { tokens, vocab, hidden, dtype };
    const whole = await run(tokens * hidden, (out) => prepareEmbedding(ctx, shape, idBuffer, upload('table', table), out));
    const split = await run(tokens * hidden, (out) => prepareEmbedding(ctx, shape, idBuffer, windowsOf(table, hidden, sizes), out));
    expect(split).toEqual(whole);
  });

  test('embedding: an id past the vocabulary writes its NaN row from the last window only', async () => {
    const table = encode('f32', Float64Array.from({ length: 6 * 4 }, (_, i) => i));
    const ids = upload('ids', Uint32Array.from([5, 6, 0, 1000]));
    const got = new Float32Array((await run(16, (out) => prepareEmbedding(ctx, { tokens: 4, vocab: 6, hidden: 4 }, ids, windowsOf(table, 4, [4, 2]), out))).buffer);
    expect(Array.from(got.subarray(0, 4))).toEqual([20, 21, 22, 23]);
    expect(Array.from(got.subarray(8, 12))).toEqual([0, 1, 2, 3]);
    for (const row of [1, 3]) expect(new Uint32Array(got.buffer, row * 16, 4)).toEqual(new Uint32Array(4).fill(0x7fc00000));
  });

  // [m, k, n, weight dtype, bias dtype, accumulate, window sizes, path]
  const LINEAR: [number, number, number, DType, DType | null, boolean, number[], string][] = [
    [3, 13, 37, 'bf16', 'bf16', false, [10, 10, 10, 7], 'rows kernel, odd k (unaligned reads), even windows; each window adds its columns of the bf16 bias'],
    [40, 600, 37, 'f32', 'f32', true, [16, 16, 5], 'large tiles, k split in 4 as for the whole (37-column) output; the reduction writes each window\'s columns onto a residual'],
    [20, 64, 130, 'f16', null, false, [64, 64, 2], '32-row tiles, one range: the tile kernel writes y directly at the window\'s columns'],
    [9, 2053, 19, 'bf16', 'f32', false, [4, 15], 'small tiles split 15 ranges by the whole shape\'s plan, odd k; windows narrower than a tile'],
  ];
  test.each(LINEAR)('linear: (%i × %i) · (%i × k)ᵀ %s, bias %s, accumulate %s, windows %j: %s', async (m, k, n, weightDType, biasDType, accumulate, sizes) => {
    const rand = mulberry32(m * 13 + k * 7 + n);
    const x = upload('x', Float32Array.from({ length: m * k }, () => gaussian(rand)));
    const weight = encode(weightDType, Float64Array.from({ length: n * k }, () => gaussian(rand) / Math.sqrt(k)));
    const bias = biasDType === null ? null : upload('bias', encode(biasDType, Float64Array.from({ length: n }, () => gaussian(rand))));
    const residual = accumulate ? Float32Array.from({ length: m * n }, () => gaussian(rand)) : undefined;
    const shape = { m, k, n, weightDType, biasDType: biasDType ?? undefined };
    const whole = await run(m * n, (y) => prepareLinear(ctx, shape, x, upload('weight', weight), bias, y, { accumulate }), residual);
    const split = await run(m * n, (y) => prepareLinear(ctx, shape, x, windowsOf(weight, k, sizes), bias, y, { accumulate }), residual);
    expect(split).toEqual(whole);
    expect(linearPlan({ m, k, n }, ctx.maxBindingBytes).splits).toBe(m === 40 ? 4 : m === 9 ? 15 : 1);
  });

  /** Reads row windows (f32, `cols` a row) back into one array's bits. */
  const joined = async (windows: RowWindow[], cols: number): Promise<Uint32Array> => {
    const out = new Uint32Array((windows.at(-1)!.firstRow + windows.at(-1)!.rows) * cols);
    for (const w of windows) out.set(new Uint32Array(await ctx.read('row-windows', w.buffer, w.rows * cols * 4)), w.firstRow * cols);
    return out;
  };

  // [m, k, n, bias, accumulate dx, window sizes, path]
  const LINEAR_BACKWARD: [number, number, number, boolean, boolean, number[], string][] = [
    [5, 13, 37, true, false, [10, 10, 10, 7], 'odd k and n; dx one fma chain over 4 windows (the first starts it, the rest continue it); db at each window\'s columns'],
    [70, 64, 40, false, true, [16, 16, 8], 'aligned windows: dy read in quads; accumulate dx: the chain in a scratch buffer, then added to dx'],
    [600, 36, 24, true, true, [6, 18], 'dW\'s row sum split in 2 by the whole shape\'s plan: partials per window, sum_main writing the window\'s dW rows and db columns'],
  ];
  test.each(LINEAR_BACKWARD)('linear backward: m %i, k %i, n %i, bias %s, accumulate dx %s, windows %j: %s', async (m, k, n, hasBias, accumulateDx, sizes) => {
    const rand = mulberry32(m * 31 + k * 7 + n);
    const values = (length: number) => Float32Array.from({ length }, () => gaussian(rand));
    const x = upload('x', values(m * k));
    const dy = upload('dy', values(m * n));
    const weight = values(n * k);
    const dWeightStart = values(n * k);
    const dBiasStart = hasBias ? values(n) : null;
    const dxStart = accumulateDx ? values(m * k) : new Float32Array(new Uint32Array(m * k).fill(POISON_BITS).buffer);
    const shape = { m, k, n, hasBias };
    const outputs = async (w: GPUBuffer | RowWindow[], dWeight: GPUBuffer | RowWindow[]) => {
      const dx = upload('dx', dxStart);
      const dBias = dBiasStart === null ? null : upload('dBias', dBiasStart);
      const prepared = await prepareLinearBackward(ctx, shape, { x, weight: w, dy, dx, dWeight, dBias }, { accumulateDx });
      try {
        await ctx.runPass('row-windows', (pass) => prepared.encode(pass));
      } finally {
        prepared.destroy();
      }
      return {
        dx: new Uint32Array(await ctx.read('row-windows', dx, m * k * 4)),
        dBias: dBias === null ? null : new Uint32Array(await ctx.read('row-windows', dBias, n * 4)),
      };
    };
    const wholeGrad = upload('dWeight', dWeightStart);
    const whole = await outputs(upload('weight', weight), wholeGrad);
    const gradWindows = windowsOf(dWeightStart, k, sizes);
    const split = await outputs(windowsOf(weight, k, sizes), gradWindows);
    expect(split).toEqual(whole);
    expect(await joined(gradWindows, k)).toEqual(new Uint32Array(await ctx.read('row-windows', wholeGrad, n * k * 4)));
    expect(linearBackwardSplits({ m, k, n }, ctx.maxBindingBytes).splits).toBe(m === 600 ? 2 : 1);
  });

  // [tokens, vocab, hidden, window sizes, path]
  const EMBEDDING_BACKWARD: [number, number, number, number[], string][] = [
    [50, 12, 5, [5, 5, 2], 'runs of one id across sorted blocks of 16 (combine per window); a window per dispatch pair'],
    [40, 300, 8, [128, 128, 44], 'most ids once; the rank computed once for every window'],
  ];
  test.each(EMBEDDING_BACKWARD)('embedding backward: %i tokens into (%i × %i) gradient windows %j: %s', async (tokens, vocab, hidden, sizes) => {
    const rand = mulberry32(tokens + vocab + hidden);
    const ids = upload('ids', Uint32Array.from({ length: tokens }, (_, t) => (t < 20 ? 3 : Math.floor(rand() * vocab))));
    const dy = upload('dy', Float32Array.from({ length: tokens * hidden }, () => gaussian(rand)));
    const start = Float32Array.from({ length: vocab * hidden }, () => gaussian(rand));
    const shape = { tokens, vocab, hidden };
    const wholeGrad = upload('dWeight', start);
    const gradWindows = windowsOf(start, hidden, sizes);
    for (const dWeight of [wholeGrad, gradWindows]) {
      const prepared = await prepareEmbeddingBackward(ctx, shape, { ids, dy, dWeight });
      try {
        await ctx.runPass('row-windows', (pass) => prepared.encode(pass));
      } finally {
        prepared.destroy();
      }
    }
    expect(await joined(gradWindows, hidden)).toEqual(new Uint32Array(await ctx.read('row-windows', wholeGrad, vocab * hidden * 4)));
  });

  test('windows that do not cover the rows in order are refused by name', async () => {
    const table = encode('f32', new Float64Array(6 * 4));
    const y = upload('y', new Float32Array(8));
    const x = upload('x', new Float32Array(8));
    await expect(prepareLinear(ctx, { m: 2, k: 4, n: 6 }, x, windowsOf(table, 4, [4, 1]), null, y)).rejects.toThrow(InvalidArgumentError);
    await expect(prepareLinear(ctx, { m: 2, k: 4, n: 6 }, x, windowsOf(table, 4, [4, 1]), null, y)).rejects.toThrow(/weight: expected row windows covering rows \[0, 6\)/);
    const [a, b] = windowsOf(table, 4, [4, 2]);
    await expect(prepareEmbedding(ctx, { tokens: 2, vocab: 6, hidden: 4 }, x, [b!, a!], y)).rejects.toThrow(/table: expected row windows covering rows \[0, 6\) in order, got a window of 2 rows from row 4 where row 0 should start/);
    const dy = upload('dy', new Float32Array(12));
    await expect(prepareLinearBackward(ctx, { m: 2, k: 4, n: 6, hasBias: false }, { x, weight: windowsOf(table, 4, [4, 2]), dy, dx: null, dWeight: windowsOf(table, 4, [3, 3]), dBias: null }))
      .rejects.toThrow(/dWeight: expected row windows of the weight's rows \(0:4,4:6\), got 0:3,3:6/);
  });
});
