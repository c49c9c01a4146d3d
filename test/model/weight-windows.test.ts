/**
 * A checkpoint whose tensors exceed one storage binding: forced here by loading the tiny-qwen2
 * fixture with small windows (maxWindowBytes), so every weight matrix lives in row windows (the
 * tied embedding / lm_head in 10, each projection in 2 to 5). The forward, logits in windows and
 * generation must give bit for bit what the one-buffer model gives (same reads, same summation
 * order), in f32 and bf16, and so must scoring (the fused lm_head's vocabulary ranges do not move
 * with the windows). Training on windows: training-windows.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import type { GpuContext } from '../../src/gpu/context.js';
import { PolicyModel } from '../../src/model/policy.js';
import { PolicyTokenizer } from '../../src/model/tokenizer.js';
import { Scorer } from '../../src/score/engine.js';
import { mulberry32 } from '../../src/util/random.js';
import { FIXTURES, describeGpu, openGpu } from '../helpers.js';
import { bf16Fixture } from './checkpoints.js';

const fixture = join(FIXTURES, 'tiny-qwen2');
/** 39 f32 rows of 64 (the fixture's hidden size) a window: the 384-row embedding in 9 × 39 + 33. */
const WINDOW_BYTES = 10_000;

const bits = (values: Float32Array) => new Uint32Array(values.buffer, values.byteOffset, values.length);

describeGpu('weights in row windows (WebGPU)', () => {
  let ctx: GpuContext;
  let tmp: string;
  beforeAll(async () => {
    ctx = await openGpu();
    tmp = mkdtempSync(join(os.tmpdir(), 'intuitor-windows-'));
  });
  afterAll(() => {
    ctx.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  async function pair(dir: string, run: (whole: PolicyModel, split: PolicyModel) => Promise<void>): Promise<void> {
    const whole = await PolicyModel.load(ctx, dir);
    const split = await PolicyModel.load(ctx, dir, { maxWindowBytes: WINDOW_BYTES });
    try {
      await run(whole, split);
    } finally {
      whole.destroy();
      split.destroy();
    }
  }

  test('the loader cuts every tensor over maxWindowBytes into windows of whole rows, labelled by row range', async () => {
    await pair(fixture, async (whole, split) => {
      const { embed, lmHead, layers } = split.weights;
      expect(embed.windows.map((w) => w.rows)).toEqual([...new Array<number>(9).fill(39), 33]);
      expect(embed.windows.map((w) => w.firstRow)).toEqual(Array.from({ length: 10 }, (_, i) => 39 * i));
      expect(embed.windows[1]!.buffer.label).toBe('model.embed_tokens.weight[39:78]');
      expect(lmHead).toBe(embed);
      expect(layers[0]!.down.windows.map((w) => w.rows)).toEqual([14, 14, 14, 14, 8]);
      expect(layers[0]!.inputNorm.windows).toHaveLength(1);
      expect(whole.weights.embed.windows).toHaveLength(1);
      expect(() => embed.buffer).toThrow(/model\.embed_tokens\.weight: expected a tensor within one storage binding \(10000 bytes\) for an op that reads it whole, got 98304 bytes in 10 row windows/);
    });
  });

  // [batch, seqLen, path]: the lm_head and projections as linear_rows_main (m ≤ 8), 32-row tiles
  // with k split (m = 14) and 64-row tiles (m = 96); the embedding gather over every window.
  const SHAPES: [number, number, string][] = [
    [1, 5, 'rows kernel: each window of W read by its own dispatch'],
    [2, 7, '32-row tiles, k split by the whole shape\'s plan'],
    [4, 24, '64-row tiles'],
  ];
  test.each(SHAPES)('logits of %i × %i tokens equal the one-buffer model bit for bit (%s)', async (batch, seqLen) => {
    await pair(fixture, async (whole, split) => {
      const rand = mulberry32(batch * 100 + seqLen);
      const ids = Array.from({ length: batch * seqLen }, () => Math.floor(rand() * 384));
      ids[0] = 383;
      ids[1] = 0;
      expect(bits(await split.logits(ids, batch, seqLen))).toEqual(bits(await whole.logits(ids, batch, seqLen)));
    });
  });

  test('bf16 weights in windows: the same logits as one buffer each', async () => {
    const dir = bf16Fixture(fixture, join(tmp, 'bf16'));
    await pair(dir, async (whole, split) => {
      expect(split.weights.embed.windows.length).toBeGreaterThan(1);
      const ids = Array.from({ length: 3 * 9 }, (_, i) => (i * 37) % 384);
      expect(bits(await split.logits(ids, 3, 9))).toEqual(bits(await whole.logits(ids, 3, 9)));
    });
  });

  test('generation (prefill, KV-cache decode, GPU picks) gives the same tokens, log-probs and self-certainty', async () => {
    await pair(fixture, async (whole, split) => {
      const prompts = [[5, 17, 300, 2], [383, 1]];
      for (const sampling of [{ temperature: 0 }, { temperature: 0.9, topK: 40 }]) {
        const options = { maxNewTokens: 6, sampling, seeds: [3, 4] };
        expect(await split.generate(prompts, options)).toEqual(await whole.generate(prompts, options));
      }
    });
  });

  test.each([['f32'], ['bf16']] as const)('scoring (the fused lm_head over windows, ranges across them gathered) gives the one-buffer statistics bit for bit, %s', async (dtype) => {
    const dir = dtype === 'f32' ? fixture : bf16Fixture(fixture, join(tmp, 'bf16-score'));
    const rand = mulberry32(8);
    const ids = (n: number) => Array.from({ length: n }, () => Math.floor(rand() * 384));
    const items = Array.from({ length: 5 }, (_, i) => ({ id: i, promptIds: ids(3 + i), completionIds: ids(2 + 3 * i) }));
    const tokenizer = PolicyTokenizer.load(fixture);
    const whole = new Scorer(await PolicyModel.load(ctx, dir), tokenizer);
    const split = new Scorer(await PolicyModel.load(ctx, dir, { maxWindowBytes: WINDOW_BYTES }), tokenizer);
    try {
      const options = { temperature: 0.8, perToken: true };
      expect(await split.score(items, options)).toEqual(await whole.score(items, options));
    } finally {
      await whole.destroy();
      await split.destroy();
    }
  });

  test('maxWindowBytes outside [16, the binding] is refused by name', async () => {
    for (const bad of [8, ctx.maxBindingBytes + 1, 1.5]) {
      await expect(PolicyModel.load(ctx, fixture, { maxWindowBytes: bad })).rejects.toThrow(/options\.maxWindowBytes: expected an integer in \[16, /);
    }
  });
});
