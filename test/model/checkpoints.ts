/** Random Hugging Face checkpoints that tests build themselves (layouts the fixture doesn't cover). */
import { closeSync, copyFileSync, mkdirSync, openSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors } from '../../src/io/safetensors.js';
import type { HostTensor } from '../../src/io/tensor.js';
import { parseModelConfig, type ModelConfig } from '../../src/model/config.js';
import { expectedParameters } from '../../src/model/weights.js';
import { gaussian, mulberry32 } from '../../src/util/random.js';

/** A small Llama layout: explicit head_dim, no q/k/v bias, untied lm_head, θ = 500000 with Llama 3 scaling. */
export const LLAMA_CONFIG = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 48, intermediate_size: 80, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, rms_norm_eps: 1e-5, vocab_size: 101, max_position_embeddings: 64,
  bos_token_id: 1, eos_token_id: 2, tie_word_embeddings: false, attention_bias: false, rope_theta: 500000,
  rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 },
};

/** LLAMA_CONFIG with `attention_bias`: transformers' LlamaAttention then gives q, k, v AND o_proj a bias. */
export const LLAMA_BIAS_CONFIG = { ...LLAMA_CONFIG, attention_bias: true };

/** Writes config.json and a model.safetensors of N(0, 0.2²) matrices and biases and 1 + N(0, 0.1²) norms into `dir`. */
export async function writeRandomCheckpoint(dir: string, json: Record<string, unknown>, seed = 7): Promise<ModelConfig> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(json));
  const config = parseModelConfig(json);
  const rand = mulberry32(seed);
  const tensors: Record<string, HostTensor> = {};
  for (const [name, shape] of expectedParameters(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const isNorm = name.endsWith('norm.weight');
    tensors[name] = { dtype: 'f32', shape, data: Float32Array.from({ length: n }, () => (isNorm ? 1 + 0.1 * gaussian(rand) : 0.2 * gaussian(rand))) };
  }
  await writeSafetensors(join(dir, 'model.safetensors'), tensors);
  return config;
}

/** A model folder at `dir` holding the fixture's config and its bf16 weights as model.safetensors. */
export function bf16Fixture(fixture: string, dir: string): string {
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(fixture, 'config.json'), join(dir, 'config.json'));
  copyFileSync(join(fixture, 'model.bf16.safetensors'), join(dir, 'model.safetensors'));
  return dir;
}

/** Qwen2.5-0.5B's config.json (494M parameters: 24 layers, hidden 896, V = 151,936, tied embeddings, q/k/v biases), stored bf16. */
export const QWEN25_05B_CONFIG = {
  architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24,
  num_attention_heads: 14, num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 1000000, vocab_size: 151936, max_position_embeddings: 32768,
  bos_token_id: 151643, eos_token_id: 151643, tie_word_embeddings: true, use_sliding_window: false, hidden_act: 'silu', torch_dtype: 'bfloat16',
};

/**
 * Writes config.json and a bf16 model.safetensors for `json` into `dir`, tensor by tensor (host
 * memory holds one tensor, not the ~1 GB file), written then renamed. Matrices and biases are
 * uniform with std 0.02 (transformers' init), norms 1; bf16 by truncating float32 (fast, and any
 * bf16 value will do). Returns the config.
 */
export function writeRandomBf16Checkpoint(dir: string, json: Record<string, unknown>, seed = 11): ModelConfig {
  mkdirSync(dir, { recursive: true });
  const config = parseModelConfig(json);
  const params = [...expectedParameters(config)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const fields: string[] = [];
  let offset = 0;
  for (const [name, shape] of params) {
    const bytes = 2 * shape.reduce((a, b) => a * b, 1);
    fields.push(`${JSON.stringify(name)}:${JSON.stringify({ dtype: 'BF16', shape, data_offsets: [offset, offset + bytes] })}`);
    offset += bytes;
  }
  const header = Buffer.from(`{${fields.join(',')}}`);
  const padded = Buffer.alloc(8 + Math.ceil(header.byteLength / 8) * 8, ' ');
  padded.writeBigUInt64LE(BigInt(padded.byteLength - 8), 0);
  header.copy(padded, 8);
  const path = join(dir, 'model.safetensors');
  const fd = openSync(`${path}.tmp`, 'w');
  try {
    writeSync(fd, padded);
    const rand = mulberry32(seed);
    const half = 0.02 * Math.sqrt(3);
    for (const [name, shape] of params) {
      const values = new Float32Array(shape.reduce((a, b) => a * b, 1));
      if (name.endsWith('norm.weight')) values.fill(1);
      else for (let i = 0; i < values.length; i++) values[i] = (2 * rand() - 1) * half;
      const words = new Uint32Array(values.buffer);
      const bits = new Uint16Array(values.length);
      for (let i = 0; i < bits.length; i++) bits[i] = words[i]! >>> 16;
      writeSync(fd, bits);
    }
  } finally {
    closeSync(fd);
  }
  renameSync(`${path}.tmp`, path);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(json));
  return config;
}
