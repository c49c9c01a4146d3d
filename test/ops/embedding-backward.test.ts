/**
 * kernels/embedding_backward.wgsl against the float64 reference (itself checked against finite
 * differences of the forward reference): repeated ids whose sorted runs start, end and span at
 * and across its blocks of 16, the first and last rows of a 151,936-row table, and random
 * initial gradients that untouched rows must keep bit for bit.
 */
import type { GpuContext } from '../../src/gpu/context.js';
import { referenceEmbedding } from '../../src/ops/embedding.js';
import { embeddingBackward, prepareEmbeddingBackward, referenceEmbeddingBackward } from '../../src/ops/embedding-backward.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

type Ids = 'random' | 'same' | 'aligned';
type Case = [tokens: number, vocab: number, hidden: number, ids: Ids, path: string];

const CASES: Case[] = [
  [1, 1, 1, 'random', 'one token, one value: one block, one run, 255 idle threads'],
  [9, 37, 13, 'random', 'fewer tokens than a block; ids repeat and include 0 and vocab − 1'],
  [17, 3, 300, 'random', 'one token past a block; 3 ids: runs cross the block boundary; hidden > 256, ragged'],
  [100, 1, 5, 'same', 'every token the same id: one run over 7 blocks, a tail, 5 whole-block heads and a partial head'],
  [80, 7, 9, 'aligned', 'runs of exactly 16 and 32 on block boundaries: end-of-block runs that do not continue, a tail + one whole head'],
  [40, 151_936, 3, 'random', "Qwen2.5's vocabulary, few tokens: rows 0 and vocab − 1 touched, the others kept"],
  [1000, 50, 33, 'random', '63 blocks, runs of ~20 starting anywhere; 1000 tokens ranked in 32 workgroups, 125 per split'],
];

function makeIds(kind: Ids, tokens: number, vocab: number, rand: () => number): Uint32Array {
  if (kind === 'same') return new Uint32Array(tokens).fill(vocab - 1);
  if (kind === 'aligned') {
    // Sorted: 16 × id 1 (block 0), 32 × id 3 (blocks 1–2), 16 × id 4 (block 3), 16 × id 6 (block 4); shuffled.
    const ids = Uint32Array.from({ length: tokens }, (_, t) => (t < 16 ? 1 : t < 48 ? 3 : t < 64 ? 4 : 6));
    for (let t = tokens - 1; t > 0; t--) {
      const k = Math.floor(rand() * (t + 1));
      [ids[t], ids[k]] = [ids[k]!, ids[t]!];
    }
    return ids;
  }
  const ids = Uint32Array.from({ length: tokens }, () => Math.floor(rand() * vocab));
  ids[0] = vocab - 1;
  if (tokens > 1) ids[tokens - 1] = 0;
  return ids;
}

describe('referenceEmbeddingBackward', () => {
  test('matches central finite differences of referenceEmbedding, with repeated ids', () => {
    const [vocab, hidden] = [5, 3];
    const ids = [4, 0, 2, 4, 4, 2];
    const rand = mulberry32(9);
    const dy = Float64Array.from({ length: ids.length * hidden }, () => gaussian(rand));
    // The loss is linear in the table, so any step is exact: 0 ± 2^-10 keeps the f32 table exact.
    const table = new Float32Array(vocab * hidden);
    const loss = (): number => referenceEmbedding(ids, table, { vocab, hidden }).reduce((s, y, i) => s + y * dy[i]!, 0);
    const h = 2 ** -10;
    const numeric = Float64Array.from(table, (value, k) => {
      table[k] = value + h;
      const up = loss();
      table[k] = value - h;
      const down = loss();
      table[k] = value;
      return (up - down) / (2 * h);
    });
    expectClose('dWeight', referenceEmbeddingBackward(ids, dy, { vocab, hidden }), numeric, TOLERANCES.finiteDifferences);
  });
});

describeGpu('embedding backward (WebGPU)', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  test.each(CASES)('%i tokens into (%i × %i), %s ids: %s', async (tokens, vocab, hidden, kind) => {
    const rand = mulberry32(tokens * 17 + vocab * 5 + hidden);
    const ids = makeIds(kind, tokens, vocab, rand);
    const dy = Float32Array.from({ length: tokens * hidden }, () => gaussian(rand));
    const init = Float32Array.from({ length: vocab * hidden }, () => gaussian(rand));
    const got = await embeddingBackward(ctx, ids, dy, { vocab, hidden }, init);
    const gradient = referenceEmbeddingBackward(ids, dy, { vocab, hidden });
    expectClose(`embedding backward ${tokens} into ${vocab}x${hidden}`, got, Float64Array.from(gradient, (g, i) => init[i]! + g), TOLERANCES.embeddingBackward);
    const used = new Set(ids);
    for (let v = 0; v < vocab; v++) {
      if (used.has(v)) continue;
      const row = got.subarray(v * hidden, (v + 1) * hidden);
      if (!row.every((value, i) => Object.is(value, init[v * hidden + i]))) throw new Error(`row ${v} (no token) changed`);
    }
  });

  test('zero-initialised, a single occurrence is copied exactly; the result is bit-identical run to run', async () => {
    const [vocab, hidden] = [50, 33];
    const rand = mulberry32(4);
    const ids = makeIds('random', 1000, vocab, rand);
    ids[500] = 7; // the only 7
    ids.forEach((id, t) => { if (id === 7 && t !== 500) ids[t] = 8; });
    const dy = Float32Array.from({ length: ids.length * hidden }, () => gaussian(rand));
    const [a, b] = [await embeddingBackward(ctx, ids, dy, { vocab, hidden }), await embeddingBackward(ctx, ids, dy, { vocab, hidden, tokens: 1000 })];
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
    expect([...a.subarray(7 * hidden, 8 * hidden)]).toEqual([...dy.subarray(500 * hidden, 501 * hidden)]);
  });

  test('an id ≥ vocab in a GPU id buffer adds nothing', async () => {
    const [vocab, hidden] = [4, 5];
    const ids = Uint32Array.from([3, 4, 0, 0xffffffff, 4, 3]);
    const rand = mulberry32(8);
    const dy = Float32Array.from({ length: ids.length * hidden }, () => gaussian(rand));
    const bufIds = ctx.upload('test:ids', ids);
    const bufDy = ctx.upload('test:dy', dy);
    const bufDWeight = ctx.upload('test:dWeight', new Float32Array(vocab * hidden), GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    try {
      const prepared = await prepareEmbeddingBackward(ctx, { tokens: ids.length, vocab, hidden }, { ids: bufIds, dy: bufDy, dWeight: bufDWeight });
      try {
        await ctx.runPass('test:embedding_backward', (pass) => prepared.encode(pass));
      } finally {
        prepared.destroy();
      }
      const got = new Float32Array(await ctx.read('test:embedding_backward', bufDWeight, vocab * hidden * 4));
      expectClose('embedding backward with out-of-range ids', got, referenceEmbeddingBackward(ids, dy, { vocab, hidden }), TOLERANCES.embeddingBackward);
    } finally {
      for (const b of [bufIds, bufDy, bufDWeight]) b.destroy();
    }
  });

  test('bad arguments are refused before any GPU work', async () => {
    const dy = new Float32Array(6);
    const shape = { vocab: 3, hidden: 2 };
    await expect(embeddingBackward(ctx, [0, 3, 1], dy, shape)).rejects.toThrow(/ids\[1\]: expected an integer in \[0, 3\), got 3/);
    await expect(embeddingBackward(ctx, Int32Array.from([-1, 0, 0]), dy, shape)).rejects.toThrow(/ids\[0\]: expected an integer in \[0, 3\), got -1/);
    await expect(embeddingBackward(ctx, [], dy, shape)).rejects.toThrow(/ids: expected a non-empty/);
    await expect(embeddingBackward(ctx, [0, 1, 2], dy, { ...shape, tokens: 4 })).rejects.toThrow(/tokens: expected ids.length \(3\), got 4/);
    await expect(embeddingBackward(ctx, [0, 1], dy, shape)).rejects.toThrow(/dy: expected Float32Array of 4 elements/);
    await expect(embeddingBackward(ctx, [0, 1, 2], dy, shape, new Float32Array(5))).rejects.toThrow(/init: expected Float32Array of 6 elements/);
    await expect(embeddingBackward(ctx, [0], new Float32Array(65536), { vocab: 65536, hidden: 65536 })).rejects.toThrow(/shape: expected vocab·hidden < 2\^32/);
    await expect(embeddingBackward(ctx, [0], dy, { vocab: 3, hidden: 0 })).rejects.toThrow(/hidden: expected a positive integer/);
    const small = ctx.createBuffer('test:small', 16, GPUBufferUsage.STORAGE);
    const big = ctx.createBuffer('test:big', 64, GPUBufferUsage.STORAGE);
    try {
      await expect(prepareEmbeddingBackward(ctx, { tokens: 5, vocab: 2, hidden: 2 }, { ids: small, dy: big, dWeight: big })).rejects.toThrow(/ids: expected a GPUBuffer of at least 20 bytes/);
      await expect(prepareEmbeddingBackward(ctx, { tokens: 2, vocab: 5, hidden: 2 }, { ids: big, dy: big, dWeight: small })).rejects.toThrow(/dWeight: expected a GPUBuffer of at least 40 bytes/);
    } finally {
      small.destroy();
      big.destroy();
    }
  });
});
