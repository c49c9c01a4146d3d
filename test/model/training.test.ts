/**
 * The training graph's gradients: `intuitor grad` against transformers' float64 gradients (the
 * tiny-qwen2 fixture: Qwen2 layout, tied embeddings, q/k/v bias), and the graph against float64
 * finite differences of the reference forward on Llama layouts (untied lm_head, explicit
 * head_dim, a padded batch; no bias, and `attention_bias`'s q/k/v/o biases) with a loss on both
 * log-probs and self-certainty. A training session on the biased Llama trains the o bias without
 * weight decay and saves it under its Hugging Face name. A step's buffers: none of (rows, vocab).
 */
import { jest } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GpuContext } from '../../src/gpu/context.js';
import { openSafetensors } from '../../src/io/safetensors.js';
import { PolicyModel } from '../../src/model/policy.js';
import { TrainingGraph } from '../../src/model/training.js';
import { expectedParameters } from '../../src/model/weights.js';
import { nextTokenBatch } from '../../src/train/batch.js';
import { DEFAULT_OPTIMIZER } from '../../src/train/optimizer.js';
import { TrainingSession } from '../../src/train/session.js';
import { mulberry32 } from '../../src/util/random.js';
import { cli, expectSuccess } from '../cli/run-cli.js';
import { FIXTURES, describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES } from '../tolerances.js';
import { LLAMA_BIAS_CONFIG, LLAMA_CONFIG, bf16Fixture, writeRandomCheckpoint } from './checkpoints.js';
import { loadReferenceWeights, referenceModelForward } from './reference-forward.js';

const fixture = join(FIXTURES, 'tiny-qwen2');

function relativeL2(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < want.length; i++) {
    diff += (got[i]! - want[i]!) ** 2;
    norm += want[i]! ** 2;
  }
  return Math.sqrt(diff / norm);
}

describeGpu('training graph gradients', () => {
  let ctx: GpuContext;
  let tmp: string;
  beforeAll(async () => {
    ctx = await openGpu();
    tmp = mkdtempSync(join(tmpdir(), 'intuitor-grad-'));
  });
  afterAll(() => {
    ctx.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('intuitor grad on tiny-qwen2 matches ref_grads_f64 for every tensor', async () => {
    const out = join(tmp, 'grads.safetensors');
    const result = await cli(['grad', '--model', fixture, '--ids', join(fixture, 'ref_input_ids.npy'), '--out', out]);
    expectSuccess(result);
    const got = await openSafetensors(out);
    const want = await openSafetensors(join(fixture, 'ref_grads_f64.safetensors'));
    try {
      expect([...got.entries.keys()].sort()).toEqual([...want.entries.keys()].sort());
      for (const name of want.entries.keys()) {
        const g = got.tensor(name);
        const w = want.tensor(name);
        expect(g.dtype).toBe('f32');
        expect(g.shape).toEqual(w.shape);
        const err = relativeL2(g.data as Float32Array, w.data as Float64Array);
        if (!(err <= TOLERANCES.gradientRelativeL2.rtol)) throw new Error(`${name}: relative L2 error ${err}`);
      }
    } finally {
      got.close();
      want.close();
    }
  });

  test.each([
    ['no bias', 'llama', LLAMA_CONFIG],
    ['attention_bias (q/k/v/o biases)', 'llama-bias', LLAMA_BIAS_CONFIG],
  ] as const)('Llama layout, %s, padded batch, loss on log-probs and self-certainty: float64 finite differences', async (_, name, json) => {
    const dir = join(tmp, name);
    const config = await writeRandomCheckpoint(dir, json, 11);
    const [batch, seqLen, V] = [2, 7, config.vocabSize];
    const rand = mulberry32(5);
    const sequences = [Array.from({ length: 7 }, () => Math.floor(rand() * V)), Array.from({ length: 4 }, () => Math.floor(rand() * V))];
    const input = nextTokenBatch(sequences, [3, 1], seqLen);
    // A mixed loss: cross-entropy on the completion rows plus 0.3 · mean self-certainty of every real row.
    const realRows = sequences.flatMap((s, b) => s.map((_, t) => b * seqLen + t));
    const gSelfCertainty = new Float32Array(batch * seqLen);
    for (const r of realRows) gSelfCertainty[r] = 0.3 / realRows.length;

    const model = await PolicyModel.load(ctx, dir, { dtype: 'f32' });
    const graph = TrainingGraph.create(model);
    try {
      const step = await graph.prepareStep(batch, seqLen);
      try {
        graph.writeBatch(step, { ...input, gSelfCertainty });
        await graph.zeroGrads();
        await graph.forwardBackward(step);
        const grads = await graph.readGrads();
        // Every parameter of the checkpoint is trained (the o bias included when there is one), biases and norms without decay.
        expect([...grads.keys()].sort()).toEqual([...expectedParameters(config).keys()].sort());
        for (const p of graph.parameters) expect([p.name, p.decay]).toEqual([p.name, p.shape.length === 2]);

        const weight = await loadReferenceWeights(join(dir, 'model.safetensors'));
        const loss = (): number => {
          const logits = referenceModelForward(config, weight, input.ids, batch, seqLen, input.lengths);
          let total = 0;
          for (const r of realRows) {
            const z = logits.subarray(r * V, (r + 1) * V);
            const max = Math.max(...z);
            const lse = max + Math.log(z.reduce((s, v) => s + Math.exp(v - max), 0));
            const mean = z.reduce((s, v) => s + v, 0) / V;
            total += input.gLogprob[r]! * (z[input.targets[r]!]! - lse) + gSelfCertainty[r]! * (lse - mean - Math.log(V));
          }
          return total;
        };
        const h = 1e-5;
        for (const p of graph.parameters) {
          const values = weight(p.name);
          const got = grads.get(p.name)!;
          for (let trial = 0; trial < 3; trial++) {
            const i = Math.floor(rand() * p.numel);
            const original = values[i]!;
            values[i] = original + h;
            const up = loss();
            values[i] = original - h;
            const down = loss();
            values[i] = original;
            const want = (up - down) / (2 * h);
            const tol = TOLERANCES.modelFiniteDifferences;
            if (!(Math.abs(got[i]! - want) <= tol.atol + tol.rtol * Math.abs(want))) throw new Error(`${p.name}[${i}]: got ${got[i]}, finite differences ${want}`);
          }
        }
      } finally {
        step.destroy();
      }
    } finally {
      graph.destroy();
      model.destroy();
    }
  });

  test('Llama with attention_bias: a session trains the o bias without weight decay, saves it under its Hugging Face name, and resumes', async () => {
    const dir = join(tmp, 'llama-bias-session');
    const config = await writeRandomCheckpoint(dir, LLAMA_BIAS_CONFIG, 17);
    const out = join(tmp, 'llama-bias-session-out');
    const options = { model: dir, out, resume: false, keep: 2, optimizer: { ...DEFAULT_OPTIMIZER, lr: 0.1, totalSteps: 1, weightDecay: 0.5 } };
    const bias = 'model.layers.1.self_attn.o_proj.bias';
    const matrix = 'model.layers.1.self_attn.o_proj.weight';
    const source = await loadReferenceWeights(join(dir, 'model.safetensors'));
    let saved: string;
    let lr: number;
    const session = await TrainingSession.open(ctx, options);
    try {
      // Zero gradients: AdamW moves nothing, so only the decoupled decay changes a parameter.
      await session.graph.zeroGrads();
      ({ lr } = await session.optimizer.update(1));
      saved = await session.save(1, {});
    } finally {
      session.destroy();
    }
    const file = await openSafetensors(join(saved, 'model.safetensors'));
    try {
      expect([...file.entries.keys()].sort()).toEqual([...expectedParameters(config).keys()].sort());
      expect(file.entries.get(bias)!.shape).toEqual([config.hiddenSize]);
      expect(Array.from(file.tensor(bias).data as Float32Array)).toEqual(Array.from(source(bias)));
      const decayed = file.tensor(matrix).data as Float32Array;
      const factor = 1 - lr * 0.5;
      for (const [i, v] of source(matrix).entries()) expect(Math.abs(decayed[i]! - factor * v)).toBeLessThanOrEqual(1e-6 * Math.abs(v) + 1e-12);
    } finally {
      file.close();
    }
    const resumed = await TrainingSession.open(ctx, { ...options, resume: true });
    try {
      expect(resumed.startStep).toBe(1);
      expect(resumed.model.weights.layers.every((l) => l.oBias !== null)).toBe(true);
    } finally {
      resumed.destroy();
    }
  });

  test('a training step makes no (rows, vocab) buffer: the lm_head and the statistics run fused, one vocabulary slab of dL/dz at a time', async () => {
    const model = await PolicyModel.load(ctx, fixture, { dtype: 'f32' });
    const graph = TrainingGraph.create(model);
    const [batch, seqLen] = [2, 24];
    const rows = batch * seqLen;
    const vocab = model.config.vocabSize;
    const made: { label: string; size: number }[] = [];
    const original = ctx.createBuffer.bind(ctx);
    const spy = jest.spyOn(ctx, 'createBuffer').mockImplementation((label: string, size: number, usage: GPUBufferUsageFlags) => {
      made.push({ label, size });
      return original(label, size, usage);
    });
    try {
      // Slabs of 128 columns: a third of the vocabulary (the default, 64 MiB, holds all 384 here).
      const step = await graph.prepareStep(batch, seqLen, { lmHeadSlabBytes: rows * 4 * 128 });
      try {
        const rand = mulberry32(3);
        const ids = Array.from({ length: rows }, () => Math.floor(rand() * vocab));
        graph.writeBatch(step, { ids, lengths: [seqLen, seqLen - 5], targets: ids.map((_, r) => ids[(r + 1) % rows]!), gLogprob: new Float32Array(rows).fill(-1 / rows) });
        await graph.zeroGrads();
        await graph.forwardBackward(step);
        const logprob = new Float32Array(await ctx.read('test', step.stats.logprob, rows * 4));
        expect(logprob.every((v) => Number.isFinite(v) && v <= 0)).toBe(true);
      } finally {
        step.destroy();
      }
    } finally {
      spy.mockRestore();
      graph.destroy();
      model.destroy();
    }
    expect(made.length).toBeGreaterThan(0);
    // The largest a step makes are its (rows, intermediate = 176) activations; the slab of dz is rows × 128.
    expect(made.filter((b) => b.size >= rows * vocab * 4)).toEqual([]);
    expect(Math.max(...made.map((b) => b.size))).toBe(rows * model.config.intermediateSize * 4);
    expect(made.find((b) => b.label === 'lm_head_stats:d_logits_slab')!.size).toBe(rows * 128 * 4);
  }, 600_000);

  test('a model with 16-bit weights is refused, naming the remedy', async () => {
    const model = await PolicyModel.load(ctx, bf16Fixture(fixture, join(tmp, 'bf16')));
    try {
      expect(() => TrainingGraph.create(model)).toThrow(/model: expected a PolicyModel loaded with f32 weights .* got model\.embed_tokens\.weight stored as bf16/);
    } finally {
      model.destroy();
    }
  });
});
