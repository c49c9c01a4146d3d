/** Random Hugging Face checkpoints that tests build themselves (layouts the fixture doesn't cover). */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
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
