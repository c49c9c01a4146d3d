/** kernels/attention.wgsl against the float64 reference: GQA, padding, tiles that don't divide T. */
import { InvalidArgumentError } from '../../src/errors.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { attention, referenceAttention, type AttentionShape } from '../../src/ops/attention.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

const CASES: [AttentionShape, number[], string][] = [
  [{ batch: 1, seqLen: 1, heads: 1, kvHeads: 1, headDim: 2 }, [1], 'one token: softmax over a single key'],
  [{ batch: 2, seqLen: 24, heads: 4, kvHeads: 2, headDim: 16 }, [24, 24], 'the tiny-qwen2 shape: GQA 2:1, keys in 2 tiles'],
  [{ batch: 3, seqLen: 70, heads: 6, kvHeads: 2, headDim: 20 }, [70, 33, 1], 'padded batch, 2 query blocks, ragged key tile'],
  [{ batch: 1, seqLen: 37, heads: 2, kvHeads: 1, headDim: 128 }, [37], 'Qwen2.5 head size (128), multi-query'],
];

describeGpu('attention (WebGPU, causal, GQA)', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  test.each(CASES)('%j lengths %j: %s', async (s, lengths) => {
    const rand = mulberry32(s.seqLen * 7 + s.headDim);
    const make = (n: number) => Float32Array.from({ length: n }, () => 2 * gaussian(rand));
    const q = make(s.batch * s.seqLen * s.heads * s.headDim);
    const k = make(s.batch * s.seqLen * s.kvHeads * s.headDim);
    const v = make(s.batch * s.seqLen * s.kvHeads * s.headDim);
    const got = await attention(ctx, q, k, v, lengths, s, { poisonOutputs: true });
    const want = referenceAttention(q, k, v, lengths, s);
    expectClose('out', got.out, want.out, TOLERANCES.attention);
    expectClose('lse', got.lse, want.lse, TOLERANCES.attention);
  });

  test('bad shapes and lengths are refused before any GPU work', async () => {
    const s = { batch: 1, seqLen: 2, heads: 3, kvHeads: 2, headDim: 4 };
    await expect(attention(ctx, new Float32Array(24), new Float32Array(16), new Float32Array(16), [2], s)).rejects.toThrow(/heads: expected a multiple of kvHeads \(2\), got 3/);
    const ok = { ...s, heads: 2 };
    await expect(attention(ctx, new Float32Array(16), new Float32Array(16), new Float32Array(16), [3], ok)).rejects.toThrow(InvalidArgumentError);
    await expect(attention(ctx, new Float32Array(16), new Float32Array(16), new Float32Array(16), [3], ok)).rejects.toThrow(/lengths\[0\]: expected an integer in \[0, 2\], got 3/);
  });
});
