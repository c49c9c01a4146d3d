/**
 * Checkpoints: bit-exact round trips, the Hugging Face layout (tied lm_head left out, config and
 * tokenizer files), pruning, leftovers of interrupted saves, and the kill test: a child process
 * saving in a loop is killed with SIGKILL at random moments, and after every kill the newest
 * checkpoint must load and equal, bit for bit, what its step was saved with.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GpuContext } from '../../src/gpu/context.js';
import { openSafetensors } from '../../src/io/safetensors.js';
import { bytesOf, type HostTensor } from '../../src/io/tensor.js';
import { loadModelConfig } from '../../src/model/config.js';
import { loadWeights } from '../../src/model/weights.js';
import { CHECKPOINT_FORMAT, latestCheckpoint, loadCheckpoint, saveCheckpoint, type CheckpointContent } from '../../src/train/checkpoint.js';
import { Rng, deriveSeed } from '../../src/util/random.js';
import { FIXTURES, describeGpu, openGpu } from '../helpers.js';
import { stepContent } from './checkpoint-writer.js';

const WRITER = fileURLToPath(new URL('./checkpoint-writer.js', import.meta.url));

/** Shapes of the round trip: a scalar, an empty tensor, odd sizes. */
const SHAPES: [string, number[]][] = [
  ['model.embed_tokens.weight', [37, 11]],
  ['model.layers.0.self_attn.q_proj.bias', [13]],
  ['model.norm.weight', [11]],
  ['lm_head.weight', [37, 11]],
  ['scalar', []],
  ['empty', [3, 0]],
];

function randomTensor(shape: number[], seed: number): HostTensor {
  const rng = new Rng(seed);
  const bits = Uint32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.next() * 4294967296);
  return { dtype: 'f32', shape, data: new Float32Array(bits.buffer) };
}

function sameBits(a: HostTensor['data'] | Float32Array, b: HostTensor['data'] | Float32Array): boolean {
  return Buffer.from(bytesOf(a)).equals(Buffer.from(bytesOf(b)));
}

let root: string;

/** A source model folder: config.json plus some tokenizer files (no merges.txt, no vocab.json). */
async function sourceModel(tied: boolean): Promise<string> {
  const dir = await fsp.mkdtemp(join(root, 'source-'));
  await fsp.writeFile(join(dir, 'config.json'), JSON.stringify({ model_type: 'qwen2', tie_word_embeddings: tied, torch_dtype: 'bfloat16', hidden_size: 11 }));
  await fsp.writeFile(join(dir, 'tokenizer.json'), '{"model": {}}');
  await fsp.writeFile(join(dir, 'tokenizer_config.json'), '{"eos_token": "<|endoftext|>"}');
  await fsp.writeFile(join(dir, 'generation_config.json'), '{"do_sample": true}');
  await fsp.writeFile(join(dir, 'model.safetensors'), 'not copied');
  return dir;
}

function content(step: number, sourceModelDir: string): CheckpointContent {
  const tensors = Object.fromEntries(SHAPES.map(([name, shape], i) => [name, randomTensor(shape, deriveSeed(step, i))]));
  const optimizer = {
    'model.embed_tokens.weight': { m: randomTensor([407], deriveSeed(step, 100)).data as Float32Array, v: randomTensor([407], deriveSeed(step, 101)).data as Float32Array },
    'model.norm.weight': { m: randomTensor([11], deriveSeed(step, 102)).data as Float32Array, v: randomTensor([11], deriveSeed(step, 103)).data as Float32Array },
  };
  return { step, sourceModelDir, tensors, optimizer, trainerState: { rng: 123456789, dataPosition: 42 + step, nested: { list: [1, 'two', null] } } };
}

async function newOut(): Promise<string> {
  return fsp.mkdtemp(join(root, 'out-'));
}

beforeAll(async () => {
  root = await fsp.mkdtemp(join(tmpdir(), 'intuitor-checkpoint-'));
});
afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

describe('checkpoints', () => {
  test('save → load round trip is bit-exact, in the Hugging Face layout', async () => {
    const source = await sourceModel(false);
    const out = await newOut();
    const saved = content(3, source);
    const dir = await saveCheckpoint(out, saved);
    expect(dir).toBe(join(out, 'checkpoint-3'));
    expect((await fsp.readdir(dir)).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'optimizer.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'trainer_state.json']);
    expect(JSON.parse(await fsp.readFile(join(out, 'latest.json'), 'utf8'))).toEqual({ step: 3, path: 'checkpoint-3' });
    expect(JSON.parse(await fsp.readFile(join(dir, 'config.json'), 'utf8'))).toEqual({ model_type: 'qwen2', tie_word_embeddings: false, torch_dtype: 'float32', hidden_size: 11 });
    expect(await fsp.readFile(join(dir, 'tokenizer.json'), 'utf8')).toBe('{"model": {}}');
    const model = await openSafetensors(join(dir, 'model.safetensors'));
    expect(model.metadata).toEqual({ format: 'pt' });
    model.close();
    const optimizerFile = await openSafetensors(join(dir, 'optimizer.safetensors'));
    expect([...optimizerFile.entries.keys()]).toEqual(['model.embed_tokens.weight.exp_avg', 'model.embed_tokens.weight.exp_avg_sq', 'model.norm.weight.exp_avg', 'model.norm.weight.exp_avg_sq']);
    expect(optimizerFile.entries.get('model.embed_tokens.weight.exp_avg')!.shape).toEqual([37, 11]);
    optimizerFile.close();
    expect(JSON.parse(await fsp.readFile(join(dir, 'trainer_state.json'), 'utf8'))).toMatchObject({ format: CHECKPOINT_FORMAT, version: 1, step: 3 });

    expect(await latestCheckpoint(out)).toBe(dir);
    const loaded = await loadCheckpoint(dir);
    expect(loaded.step).toBe(3);
    expect(loaded.trainerState).toEqual(saved.trainerState);
    expect(Object.keys(loaded.tensors).sort()).toEqual(Object.keys(saved.tensors).sort());
    for (const [name, tensor] of Object.entries(saved.tensors)) {
      expect(loaded.tensors[name]!.shape).toEqual(tensor.shape);
      expect(sameBits(loaded.tensors[name]!.data, tensor.data)).toBe(true);
    }
    expect(Object.keys(loaded.optimizer!).sort()).toEqual(Object.keys(saved.optimizer!).sort());
    for (const [name, { m, v }] of Object.entries(saved.optimizer!)) {
      expect(sameBits(loaded.optimizer![name]!.m, m) && sameBits(loaded.optimizer![name]!.v, v)).toBe(true);
    }
  });

  test('tied embeddings: lm_head.weight is not written; a contradicting `tied` is refused', async () => {
    const source = await sourceModel(true);
    const out = await newOut();
    const dir = await saveCheckpoint(out, { ...content(1, source), optimizer: null });
    const loaded = await loadCheckpoint(dir);
    expect('lm_head.weight' in loaded.tensors).toBe(false);
    expect('model.embed_tokens.weight' in loaded.tensors).toBe(true);
    expect(loaded.optimizer).toBeNull();
    expect(existsSync(join(dir, 'optimizer.safetensors'))).toBe(false);
    await expect(saveCheckpoint(out, content(2, source), { tied: false })).rejects.toThrow(/tied: expected true or nothing \(the source config.json's tie_word_embeddings is true\), got false/);
  });

  test('keep prunes the oldest folders; saving a step again replaces it', async () => {
    const source = await sourceModel(false);
    const out = await newOut();
    for (const step of [1, 2, 3, 4]) await saveCheckpoint(out, content(step, source));
    expect((await fsp.readdir(out)).sort()).toEqual(['checkpoint-3', 'checkpoint-4', 'latest.json']);
    await saveCheckpoint(out, content(5, source), { keep: 1 });
    expect((await fsp.readdir(out)).sort()).toEqual(['checkpoint-5', 'latest.json']);
    for (const step of [6, 7]) await saveCheckpoint(out, content(step, source), { keep: Infinity });
    expect((await fsp.readdir(out)).sort()).toEqual(['checkpoint-5', 'checkpoint-6', 'checkpoint-7', 'latest.json']);
    // A resumed run that saves step 6 again: the new folder replaces the old; 7 (higher) is kept.
    const again = { ...content(6, source), trainerState: { resumed: true } };
    await saveCheckpoint(out, again, { keep: 2 });
    expect((await fsp.readdir(out)).sort()).toEqual(['checkpoint-6', 'checkpoint-7', 'latest.json']);
    expect(await latestCheckpoint(out)).toBe(join(out, 'checkpoint-6'));
    expect((await loadCheckpoint(join(out, 'checkpoint-6'))).trainerState).toEqual({ resumed: true });
  });

  test('leftovers of interrupted saves are ignored, incomplete folders skipped, and the next save cleans up', async () => {
    const source = await sourceModel(false);
    const out = await newOut();
    expect(await latestCheckpoint(join(out, 'missing'))).toBeNull();
    expect(await latestCheckpoint(out)).toBeNull();
    await saveCheckpoint(out, content(4, source));
    // A save of step 9 killed half-way, a killed latest.json write, and a damaged checkpoint-7.
    const leftover = join(out, '.checkpoint-9.tmp-12345-abcdef');
    await fsp.mkdir(leftover);
    await fsp.writeFile(join(leftover, 'model.safetensors'), 'partial');
    await fsp.writeFile(join(out, 'latest.json.tmp-12345-abcdef'), '{"step": 9, "pa');
    await fsp.mkdir(join(out, 'checkpoint-7'));
    await fsp.writeFile(join(out, 'checkpoint-7', 'model.safetensors'), 'no trainer state');
    expect(await latestCheckpoint(out)).toBe(join(out, 'checkpoint-4'));
    await fsp.rm(join(out, 'latest.json'));
    expect(await latestCheckpoint(out)).toBe(join(out, 'checkpoint-4'));
    await fsp.writeFile(join(out, 'latest.json'), '{"step": 7, "path": "checkpoint-7"}');
    expect(await latestCheckpoint(out)).toBe(join(out, 'checkpoint-4'));

    await saveCheckpoint(out, content(5, source), { keep: 3 });
    expect((await fsp.readdir(out)).sort()).toEqual(['checkpoint-4', 'checkpoint-5', 'checkpoint-7', 'latest.json']);
    expect(await latestCheckpoint(out)).toBe(join(out, 'checkpoint-5'));
  });

  test('bad arguments and folders that are not checkpoints are refused', async () => {
    const source = await sourceModel(false);
    const out = await newOut();
    const good = content(1, source);
    await expect(saveCheckpoint(out, { ...good, step: -1 })).rejects.toThrow(/step: expected a non-negative integer, got -1/);
    await expect(saveCheckpoint(out, { ...good, tensors: { x: { dtype: 'f16', shape: [1], data: new Uint16Array(1) } } })).rejects.toThrow(/tensors\["x"\]\.dtype: expected 'f32'/);
    await expect(saveCheckpoint(out, { ...good, tensors: { x: { dtype: 'f32', shape: [2], data: new Float32Array(3) } } })).rejects.toThrow(/tensors\["x"\]\.data: expected 2 elements/);
    await expect(saveCheckpoint(out, { ...good, optimizer: { 'model.norm.weight': { m: new Float32Array(10), v: new Float32Array(11) } } })).rejects.toThrow(/optimizer\["model.norm.weight"\]\.m: expected a Float32Array of 11 elements \(the parameter's\)/);
    await expect(saveCheckpoint(out, { ...good, trainerState: { big: 1n } })).rejects.toThrow(/trainerState: expected a JSON-serialisable object/);
    await expect(saveCheckpoint(out, { ...good, sourceModelDir: join(root, 'nowhere') })).rejects.toThrow(/config.json: expected the config.json of the source model \(sourceModelDir\), got nothing: the file does not exist/);
    await expect(saveCheckpoint(out, good, { keep: 0 })).rejects.toThrow(/keep: expected a positive integer or Infinity, got 0/);
    expect(await fsp.readdir(out)).toEqual([]);
    await expect(loadCheckpoint(source)).rejects.toThrow(/trainer_state.json: expected a intuitor-checkpoint version 1 trainer state .* \(is .* a checkpoint folder\?\), got nothing/);
    const [first, second] = await Promise.allSettled([saveCheckpoint(out, good), saveCheckpoint(out, content(2, source))]);
    expect(first.status).toBe('fulfilled');
    expect(second.status === 'rejected' && String(second.reason)).toMatch(/another checkpoint is being saved there; await it first/);
  });

  test('kill -9 at random moments: the newest checkpoint always loads, bit for bit', async () => {
    const source = await sourceModel(false);
    const out = await newOut();
    const delays = new Rng(20_240_611);
    let reported = 0;
    let killedMidSave = 0;
    for (let round = 0; round < 8; round++) {
      const before = await latestCheckpoint(out);
      const first = before === null ? 1 : Number(basename(before).split('-')[1]) + 1;
      const child = spawn(process.execPath, [WRITER, out, source, String(first)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const exited = once(child, 'exit');
      await new Promise((resolve) => setTimeout(resolve, 150 + delays.next() * 1200));
      child.kill('SIGKILL');
      const [code, signal] = await exited;
      // A child that stopped by itself shows why.
      expect({ round, code, signal, stderr: code === null ? '' : stderr }).toEqual({ round, code: null, signal: 'SIGKILL', stderr: '' });
      for (const match of stdout.matchAll(/saved (\d+)/g)) reported = Math.max(reported, Number(match[1]));
      if ((await fsp.readdir(out)).some((name) => name.startsWith('.checkpoint-'))) killedMidSave++;

      const dir = await latestCheckpoint(out);
      if (dir === null) {
        expect(reported).toBe(0);
        continue;
      }
      const loaded = await loadCheckpoint(dir);
      // A save that reported success is never lost.
      expect(loaded.step).toBeGreaterThanOrEqual(reported);
      const expected = stepContent(loaded.step, source);
      expect(loaded.trainerState).toEqual(expected.trainerState);
      for (const [name, tensor] of Object.entries(expected.tensors)) {
        expect({ name, step: loaded.step, equal: sameBits(loaded.tensors[name]!.data, tensor.data) }).toEqual({ name, step: loaded.step, equal: true });
        const moments = loaded.optimizer![name]!;
        expect({ name, step: loaded.step, equal: sameBits(moments.m, expected.optimizer![name]!.m) && sameBits(moments.v, expected.optimizer![name]!.v) })
          .toEqual({ name, step: loaded.step, equal: true });
      }
      const visible = (await fsp.readdir(out)).filter((name) => /^checkpoint-\d+$/.test(name));
      expect(visible.length).toBeLessThanOrEqual(3);
    }
    expect(reported).toBeGreaterThanOrEqual(3);
    // The next save clears whatever the last kill left behind.
    await saveCheckpoint(out, stepContent(reported + 1, source));
    expect((await fsp.readdir(out)).filter((name) => name.startsWith('.') || name.includes('.tmp-'))).toEqual([]);
    console.log(`kill test: ${reported} saves reported, ${killedMidSave} of 8 kills left a save half-written`);
  }, 60_000);
});

describeGpu('checkpoints of a real model (WebGPU)', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await openGpu();
  });
  afterAll(() => ctx.close());

  test('a checkpoint of the tied tiny-qwen2 fixture loads with loadModelConfig and loadWeights', async () => {
    const fixture = join(FIXTURES, 'tiny-qwen2');
    const file = await openSafetensors(join(fixture, 'model.safetensors'));
    const tensors: Record<string, HostTensor> = {};
    for (const name of file.entries.keys()) tensors[name] = file.tensor(name);
    file.close();
    // The trainer may hand over its lm_head view of the tied embedding; it must not be written.
    tensors['lm_head.weight'] = tensors['model.embed_tokens.weight']!;
    const out = await newOut();
    const dir = await saveCheckpoint(out, { step: 10, sourceModelDir: fixture, tensors, optimizer: null, trainerState: {} });
    expect(existsSync(join(dir, 'tokenizer.json'))).toBe(true);
    const config = loadModelConfig(dir);
    expect(config.tieWordEmbeddings).toBe(true);
    const weights = await loadWeights(ctx, dir, config);
    try {
      expect(weights.tied).toBe(true);
      expect(weights.lmHead).toBe(weights.embed);
      const embed = await ctx.read('test:embed', weights.embed.buffer, weights.embed.bytes);
      expect(Buffer.from(embed).equals(Buffer.from(bytesOf(tensors['model.embed_tokens.weight']!.data)))).toBe(true);
    } finally {
      weights.destroy();
    }
  });
});
