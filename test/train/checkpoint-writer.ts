/**
 * The kill test's child (test/train/checkpoint.test.ts): saves checkpoints of about 20 MB in a loop
 * until killed, each step's content derived from the step alone (stepContent), so the parent can
 * regenerate what any checkpoint must hold. Prints `saved <step>` once each save has returned.
 *
 *   node dist/test/train/checkpoint-writer.js <outDir> <sourceModelDir> <firstStep>
 */
import { pathToFileURL } from 'node:url';
import type { HostTensor } from '../../src/io/tensor.js';
import type { AdamWState } from '../../src/optim/adamw.js';
import { saveCheckpoint, type CheckpointContent } from '../../src/train/checkpoint.js';
import { Rng, deriveSeed } from '../../src/util/random.js';

/** Odd shapes: about 7 MB of weights and 14 MB of moments. */
const SHAPES: [name: string, shape: number[]][] = [
  ['model.embed_tokens.weight', [1000, 1031]],
  ['model.layers.0.mlp.up_proj.weight', [777, 1001]],
  ['model.norm.weight', [1031]],
];

/** Random 32-bit patterns (NaN payloads included, which a copy through a float would change). */
function randomBits(count: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const bits = new Uint32Array(count);
  for (let i = 0; i < count; i++) bits[i] = rng.next() * 4294967296;
  return new Float32Array(bits.buffer);
}

/** What the checkpoint of `step` holds. */
export function stepContent(step: number, sourceModelDir: string): CheckpointContent {
  const tensors: Record<string, HostTensor> = {};
  const optimizer: AdamWState = {};
  SHAPES.forEach(([name, shape], i) => {
    const count = shape.reduce((a, b) => a * b, 1);
    tensors[name] = { dtype: 'f32', shape, data: randomBits(count, deriveSeed(step, i, 0)) };
    optimizer[name] = { m: randomBits(count, deriveSeed(step, i, 1)), v: randomBits(count, deriveSeed(step, i, 2)) };
  });
  const rng = new Rng(deriveSeed(step));
  for (let i = 0; i < step % 5; i++) rng.next();
  return { step, sourceModelDir, tensors, optimizer, trainerState: { rng: rng.state(), dataPosition: 8 * step, run: 'kill test' } };
}

async function main(): Promise<void> {
  const [outDir, sourceModelDir, first] = process.argv.slice(2);
  // A child whose parent died stops by itself after a while.
  for (let step = Number(first); step < Number(first) + 500; step++) {
    await saveCheckpoint(outDir!, stepContent(step, sourceModelDir!), { keep: 2 });
    process.stdout.write(`saved ${step}\n`);
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  });
}
