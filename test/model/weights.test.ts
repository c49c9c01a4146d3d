/**
 * Loading Hugging Face checkpoints onto the GPU (src/model/weights.ts): the tiny-qwen2 fixture in
 * F32 and BF16, synthetic F16, sharded and Llama-layout checkpoints, tied lm_head copies, and an
 * error per way a checkpoint can be wrong. Buffers are read back and compared with the file bytes.
 */
import { jest } from '@jest/globals';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { bf16BitsToFloat, f16BitsToFloat, floatToF16Bits } from '../../src/dtype.js';
import { FileFormatError, GpuError, InvalidArgumentError } from '../../src/errors.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { openSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { bytesOf, type HostTensor } from '../../src/io/tensor.js';
import { loadModelConfig, parseModelConfig, type ModelConfig } from '../../src/model/config.js';
import { expectedParameters, loadWeights, type GpuTensor, type ModelWeights } from '../../src/model/weights.js';
import { mulberry32 } from '../../src/util/random.js';
import { FIXTURES, describeGpu, openGpu } from '../helpers.js';

const FIXTURE = path.join(FIXTURES, 'tiny-qwen2');

async function readAll(file: string): Promise<Record<string, HostTensor>> {
  const opened = await openSafetensors(file);
  try {
    return Object.fromEntries([...opened.entries.keys()].map((name) => [name, opened.tensor(name)]));
  } finally {
    opened.close();
  }
}

const llamaJson = {
  architectures: ['LlamaForCausalLM'], hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, head_dim: 16, rms_norm_eps: 1e-5, vocab_size: 50, max_position_embeddings: 128, tie_word_embeddings: false,
  attention_bias: false, rope_theta: 500000,
};
const llama: ModelConfig = parseModelConfig(llamaJson);
const llamaBias: ModelConfig = parseModelConfig({ ...llamaJson, attention_bias: true });

function randomTensors(config: ModelConfig, seed = 7): Record<string, HostTensor> {
  const rand = mulberry32(seed);
  const out: Record<string, HostTensor> = {};
  for (const [name, shape] of expectedParameters(config)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1)).map(() => rand() - 0.5);
    out[name] = { dtype: 'f32', shape, data };
  }
  return out;
}

describe('expectedParameters', () => {
  test('the tiny-qwen2 fixture: exactly the tensors model.safetensors holds, with their shapes', async () => {
    const config = loadModelConfig(FIXTURE);
    const opened = await openSafetensors(path.join(FIXTURE, 'model.safetensors'));
    try {
      const fromFile = new Map([...opened.entries.values()].map((e) => [e.name, e.shape]));
      expect(new Map([...expectedParameters(config)].sort())).toEqual(new Map([...fromFile].sort()));
    } finally {
      opened.close();
    }
  });

  test('Llama: no q/k/v biases, o_proj is [H, heads·headDim], an untied lm_head', () => {
    const params = expectedParameters(llama);
    expect(params.get('model.layers.1.self_attn.q_proj.weight')).toEqual([64, 32]);
    expect(params.get('model.layers.1.self_attn.k_proj.weight')).toEqual([32, 32]);
    expect(params.get('model.layers.1.self_attn.o_proj.weight')).toEqual([32, 64]);
    expect(params.get('model.layers.0.mlp.down_proj.weight')).toEqual([32, 48]);
    expect(params.get('lm_head.weight')).toEqual([50, 32]);
    expect([...params.keys()].some((n) => n.endsWith('.bias'))).toBe(false);
    expect(params.size).toBe(1 + 2 * 9 + 1 + 1);
  });

  test('Llama with attention_bias: q/k/v AND o_proj biases (transformers\' LlamaAttention); Qwen2: q/k/v only', () => {
    const params = expectedParameters(llamaBias);
    expect(params.get('model.layers.1.self_attn.q_proj.bias')).toEqual([64]);
    expect(params.get('model.layers.1.self_attn.k_proj.bias')).toEqual([32]);
    expect(params.get('model.layers.1.self_attn.v_proj.bias')).toEqual([32]);
    expect(params.get('model.layers.1.self_attn.o_proj.bias')).toEqual([32]);
    expect(params.size).toBe(1 + 2 * 13 + 1 + 1);
    expect([...expectedParameters(loadModelConfig(FIXTURE)).keys()].filter((n) => n.includes('o_proj.bias'))).toEqual([]);
  });
});

describeGpu('loadWeights', () => {
  let ctx: GpuContext;
  let tmp: string;
  let fixtureConfig: ModelConfig;
  let fixtureF32: Record<string, HostTensor>;
  let count = 0;
  const loaded: ModelWeights[] = [];

  beforeAll(async () => {
    ctx = await openGpu();
    tmp = await mkdtemp(path.join(os.tmpdir(), 'intuitor-weights-'));
    fixtureConfig = loadModelConfig(FIXTURE);
    fixtureF32 = await readAll(path.join(FIXTURE, 'model.safetensors'));
  });
  afterAll(async () => {
    for (const w of loaded) w.destroy();
    ctx?.close();
    await rm(tmp, { recursive: true, force: true });
  });

  async function load(dir: string, config: ModelConfig, options?: Parameters<typeof loadWeights>[3]): Promise<ModelWeights> {
    const w = await loadWeights(ctx, dir, config, options);
    loaded.push(w);
    return w;
  }

  /** A fresh folder holding `tensors` as model.safetensors, or as `shards` files plus an index. */
  async function checkpoint(tensors: Record<string, HostTensor>, shards = 0): Promise<string> {
    const dir = path.join(tmp, `ckpt-${count++}`);
    await mkdir(dir);
    if (shards === 0) {
      await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
      return dir;
    }
    const names = Object.keys(tensors).sort();
    const weightMap: Record<string, string> = {};
    for (let s = 0; s < shards; s++) {
      const file = `model-0000${s + 1}-of-0000${shards}.safetensors`;
      const mine = names.filter((_, i) => i % shards === s);
      await writeSafetensors(path.join(dir, file), Object.fromEntries(mine.map((n) => [n, tensors[n]!])));
      for (const n of mine) weightMap[n] = file;
    }
    await writeFile(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
    return dir;
  }

  async function readBack(t: GpuTensor): Promise<Uint8Array> {
    return new Uint8Array(await ctx.read(`read ${t.name}`, t.buffer, t.bytes));
  }

  function allTensors(w: ModelWeights): GpuTensor[] {
    const list = [w.embed, w.finalNorm, w.lmHead];
    for (const l of w.layers) list.push(...(Object.values(l).filter((t) => t !== null) as GpuTensor[]));
    return [...new Set(list)];
  }

  async function expectFileBytes(w: ModelWeights, tensors: Record<string, HostTensor>, names?: string[]): Promise<void> {
    const byName = new Map(allTensors(w).map((t) => [t.name, t]));
    for (const name of names ?? [...byName.keys()]) {
      const t = byName.get(name)!;
      const host = tensors[name]!;
      expect(t.shape).toEqual(host.shape);
      expect(Buffer.from(await readBack(t)).equals(Buffer.from(bytesOf(host.data)))).toBe(true);
    }
  }

  async function loadError(dir: string, config: ModelConfig, pattern: RegExp): Promise<FileFormatError> {
    const error = await loadWeights(ctx, dir, config).then(
      (w) => {
        w.destroy();
        throw new Error(`expected loading ${dir} to fail`);
      },
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(FileFormatError);
    expect((error as Error).message).toMatch(pattern);
    return error as FileFormatError;
  }

  test('tiny-qwen2 float32: tied, 2 layers with q/k/v biases, read back equal to the file', async () => {
    const w = await load(FIXTURE, fixtureConfig);
    expect(w.tied).toBe(true);
    expect(w.lmHead).toBe(w.embed);
    expect(w.layers).toHaveLength(2);
    expect(w.embed).toMatchObject({ name: 'model.embed_tokens.weight', dtype: 'f32', shape: [384, 64], bytes: 384 * 64 * 4 });
    expect(w.embed.buffer.label).toBe('model.embed_tokens.weight');
    expect(w.embed.buffer.usage).toBe(GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST);
    for (const layer of w.layers) {
      expect(layer.qBias?.shape).toEqual([64]);
      expect(layer.kBias?.shape).toEqual([32]);
      expect(layer.vBias?.shape).toEqual([32]);
    }
    expect(w.layers[1]!.down).toMatchObject({ name: 'model.layers.1.mlp.down_proj.weight', shape: [64, 176] });
    const fileBytes = Object.values(fixtureF32).reduce((sum, t) => sum + t.data.byteLength, 0);
    expect(w.bytes).toBe(fileBytes);
    expect(allTensors(w)).toHaveLength(Object.keys(fixtureF32).length);
    await expectFileBytes(w, fixtureF32, [
      'model.embed_tokens.weight', 'model.layers.0.self_attn.q_proj.bias', 'model.layers.1.mlp.down_proj.weight', 'model.norm.weight',
    ]);
  });

  test('tiny-qwen2 bfloat16: kept as bf16 (half the bytes), or decoded to f32 on request', async () => {
    const file = path.join(FIXTURE, 'model.bf16.safetensors');
    const dir = path.join(tmp, `bf16-${count++}`);
    await mkdir(dir);
    await copyFile(file, path.join(dir, 'model.safetensors'));
    const bf16 = await readAll(file);
    const w = await load(dir, fixtureConfig);
    expect(w.embed.dtype).toBe('bf16');
    expect(w.layers[0]!.qBias!.dtype).toBe('bf16');
    expect(w.embed.bytes).toBe(384 * 64 * 2);
    const f32 = await load(FIXTURE, fixtureConfig);
    expect(w.bytes).toBe(f32.bytes / 2);
    await expectFileBytes(w, bf16, ['model.embed_tokens.weight', 'model.layers.1.self_attn.k_proj.bias', 'model.layers.0.mlp.up_proj.weight']);

    const up = await load(file, fixtureConfig, { dtype: 'f32' }); // a .safetensors file may be named directly
    expect(up.bytes).toBe(f32.bytes);
    for (const t of [up.embed, up.layers[1]!.vBias!, up.layers[0]!.gate, up.finalNorm]) {
      expect(t.dtype).toBe('f32');
      const got = new Float32Array((await readBack(t)).buffer);
      const bits = bf16[t.name]!.data as Uint16Array;
      expect(Array.from(got)).toEqual(Array.from(bits, bf16BitsToFloat));
    }
  });

  test('float16: kept as f16, or decoded to f32', async () => {
    const f16: Record<string, HostTensor> = {};
    for (const [name, t] of Object.entries(fixtureF32)) {
      f16[name] = { dtype: 'f16', shape: t.shape, data: Uint16Array.from(t.data as Float32Array, floatToF16Bits) };
    }
    const dir = await checkpoint(f16);
    const w = await load(dir, fixtureConfig);
    expect(w.layers[1]!.o.dtype).toBe('f16');
    await expectFileBytes(w, f16, ['model.layers.1.self_attn.o_proj.weight', 'model.norm.weight']);
    const up = await load(dir, fixtureConfig, { dtype: 'f32' });
    const got = new Float32Array((await readBack(up.layers[1]!.o)).buffer);
    expect(Array.from(got)).toEqual(Array.from(f16['model.layers.1.self_attn.o_proj.weight']!.data as Uint16Array, f16BitsToFloat));
  });

  test('a sharded checkpoint (2 shards + model.safetensors.index.json) loads identically', async () => {
    const dir = await checkpoint(fixtureF32, 2);
    const w = await load(dir, fixtureConfig);
    expect(w.lmHead).toBe(w.embed);
    expect(w.bytes).toBe((await load(FIXTURE, fixtureConfig)).bytes);
    await expectFileBytes(w, fixtureF32);
    // The index itself may be named too.
    const viaIndex = await load(path.join(dir, 'model.safetensors.index.json'), fixtureConfig);
    await expectFileBytes(viaIndex, fixtureF32, ['model.layers.1.mlp.gate_proj.weight']);
  });

  test('Llama layout: explicit head_dim, no biases, an untied lm_head in its own buffer', async () => {
    const tensors = randomTensors(llama);
    tensors['model.layers.0.self_attn.rotary_emb.inv_freq'] = { dtype: 'f32', shape: [8], data: new Float32Array(8) };
    const w = await load(await checkpoint(tensors, 3), llama);
    expect(w.tied).toBe(false);
    expect(w.lmHead).not.toBe(w.embed);
    expect(w.lmHead.buffer).not.toBe(w.embed.buffer);
    expect(w.lmHead).toMatchObject({ name: 'lm_head.weight', shape: [50, 32], dtype: 'f32' });
    expect(w.layers.every((l) => l.qBias === null && l.kBias === null && l.vBias === null)).toBe(true);
    expect(w.layers[0]!.q.shape).toEqual([64, 32]);
    expect(w.layers[0]!.o.shape).toEqual([32, 64]);
    expect(allTensors(w)).toHaveLength(expectedParameters(llama).size);
    delete tensors['model.layers.0.self_attn.rotary_emb.inv_freq'];
    await expectFileBytes(w, tensors);
  });

  test('Llama with attention_bias: the o_proj bias loads as oBias, beside the q/k/v biases', async () => {
    const tensors = randomTensors(llamaBias);
    const w = await load(await checkpoint(tensors, 2), llamaBias);
    for (const [i, l] of w.layers.entries()) {
      expect(l.oBias).toMatchObject({ name: `model.layers.${i}.self_attn.o_proj.bias`, shape: [32], dtype: 'f32' });
      expect([l.qBias?.shape, l.kBias?.shape, l.vBias?.shape]).toEqual([[64], [32], [32]]);
    }
    expect(allTensors(w)).toHaveLength(expectedParameters(llamaBias).size);
    await expectFileBytes(w, tensors);
  });

  test('a tied checkpoint carrying an identical lm_head.weight: uploaded once', async () => {
    const withCopy = { ...fixtureF32, 'lm_head.weight': fixtureF32['model.embed_tokens.weight']! };
    const w = await load(await checkpoint(withCopy), fixtureConfig);
    expect(w.lmHead).toBe(w.embed);
    expect(w.bytes).toBe((await load(FIXTURE, fixtureConfig)).bytes);
  });

  test('destroy() destroys every buffer once, the tied embedding included', async () => {
    const w = await loadWeights(ctx, FIXTURE, fixtureConfig);
    const spies = allTensors(w).map((t) => jest.spyOn(t.buffer, 'destroy'));
    w.destroy();
    w.destroy();
    for (const spy of spies) expect(spy).toHaveBeenCalledTimes(1);
    expect(spies).toHaveLength(Object.keys(fixtureF32).length);
  });

  describe('errors', () => {
    const without = (tensors: Record<string, HostTensor>, ...names: string[]) =>
      Object.fromEntries(Object.entries(tensors).filter(([n]) => !names.includes(n)));

    test('no such folder, or a folder without safetensors', async () => {
      const missing = path.join(tmp, 'no-such-folder');
      await loadError(missing, fixtureConfig, /no-such-folder: expected a model folder .*no such file or folder/);
      const empty = path.join(tmp, `empty-${count++}`);
      await mkdir(empty);
      await loadError(empty, fixtureConfig, /expected a model folder holding model\.safetensors or model\.safetensors\.index\.json, got neither/);
      await writeFile(path.join(empty, 'pytorch_model.bin'), '');
      await loadError(empty, fixtureConfig, /got only pytorch_model\.bin \(convert the checkpoint to safetensors\)/);
    });

    test('a missing parameter is named', async () => {
      const dir = await checkpoint(without(fixtureF32, 'model.layers.1.mlp.up_proj.weight', 'model.layers.0.self_attn.v_proj.bias'));
      const error = await loadError(dir, fixtureConfig, /missing 2: "model\.layers\.0\.self_attn\.v_proj\.bias", "model\.layers\.1\.mlp\.up_proj\.weight"/);
      expect(error.path).toBe(path.join(dir, 'model.safetensors'));
    });

    test('an untied config needs lm_head.weight', async () => {
      const dir = await checkpoint(without(randomTensors(llama), 'lm_head.weight'));
      await loadError(dir, llama, /"tie_word_embeddings" is false, so lm_head\.weight is needed.*missing 1: "lm_head\.weight"/);
    });

    test('a wrong shape: expected vs got', async () => {
      const tensors = randomTensors(llama);
      tensors['model.layers.1.self_attn.k_proj.weight'] = { dtype: 'f32', shape: [64, 32], data: new Float32Array(64 * 32) };
      await loadError(await checkpoint(tensors), llama, /tensor "model\.layers\.1\.self_attn\.k_proj\.weight" of shape \[32, 32\], got shape \[64, 32\]/);
    });

    test('a parameter the architecture does not use: a q or o bias on a Llama without attention_bias, an extra layer', async () => {
      const tensors = randomTensors(llama);
      tensors['model.layers.0.self_attn.q_proj.bias'] = { dtype: 'f32', shape: [64], data: new Float32Array(64) };
      await loadError(await checkpoint(tensors), llama, /only parameters the llama config uses, got 1 it does not use: "model\.layers\.0\.self_attn\.q_proj\.bias" \(.*"attention_bias" is false\)/);
      delete tensors['model.layers.0.self_attn.q_proj.bias'];
      tensors['model.layers.1.self_attn.o_proj.bias'] = { dtype: 'f32', shape: [32], data: new Float32Array(32) };
      await loadError(await checkpoint(tensors), llama, /got 1 it does not use: "model\.layers\.1\.self_attn\.o_proj\.bias" \(.*"attention_bias" is false\)/);
      const deeper = { ...fixtureF32, 'model.layers.2.input_layernorm.weight': fixtureF32['model.norm.weight']! };
      await loadError(await checkpoint(deeper), fixtureConfig, /"model\.layers\.2\.input_layernorm\.weight" \(the config has "num_hidden_layers": 2\)/);
    });

    test('an o_proj bias on Qwen2 (which has none) is refused, naming the tensor and why; so is an MLP bias', async () => {
      const withOBias = { ...fixtureF32, 'model.layers.1.self_attn.o_proj.bias': { dtype: 'f32', shape: [64], data: new Float32Array(64).fill(0.5) } as HostTensor };
      await loadError(await checkpoint(withOBias), fixtureConfig,
        /only parameters the qwen2 config uses, got 1 it does not use: "model\.layers\.1\.self_attn\.o_proj\.bias" \(Qwen2 has q\/k\/v biases but no o_proj bias\)/);
      const withMlpBias = { ...randomTensors(llamaBias), 'model.layers.0.mlp.up_proj.bias': { dtype: 'f32', shape: [48], data: new Float32Array(48) } as HostTensor };
      await loadError(await checkpoint(withMlpBias), llamaBias, /"model\.layers\.0\.mlp\.up_proj\.bias" \(MLP biases are not supported: "mlp_bias" is false\)/);
    });

    test('an index that points at a missing shard; an index entry its shard lacks', async () => {
      const dir = await checkpoint(fixtureF32, 2);
      await rm(path.join(dir, 'model-00002-of-00002.safetensors'));
      const error = await loadError(dir, fixtureConfig, /shard "model-00002-of-00002\.safetensors" \(holding ".*"\) beside the index, got nothing: .* does not exist/);
      expect(error.path).toBe(path.join(dir, 'model.safetensors.index.json'));

      const other = await checkpoint(fixtureF32, 2);
      const indexPath = path.join(other, 'model.safetensors.index.json');
      const index = JSON.parse(await readFile(indexPath, 'utf8')) as { weight_map: Record<string, string> };
      index.weight_map['model.norm.weight'] = index.weight_map['model.norm.weight']!.includes('00001') ? 'model-00002-of-00002.safetensors' : 'model-00001-of-00002.safetensors';
      await writeFile(indexPath, JSON.stringify(index));
      await loadError(other, fixtureConfig, /expected tensor "model\.norm\.weight" \(model\.safetensors\.index\.json maps it to this shard\), got a shard without it/);
    });

    test('a malformed index', async () => {
      const dir = path.join(tmp, `bad-index-${count++}`);
      await mkdir(dir);
      await writeFile(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {} }));
      await loadError(dir, fixtureConfig, /"weight_map": \{tensor name: shard file\}/);
      await writeFile(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'model.norm.weight': '../elsewhere.safetensors' } }));
      await loadError(dir, fixtureConfig, /a shard file name beside the index for "model\.norm\.weight", got "\.\.\/elsewhere\.safetensors"/);
    });

    test('a dtype other than F32, BF16, F16 is refused by tensor and dtype', async () => {
      const tensors = { ...fixtureF32 };
      const norm = fixtureF32['model.layers.0.input_layernorm.weight']!;
      tensors['model.layers.0.input_layernorm.weight'] = { dtype: 'f64', shape: norm.shape, data: Float64Array.from(norm.data as Float32Array) };
      await loadError(await checkpoint(tensors), fixtureConfig, /tensor "model\.layers\.0\.input_layernorm\.weight" in F32, BF16 or F16, got F64/);
    });

    test('a tied checkpoint whose lm_head.weight differs from the embedding', async () => {
      const embed = fixtureF32['model.embed_tokens.weight']!;
      const data = Float32Array.from(embed.data as Float32Array);
      data[5] = data[5]! + 1;
      const dir = await checkpoint({ ...fixtureF32, 'lm_head.weight': { dtype: 'f32', shape: embed.shape, data } });
      await loadError(dir, fixtureConfig, /"lm_head\.weight" equal to "model\.embed_tokens\.weight" \("tie_word_embeddings" is true\), or absent, got a different tensor/);
    });

    test('an unknown options.dtype is an InvalidArgumentError', async () => {
      await expect(loadWeights(ctx, FIXTURE, fixtureConfig, { dtype: 'f16' as 'f32' })).rejects.toThrow(InvalidArgumentError);
    });
  });

  test('running out of GPU memory says how much the weights need, and frees what was uploaded', async () => {
    let calls = 0;
    const destroyed: ReturnType<typeof jest.fn>[] = [];
    // A context whose fourth upload fails the way Dawn reports out-of-memory.
    const tight = Object.create(ctx) as GpuContext;
    tight.scoped = async <T>(op: string, encode: () => T): Promise<T> => {
      if (++calls === 4) throw new GpuError(op, 'out-of-memory', 'allocation failed');
      const result = await ctx.scoped(op, encode);
      destroyed.push(jest.spyOn(result as unknown as GPUBuffer, 'destroy') as unknown as ReturnType<typeof jest.fn>);
      return result;
    };
    const error = await loadWeights(tight, FIXTURE, fixtureConfig).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GpuError);
    expect((error as GpuError).kind).toBe('out-of-memory');
    expect((error as Error).message).toMatch(/loadWeights: GPU out-of-memory error: the weights need 0\.4 MiB of GPU memory; the device ran out after 0\.\d MiB, at model\.[\w.]+: use a smaller model/);
    expect(destroyed).toHaveLength(3);
    for (const spy of destroyed) expect(spy).toHaveBeenCalledTimes(1);
  });
});
