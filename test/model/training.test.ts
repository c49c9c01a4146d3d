/**
 * The training graph's gradients: `intuitor grad` against transformers' float64 gradients (the
 * tiny-qwen2 fixture: Qwen2 layout, tied embeddings, q/k/v bias), and the graph against float64
 * finite differences of the reference forward on a Llama layout (untied lm_head, no bias,
 * explicit head_dim, a padded batch) with a loss on both log-probs and self-certainty.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GpuContext } from '../../src/gpu/context.js';
import { openSafetensors } from '../../src/io/safetensors.js';
import { PolicyModel } from '../../src/model/policy.js';
import { TrainingGraph } from '../../src/model/training.js';
import { nextTokenBatch } from '../../src/train/batch.js';
import { mulberry32 } from '../../src/util/random.js';
import { cli, expectSuccess } from '../cli/run-cli.js';
import { FIXTURES, describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES } from '../tolerances.js';
import { LLAMA_CONFIG, bf16Fixture, writeRandomCheckpoint } from './checkpoints.js';
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

  test('Llama layout, padded batch, loss on log-probs and self-certainty: float64 finite differences', async () => {
    const dir = join(tmp, 'llama');
    const config = await writeRandomCheckpoint(dir, LLAMA_CONFIG, 11);
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
        expect([...grads.keys()]).toContain('lm_head.weight');

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

  test('a model with 16-bit weights is refused, naming the remedy', async () => {
    const model = await PolicyModel.load(ctx, bf16Fixture(fixture, join(tmp, 'bf16')));
    try {
      expect(() => TrainingGraph.create(model)).toThrow(/model: expected a PolicyModel loaded with f32 weights .* got model\.embed_tokens\.weight stored as bf16/);
    } finally {
      model.destroy();
    }
  });
});
