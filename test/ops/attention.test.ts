/**
 * kernels/attention.wgsl against the float64 reference: the three head-size classes (D ≤ 64, ≤ 128,
 * ≤ 256: 64, 32 or 16 queries per workgroup, key tiles of 16, 16 or 8), GQA, padding, tiles that
 * don't divide T, head sizes that are not multiples of 4; then every variant of the D ≤ 64 class
 * (ATTENTION_VARIANTS: 32 or 64 rows, 16- or 32-key tiles, GQA packing, prefetch) on the D ≤ 64 cases.
 */
import { InvalidArgumentError } from '../../src/errors.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { ATTENTION_VARIANTS, DEFAULT_ATTENTION_VARIANT, attention, referenceAttention, type AttentionShape, type AttentionTuning } from '../../src/ops/attention.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

const CASES: [AttentionShape, number[], string][] = [
  [{ batch: 1, seqLen: 1, heads: 1, kvHeads: 1, headDim: 2 }, [1], 'one token: softmax over a single key'],
  [{ batch: 2, seqLen: 24, heads: 4, kvHeads: 2, headDim: 16 }, [24, 24], 'the tiny-qwen2 shape: GQA 2:1, keys in 2 tiles'],
  [{ batch: 3, seqLen: 70, heads: 6, kvHeads: 2, headDim: 20 }, [70, 33, 1], 'padded batch, 2 query blocks (the second all padding at lengths 33 and 1: no key tiles), ragged key tile'],
  [{ batch: 2, seqLen: 83, heads: 3, kvHeads: 1, headDim: 7 }, [0, 83], 'an empty sequence, D not a multiple of 4, 2 query blocks (second partial)'],
  [{ batch: 1, seqLen: 130, heads: 14, kvHeads: 2, headDim: 64 }, [129], 'Qwen2.5-0.5B heads (GQA 7:1, D = 64), 3 query blocks (15 or 29 packed row tiles, straddling heads), last query padding'],
  [{ batch: 2, seqLen: 77, heads: 4, kvHeads: 2, headDim: 64 }, [77, 38], 'D = 64 with a padded sequence: packed tiles mixing live and padding rows, ragged 16- and 32-key tiles, a last prefetch past the length'],
  [{ batch: 2, seqLen: 45, heads: 6, kvHeads: 2, headDim: 48 }, [45, 20], 'D = 48 (vec4 loads, columns 48..63 zero-padded), GQA 3:1: packed tiles of 32 or 64 rows end mid-token'],
  [{ batch: 1, seqLen: 37, heads: 2, kvHeads: 1, headDim: 128 }, [37], 'Qwen2.5 head size (128), multi-query: 32 queries per block, split score dot products'],
  [{ batch: 2, seqLen: 70, heads: 3, kvHeads: 3, headDim: 99 }, [70, 45], 'D class 128 padded from 99, 3 query blocks, K then V staged separately'],
  [{ batch: 1, seqLen: 40, heads: 2, kvHeads: 2, headDim: 256 }, [40], 'largest head (256): 16 queries, 8-key tiles, scores split 8 ways'],
  [{ batch: 2, seqLen: 21, heads: 4, kvHeads: 2, headDim: 131 }, [21, 17], 'D class 256 padded from 131, ragged 8-key tiles'],
];

function inputs(s: AttentionShape, rampKeys: boolean): { q: Float32Array; k: Float32Array; v: Float32Array } {
  const rand = mulberry32(s.seqLen * 7 + s.headDim);
  const make = (n: number) => Float32Array.from({ length: n }, () => 2 * gaussian(rand));
  const q = make(s.batch * s.seqLen * s.heads * s.headDim);
  const k = make(s.batch * s.seqLen * s.kvHeads * s.headDim);
  const v = make(s.batch * s.seqLen * s.kvHeads * s.headDim);
  if (rampKeys) {
    // Later keys score ever higher, so the running max rises tile after tile and every correction is used.
    const row = s.kvHeads * s.headDim;
    for (let i = 0; i < k.length; i++) k[i] = k[i]! * (0.25 + (Math.floor(i / row) % s.seqLen) / s.seqLen);
  }
  return { q, k, v };
}

describeGpu('attention (WebGPU, causal, GQA)', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  async function check(s: AttentionShape, lengths: number[], rampKeys: boolean, tuning: AttentionTuning = {}): Promise<void> {
    const { q, k, v } = inputs(s, rampKeys);
    const got = await attention(ctx, q, k, v, lengths, s, { poisonOutputs: true, tuning });
    const want = referenceAttention(q, k, v, lengths, s);
    expectClose('out', got.out, want.out, TOLERANCES.attention);
    expectClose('lse', got.lse, want.lse, TOLERANCES.attention);
  }

  test.each(CASES)('%j lengths %j: %s', async (s, lengths) => {
    await check(s, lengths, false);
  });

  test.each([64, 128, 256])('D = %d: scores rising along the sequence (the max moves every key tile)', async (headDim) => {
    await check({ batch: 1, seqLen: 48, heads: 2, kvHeads: 1, headDim }, [48], true);
  });

  // The default variant ran above; the others on every D ≤ 64 case, plus rising scores over 3 and
  // 7 key tiles (32-key tiles: 2 and 4) with GQA 3:1 packed.
  const OTHER_VARIANTS = ATTENTION_VARIANTS.filter((variant) => variant !== DEFAULT_ATTENTION_VARIANT);
  const D64_CASES = CASES.filter(([s]) => s.headDim <= 64);
  describe.each(OTHER_VARIANTS)('variant %s', (variant) => {
    test.each(D64_CASES)('%j lengths %j: %s', async (s, lengths) => {
      await check(s, lengths, false, { variant });
    });

    test('D = 64, GQA 3:1: scores rising along the sequence', async () => {
      await check({ batch: 1, seqLen: 100, heads: 3, kvHeads: 1, headDim: 64 }, [100], true, { variant });
    });
  });

  test('D = 64, GQA 3:1: scores rising along the sequence (default variant)', async () => {
    await check({ batch: 1, seqLen: 100, heads: 3, kvHeads: 1, headDim: 64 }, [100], true);
  });

  test('bad shapes and lengths are refused before any GPU work', async () => {
    const s = { batch: 1, seqLen: 2, heads: 3, kvHeads: 2, headDim: 4 };
    await expect(attention(ctx, new Float32Array(24), new Float32Array(16), new Float32Array(16), [2], s)).rejects.toThrow(/heads: expected a multiple of kvHeads \(2\), got 3/);
    const ok = { ...s, heads: 2 };
    await expect(attention(ctx, new Float32Array(16), new Float32Array(16), new Float32Array(16), [3], ok)).rejects.toThrow(InvalidArgumentError);
    await expect(attention(ctx, new Float32Array(16), new Float32Array(16), new Float32Array(16), [3], ok)).rejects.toThrow(/lengths\[0\]: expected an integer in \[0, 2\], got 3/);
    const tuning = { variant: 'q128k64' } as unknown as AttentionTuning;
    await expect(attention(ctx, new Float32Array(16), new Float32Array(16), new Float32Array(16), [2], ok, { tuning })).rejects.toThrow(/tuning\.variant: expected one of q64k16, /);
  });
});
