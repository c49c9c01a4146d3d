/**
 * Training on weights in row windows (tensors larger than one storage binding), forced here by
 * loading the tiny-qwen2 fixture (tied embeddings, q/k/v bias) with small windows: the embedding /
 * tied lm_head in 10 or 12 windows, q and o in 2, gate and up in 5 or 6, down in 5 or 6. The fused
 * lm_head + statistics reduces over vocabulary ranges and slabs cut from column 0 (a range across
 * windows read from gathered rows, a slab across windows run as pieces continuing one fma chain
 * into dX, dW into the embedding's gradient windows), the projections' backward per window likewise,
 * the embedding's sorted scatter-add per window: every element is summed in the one-buffer order, so gradients, AdamW steps, optimiser state and
 * checkpoints are bit for bit those of the unsplit model. Only the global gradient norm adds
 * per-window sums of squares (another tree), so with clipping on it, and what follows from it,
 * agree within tolerance (the k bias, whose exact gradient is zero, within a looser one).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GpuContext } from '../../src/gpu/context.js';
import { PolicyModel } from '../../src/model/policy.js';
import { TrainingGraph } from '../../src/model/training.js';
import { DEFAULT_OPTIMIZER, Optimizer, type OptimizerConfig } from '../../src/train/optimizer.js';
import { runSft, type SftOptions } from '../../src/train/sft.js';
import { mulberry32 } from '../../src/util/random.js';
import { FIXTURES, describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES, firstViolation } from '../tolerances.js';

const fixture = join(FIXTURES, 'tiny-qwen2');
const VOCAB = 384;
/**
 * 10,000 bytes: 39 f32 rows of 64 a window (the embedding in 9 × 39 + 33, q in 39 + 25), windows
 * starting off a multiple of 4, so dy is read one element at a time. 8,192 bytes: 32-row windows
 * (the embedding in 12), every window on a multiple of 4, so dy is read in 16-byte quads.
 */
const WINDOW_SIZES = [10_000, 8_192];

const bits = (values: Float32Array) => new Uint32Array(values.buffer, values.byteOffset, values.length);

describeGpu('training on weights in row windows (WebGPU)', () => {
  let ctx: GpuContext;
  let tmp: string;
  beforeAll(async () => {
    ctx = await openGpu();
    tmp = mkdtempSync(join(tmpdir(), 'intuitor-train-windows-'));
  });
  afterAll(() => {
    ctx.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  /** One forward + backward of a padded random batch with a loss on log-probs and self-certainty. */
  async function gradients(graph: TrainingGraph, batch: number, seqLen: number): Promise<Map<string, Float32Array>> {
    const rand = mulberry32(batch * 1000 + seqLen);
    const rows = batch * seqLen;
    const ids = Array.from({ length: rows }, () => Math.floor(rand() * VOCAB));
    ids[0] = VOCAB - 1;
    ids[1] = 0;
    // Repeated ids: runs of the embedding's scatter-add that cross its sorted blocks.
    for (let i = 2; i < Math.min(rows, 40); i++) ids[i] = 7;
    const lengths = Array.from({ length: batch }, (_, b) => (b === batch - 1 ? Math.max(1, seqLen - 3) : seqLen));
    const targets = Array.from({ length: rows }, () => Math.floor(rand() * VOCAB));
    const gLogprob = Float32Array.from({ length: rows }, () => rand() - 0.5);
    const gSelfCertainty = Float32Array.from({ length: rows }, () => 0.3 * (rand() - 0.5));
    const step = await graph.prepareStep(batch, seqLen);
    try {
      graph.writeBatch(step, { ids, lengths, targets, gLogprob, gSelfCertainty });
      await graph.zeroGrads();
      await graph.forwardBackward(step);
      return await graph.readGrads();
    } finally {
      step.destroy();
    }
  }

  async function pair(maxWindowBytes: number, run: (whole: TrainingGraph, split: TrainingGraph) => Promise<void>): Promise<void> {
    const wholeModel = await PolicyModel.load(ctx, fixture, { dtype: 'f32' });
    const splitModel = await PolicyModel.load(ctx, fixture, { dtype: 'f32', maxWindowBytes });
    const whole = TrainingGraph.create(wholeModel);
    const split = TrainingGraph.create(splitModel);
    try {
      await run(whole, split);
    } finally {
      whole.destroy();
      split.destroy();
      wholeModel.destroy();
      splitModel.destroy();
    }
  }

  test('parameters and their gradients come in the weights\' row windows, a labelled buffer each', async () => {
    await pair(10_000, async (whole, split) => {
      const embed = split.parameters.find((p) => p.name === 'model.embed_tokens.weight')!;
      expect(embed.values.map((w) => w.rows)).toEqual([...new Array<number>(9).fill(39), 33]);
      expect(embed.grads.map((w) => [w.firstRow, w.rows])).toEqual(embed.values.map((w) => [w.firstRow, w.rows]));
      expect(embed.grads[1]!.buffer.label).toBe('grad:model.embed_tokens.weight[39:78]');
      expect(split.parameters.map((p) => [p.name, p.shape, p.decay])).toEqual(whole.parameters.map((p) => [p.name, p.shape, p.decay]));
      expect(split.gradBuffers.length).toBeGreaterThan(whole.gradBuffers.length);
    });
  });

  // [window bytes, batch, seqLen, path]. Backward: dW of 5 or 96 rows is one range per tile (added
  // to the gradient window directly); 512 rows split dW's row sum in 2 (partials, then sum_main
  // writing the window's rows of dW and its columns of db). Forward: linear_rows_main (m ≤ 8) or
  // 64-row tiles, as weight-windows.test.ts shows them bit-identical.
  const SHAPES: [number, number, number, string][] = [
    [10_000, 1, 5, 'rows forward; dW in one range; dy read element by element'],
    [10_000, 4, 128, '64-row tiles; dW split over rows into partials (sum_main per window)'],
    [8_192, 4, 24, 'windows on multiples of 4: dy read in 16-byte quads; dW in one range'],
  ];
  /** The first test compiles every training pipeline (minutes on a busy 2-core lavapipe). */
  const COMPILING_MS = 600_000;
  test.each(SHAPES)('windows of %i bytes, %i × %i tokens: every gradient equals the one-buffer model\'s bit for bit (%s)', async (bytes, batch, seqLen) => {
    await pair(bytes, async (whole, split) => {
      const want = await gradients(whole, batch, seqLen);
      const got = await gradients(split, batch, seqLen);
      expect([...got.keys()]).toEqual([...want.keys()]);
      for (const [name, values] of want) {
        expect(values.some((v) => v !== 0)).toBe(true);
        if (!bits(got.get(name)!).every((b, i) => b === bits(values)[i])) throw new Error(`${name}: the windowed gradient differs from the one-buffer one`);
      }
    });
  }, COMPILING_MS);

  // [window bytes, max grad norm]: 0 turns clipping off (everything bit for bit); 0.5 clips by the
  // norm of per-window sums of squares.
  const UPDATES: [number, number][] = [[10_000, 0], [8_192, 0], [10_000, 0.5]];
  test.each(UPDATES)('windows of %i bytes, max grad norm %d: two AdamW steps (weight decay on matrices only) and the moments by Hugging Face name match the one-buffer run', async (bytes, maxGradNorm) => {
    const config: OptimizerConfig = { ...DEFAULT_OPTIMIZER, lr: 1e-2, totalSteps: 3, weightDecay: 0.1, maxGradNorm };
    await pair(bytes, async (whole, split) => {
      const optimizers = [await Optimizer.create(whole, config), await Optimizer.create(split, config)];
      try {
        for (const step of [1, 2]) {
          for (const graph of [whole, split]) await gradients(graph, 2, 16 + step);
          const [w, s] = await Promise.all(optimizers.map((o) => o.update(step)));
          if (firstViolation([s!.gradNorm], [w!.gradNorm], TOLERANCES.sumSquares) !== null) throw new Error(`grad norm ${s!.gradNorm} vs ${w!.gradNorm}`);
          expect(s!.clipScale < 1).toBe(maxGradNorm > 0);
        }
        const [wantValues, gotValues] = await Promise.all([whole.readParameters(), split.readParameters()]);
        const [wantState, gotState] = await Promise.all(optimizers.map((o) => o.state()));
        expect(Object.keys(gotState!)).toEqual([...wantValues.keys()]);
        for (const [name, want] of wantValues) {
          const pairs: [string, Float32Array, Float32Array][] = [['value', gotValues.get(name)!, want], ['exp_avg', gotState![name]!.m, wantState![name]!.m], ['exp_avg_sq', gotState![name]!.v, wantState![name]!.v]];
          for (const [what, got, ref] of pairs) {
            if (maxGradNorm === 0) {
              if (!bits(got).every((b, i) => b === bits(ref)[i])) throw new Error(`${name} ${what}: differs from the one-buffer run`);
            } else {
              const v = firstViolation(got, ref, what === 'value' && name.endsWith('k_proj.bias') ? TOLERANCES.windowedClippingNoise : TOLERANCES.windowedClipping);
              if (v !== null) throw new Error(`${name} ${what}[${v.index}]: ${v.got} vs ${v.want}`);
            }
          }
        }
        // Moments by Hugging Face name load back into the windows (what a resume does).
        optimizers[1]!.loadState(wantState!);
        const reloaded = await optimizers[1]!.state();
        for (const [name, { m, v }] of Object.entries(wantState!)) {
          expect(bits(reloaded[name]!.m)).toEqual(bits(m));
          expect(bits(reloaded[name]!.v)).toEqual(bits(v));
        }
      } finally {
        for (const o of optimizers) o.destroy();
      }
    });
  });

  test('SFT in windows: the same losses, checkpoint bytes (weights and moments under Hugging Face names) as one buffer, and a bit-identical resume', async () => {
    const data = join(tmp, 'data.jsonl');
    writeFileSync(data, [{ prompt: 'What is 12 times 7?', completion: ' 84' }, { prompt: '37+44=', completion: '81' }].map((l) => JSON.stringify(l)).join('\n') + '\n');
    const options = (out: string, extra: Partial<SftOptions> = {}): SftOptions => ({
      model: fixture, data, out, steps: 2, batchSize: 2, saveEvery: 1, optimizer: { lr: 1e-2, weightDecay: 0.1, maxGradNorm: 0 }, ...extra,
    });
    const losses = (out: string) => readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss as number);
    const files = (checkpoint: string) => ['model.safetensors', 'optimizer.safetensors'].map((f) => readFileSync(join(checkpoint, f)));

    const whole = await runSft(ctx, options(join(tmp, 'whole')));
    const split = await runSft(ctx, options(join(tmp, 'split'), { maxWindowBytes: 10_000 }));
    expect(losses(join(tmp, 'split'))).toEqual(losses(join(tmp, 'whole')));
    const [wantModel, wantOptimizer] = files(whole.checkpoint);
    const [gotModel, gotOptimizer] = files(split.checkpoint);
    expect(gotModel!.equals(wantModel!)).toBe(true);
    expect(gotOptimizer!.equals(wantOptimizer!)).toBe(true);

    // Interrupted after step 1 and resumed in windows: the joined moments load back into windows.
    const resumedOut = join(tmp, 'resumed');
    await runSft(ctx, options(resumedOut, { steps: 1, maxWindowBytes: 10_000 }));
    const resumed = await runSft(ctx, options(resumedOut, { resume: true, maxWindowBytes: 10_000 }));
    expect(losses(resumedOut)).toEqual(losses(join(tmp, 'split')));
    const [resumedModel, resumedOptimizer] = files(resumed.checkpoint);
    expect(resumedModel!.equals(wantModel!)).toBe(true);
    expect(resumedOptimizer!.equals(wantOptimizer!)).toBe(true);
  });
});
