/**
 * kernels/attention_backward.wgsl against the float64 reference (itself checked against central
 * finite differences of referenceAttention), on shapes that are not multiples of its tiles, with
 * GQA, padded batches (lengths 0 and 1) and outliers in q and k; plus overwrite and determinism.
 */
import { POISON_BITS } from '../../src/dtype.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { prepareAttention, referenceAttention, type AttentionShape } from '../../src/ops/attention.js';
import { attentionBackward, prepareAttentionBackward, referenceAttentionBackward } from '../../src/ops/attention-backward.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';

type Case = [shape: AttentionShape, lengths: number[], outliers: boolean, path: string];

const shape = (batch: number, seqLen: number, heads: number, kvHeads: number, headDim: number): AttentionShape => ({ batch, seqLen, heads, kvHeads, headDim });

const CASES: Case[] = [
  [shape(1, 1, 1, 1, 1), [1], false, 'one token, D 1: p = 1, so dq = dk = 0 and dv = dOut; one vec4 of a row, three zero lanes'],
  [shape(3, 17, 4, 1, 8), [17, 0, 5], false, 'multi-query 4:1, D 8: 32-row own tiles with 2 vec4s a row (32 of 256 threads busy in phase 2), 17 = one query past a 16-row stream tile; a length of 0'],
  [shape(2, 33, 2, 2, 5), [33, 20], true, 'D 5 (a ragged second vec4), MHA: no reduce pass, dk, dv written directly; 33 = one row past an own tile'],
  [shape(2, 70, 14, 2, 64), [70, 1], true, 'Qwen2.5-0.5B heads (GQA 7:1, D 64): own tiles of 32 (the third of 6 rows), stream tiles of 16, the reduce adds 7 shares; a length of 1'],
  [shape(2, 130, 3, 3, 80), [130, 77], false, 'D 80: (16, 8)-row tiles, 4 threads per dot product; 130 = 8·16 + 2 and 77 end mid-tile'],
  [shape(1, 37, 8, 2, 128), [37], true, 'D 128 (larger Qwen2.5 heads): the last head size of the (16, 8) tiles, GQA 4:1'],
  [shape(2, 19, 4, 2, 130), [19, 18], true, 'D 130: (8, 4)-row tiles, 16 threads per dot product, a half-filled last vec4'],
  [shape(1, 9, 2, 1, 256), [9], false, 'D 256, the largest head: 65-vec4 row stride fills the tile memory'],
];

/** q, k of N(0, 1) (with `outliers`, 2% of entries × 10: scores up to ~100, near one-hot softmax rows), v and dOut of N(0, 1). */
function inputs(s: AttentionShape, outliers: boolean) {
  const rand = mulberry32(s.seqLen * 31 + s.headDim * 7 + s.heads);
  const qLen = s.batch * s.seqLen * s.heads * s.headDim;
  const kvLen = s.batch * s.seqLen * s.kvHeads * s.headDim;
  const make = (n: number, spiky: boolean) => {
    const x = Float32Array.from({ length: n }, () => gaussian(rand));
    for (let i = 0; spiky && i < Math.max(1, n / 50); i++) x[Math.floor(rand() * n)]! *= 10;
    return x;
  };
  return { q: make(qLen, outliers), k: make(kvLen, outliers), v: make(kvLen, false), dOut: make(qLen, false) };
}

/**
 * Both sides divided by the largest |want| of the tensor: f32 error here follows ε·|score| times the
 * tensor's scale, so an element that cancels to ~0 carries the error of its large neighbours.
 */
function expectCloseToScale(what: string, got: Float32Array, want: Float64Array): void {
  const scale = want.reduce((m, x) => Math.max(m, Math.abs(x)), 0) || 1;
  expectClose(`${what} (÷ ${scale.toPrecision(3)})`, Float64Array.from(got, (x) => x / scale), want.map((x) => x / scale), TOLERANCES.attentionBackward);
}

describe('referenceAttentionBackward', () => {
  test.each([
    [shape(2, 5, 4, 2, 3), [5, 3]],
    [shape(1, 4, 3, 1, 2), [4]],
  ])('matches central finite differences of Σ dOut·referenceAttention on %j, lengths %j', (s, lengths) => {
    const rand = mulberry32(s.seqLen * 13 + s.heads);
    const draw = (n: number) => Float64Array.from({ length: n }, () => gaussian(rand));
    const q = draw(s.batch * s.seqLen * s.heads * s.headDim);
    const k = draw(s.batch * s.seqLen * s.kvHeads * s.headDim);
    const v = draw(k.length);
    const dOut = draw(q.length);
    const loss = (): number => referenceAttention(q, k, v, lengths, s).out.reduce((sum, o, i) => sum + o * dOut[i]!, 0);
    const h = 1e-5;
    const numeric = (x: Float64Array): Float64Array => Float64Array.from(x, (value, i) => {
      x[i] = value + h;
      const up = loss();
      x[i] = value - h;
      const down = loss();
      x[i] = value;
      return (up - down) / (2 * h);
    });
    const want = referenceAttentionBackward(q, k, v, dOut, lengths, s);
    expectClose('dq', want.dq, numeric(q), TOLERANCES.finiteDifferences);
    expectClose('dk', want.dk, numeric(k), TOLERANCES.finiteDifferences);
    expectClose('dv', want.dv, numeric(v), TOLERANCES.finiteDifferences);
  });
});

describeGpu('attention backward (WebGPU, causal, GQA)', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  test.each(CASES)('%j lengths %j, outliers %s: %s', async (s, lengths, outliers) => {
    const { q, k, v, dOut } = inputs(s, outliers);
    const got = await attentionBackward(ctx, q, k, v, dOut, lengths, s, { poison: true });
    const want = referenceAttentionBackward(q, k, v, dOut, lengths, s);
    expectCloseToScale('dq', got.dq, want.dq);
    expectCloseToScale('dk', got.dk, want.dk);
    expectCloseToScale('dv', got.dv, want.dv);
  });

  test('gradients are overwritten, not added, and bit-identical run to run', async () => {
    const s = shape(2, 70, 14, 2, 64);
    const lengths = [70, 41];
    const { q, k, v, dOut } = inputs(s, true);
    const once = await attentionBackward(ctx, q, k, v, dOut, lengths, s);
    const qBytes = q.byteLength;
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
    const buffers = {
      q: ctx.upload('test:q', q), k: ctx.upload('test:k', k), v: ctx.upload('test:v', v), dOut: ctx.upload('test:dOut', dOut), lengths: ctx.upload('test:lengths', Uint32Array.from(lengths)),
      out: ctx.createBuffer('test:out', qBytes, GPUBufferUsage.STORAGE), lse: ctx.createBuffer('test:lse', s.batch * s.heads * s.seqLen * 4, GPUBufferUsage.STORAGE),
      dq: ctx.upload('test:dq', new Uint32Array(q.length).fill(POISON_BITS), usage), dk: ctx.upload('test:dk', new Float32Array(k.length).fill(1), usage), dv: ctx.upload('test:dv', new Float32Array(v.length).fill(1), usage),
    };
    try {
      const forward = await prepareAttention(ctx, s, buffers);
      const backward = await prepareAttentionBackward(ctx, s, buffers);
      await ctx.runPass('test', (pass) => {
        forward.encode(pass);
        backward.encode(pass);
        backward.encode(pass);
      });
      forward.destroy();
      backward.destroy();
      for (const name of ['dq', 'dk', 'dv'] as const) {
        const twice = new Float32Array(await ctx.read('test', buffers[name], once[name].byteLength));
        expect(Buffer.from(twice.buffer).equals(Buffer.from(once[name].buffer))).toBe(true);
      }
    } finally {
      for (const buffer of Object.values(buffers)) buffer.destroy();
    }
  });

  test('bad shapes, lengths and buffers are refused before any GPU work', async () => {
    const s = shape(1, 2, 2, 1, 4);
    const x = new Float32Array(16);
    const kv = new Float32Array(8);
    await expect(attentionBackward(ctx, x, kv, kv, x, [2], { ...s, kvHeads: 3 })).rejects.toThrow(/heads: expected a multiple of kvHeads \(3\), got 2/);
    await expect(attentionBackward(ctx, x, kv, kv, x, [2], { ...s, headDim: 257 })).rejects.toThrow(/headDim: expected at most 256, got 257/);
    await expect(attentionBackward(ctx, x, kv, kv, x, [3], s)).rejects.toThrow(/lengths\[0\]: expected an integer in \[0, 2\], got 3/);
    await expect(attentionBackward(ctx, x, kv, kv, x, [1, 1], s)).rejects.toThrow(/lengths: expected one length per sequence \(1\), got 2/);
    await expect(attentionBackward(ctx, x, kv, kv, new Float32Array(15), [2], s)).rejects.toThrow(/dOut: expected Float32Array of 16 elements/);
    const big = (label: string) => ctx.createBuffer(label, 64, GPUBufferUsage.STORAGE);
    const buffers = { q: big('q'), k: big('k'), v: big('v'), out: big('out'), lse: big('lse'), lengths: big('lengths'), dOut: ctx.createBuffer('dOut', 48, GPUBufferUsage.STORAGE), dq: big('dq'), dk: big('dk'), dv: big('dv') };
    try {
      await expect(prepareAttentionBackward(ctx, s, buffers)).rejects.toThrow(/dOut: expected a GPUBuffer of at least 64 bytes, got 48 bytes/);
      await expect(prepareAttentionBackward(ctx, s, { ...buffers, dOut: buffers.q, dv: buffers.dk })).rejects.toThrow(/dk: expected a buffer of its own .*got the same buffer as dv/);
      await expect(prepareAttentionBackward(ctx, s, { ...buffers, dOut: buffers.q, dq: buffers.q })).rejects.toThrow(/dq: expected a buffer of its own .*got the same buffer as q/);
    } finally {
      for (const buffer of Object.values(buffers)) buffer.destroy();
    }
  });
});
