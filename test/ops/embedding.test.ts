/** kernels/embedding.wgsl against the reference (bit-exact), every table dtype, on rows that are not multiples of its workgroup. */
import { encode, floatToBf16Bits, floatToF16Bits, type DType } from '../../src/dtype.js';
import { InvalidArgumentError } from '../../src/errors.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { embedding, prepareEmbedding, referenceEmbedding } from '../../src/ops/embedding.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

type Case = [tokens: number, vocab: number, hidden: number, dtype: DType, path: string];

const CASES: Case[] = [
  [1, 1, 1, 'f32', 'one token, one value: 255 threads idle'],
  [9, 37, 13, 'bf16', 'odd hidden: rows alternate starting in the low and high half of a word; ids repeat and include the last row'],
  [9, 37, 13, 'f16', 'the same for f16'],
  [9, 37, 13, 'f32', 'the same for f32'],
  [1, 5, 3001, 'f16', 'one large row: 12 strided passes, a ragged last one, odd hidden'],
  [70_000, 3, 1, 'bf16', 'more tokens than one grid dimension holds: a 2-D grid; one value per row, so every row starts mid-word but the first of a pair'],
];

function randomIds(tokens: number, vocab: number, rand: () => number): Uint32Array {
  const ids = Uint32Array.from({ length: tokens }, () => Math.floor(rand() * vocab));
  ids[ids.length - 1] = vocab - 1;
  return ids;
}

describeGpu('embedding (WebGPU)', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  test.each(CASES)('%i tokens of (%i × %i) %s: %s', async (tokens, vocab, hidden, dtype) => {
    const rand = mulberry32(tokens * 17 + vocab * 5 + hidden);
    const table = encode(dtype, Float64Array.from({ length: vocab * hidden }, () => gaussian(rand)));
    const ids = randomIds(tokens, vocab, rand);
    const got = await embedding(ctx, ids, table, { vocab, hidden, dtype }, { poison: true });
    expectClose(`embedding ${tokens} of ${vocab}x${hidden} ${dtype}`, got, referenceEmbedding(ids, table, { vocab, hidden, dtype }), TOLERANCES.embedding);
  });

  test.each(['f16', 'bf16', 'f32'] as DType[])('%s special values keep their bits: ±0, subnormals, ±inf, NaN', async (dtype) => {
    const row = [0, -0, 1e-7, -3e-6, 6.1e-5, 65504, Infinity, -Infinity, NaN, 1.5, -2.25];
    const values = [...row, ...row.slice().reverse()]; // vocab 2, hidden 11: row 1 starts mid-word
    const table = dtype === 'f32' ? Float32Array.from(values) : Uint16Array.from(values, (v) => (dtype === 'f16' ? floatToF16Bits(v) : floatToBf16Bits(v)));
    const ids = [1, 0, 1];
    const shape = { vocab: 2, hidden: row.length, dtype };
    const got = await embedding(ctx, ids, table, shape, { poison: true });
    const want = Float32Array.from(referenceEmbedding(ids, table, shape));
    const [gotBits, wantBits] = [new Uint32Array(got.buffer), new Uint32Array(want.buffer)];
    for (let i = 0; i < want.length; i++) {
      if (Number.isNaN(want[i])) expect(got[i]).toBeNaN();
      else expect(`${i}: ${gotBits[i]!.toString(16)}`).toBe(`${i}: ${wantBits[i]!.toString(16)}`);
    }
  });

  test('an id ≥ vocab in a GPU id buffer writes a row of NaN, and only that row', async () => {
    const [vocab, hidden] = [4, 5];
    const table = encode('f16', Float64Array.from({ length: vocab * hidden }, (_, i) => i + 0.5));
    const ids = Uint32Array.from([3, 4, 0, 0xffffffff]);
    const sentinel = 12345; // not NaN, so the NaN rows were written by the kernel
    const bufIds = ctx.upload('test:ids', ids);
    const bufTable = ctx.upload('test:table', table);
    const bufOut = ctx.upload('test:out', new Float32Array(ids.length * hidden).fill(sentinel), GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    try {
      const prepared = await prepareEmbedding(ctx, { tokens: ids.length, vocab, hidden, dtype: 'f16' }, bufIds, bufTable, bufOut);
      await ctx.scoped('test:embedding', () => {
        const encoder = ctx.device.createCommandEncoder({ label: 'test:embedding' });
        const pass = encoder.beginComputePass({ label: 'test:embedding' });
        prepared.encode(pass);
        pass.end();
        ctx.device.queue.submit([encoder.finish()]);
      });
      prepared.destroy();
      const got = new Float32Array(await ctx.read('test:embedding', bufOut, ids.length * hidden * 4));
      expectClose('embedding with out-of-range ids', got, referenceEmbedding(ids, table, { vocab, hidden, dtype: 'f16' }), TOLERANCES.embedding);
      expect(got.subarray(hidden, 2 * hidden).every(Number.isNaN)).toBe(true);
    } finally {
      for (const b of [bufIds, bufTable, bufOut]) b.destroy();
    }
  });

  test('bad arguments are refused before any GPU work', async () => {
    const table = new Float32Array(6);
    await expect(embedding(ctx, [0, 3, 1], table, { vocab: 3, hidden: 2 })).rejects.toThrow(/ids\[1\]: expected an integer in \[0, 3\), got 3/);
    await expect(embedding(ctx, Int32Array.from([-1]), table, { vocab: 3, hidden: 2 })).rejects.toThrow(/ids\[0\]: expected an integer in \[0, 3\), got -1/);
    await expect(embedding(ctx, [0.5], table, { vocab: 3, hidden: 2 })).rejects.toThrow(InvalidArgumentError);
    await expect(embedding(ctx, [], table, { vocab: 3, hidden: 2 })).rejects.toThrow(/ids: expected a non-empty/);
    await expect(embedding(ctx, [0], table, { vocab: 3, hidden: 2, dtype: 'bf16' })).rejects.toThrow(/table: expected Uint16Array for dtype bf16/);
    await expect(embedding(ctx, [0], new Float32Array(5), { vocab: 3, hidden: 2 })).rejects.toThrow(/table: expected 6 elements/);
    await expect(embedding(ctx, [0], table, { vocab: 3, hidden: 0 })).rejects.toThrow(/hidden: expected a positive integer/);
    const small = ctx.createBuffer('test:small', 16, GPUBufferUsage.STORAGE);
    try {
      await expect(prepareEmbedding(ctx, { tokens: 5, vocab: 2, hidden: 2 }, small, small, small)).rejects.toThrow(/ids: expected a GPUBuffer of at least 20 bytes/);
    } finally {
      small.destroy();
    }
  });
});
