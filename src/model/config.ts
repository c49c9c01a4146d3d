/**
 * Hugging Face `config.json` for the policy: Qwen2ForCausalLM and LlamaForCausalLM. Every field
 * the model needs is read and checked; anything this implementation does not support (another
 * architecture, activation, RoPE scaling, sliding windows, MLP bias) is refused by name, never
 * approximated. RoPE theta is read from a top-level `rope_theta` (transformers v4 files) or
 * `rope_parameters.rope_theta` (v5 files). The architecture comes from `architectures` and/or
 * `model_type`; where both are present they must agree. A model folder's optional
 * `generation_config.json` adds its `eos_token_id`s, as transformers' generate uses them.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileFormatError, describe } from '../errors.js';

export type Architecture = 'qwen2' | 'llama';

export type RopeScaling =
  | { type: 'default' }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number };

export interface ModelConfig {
  architecture: Architecture;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  rmsNormEps: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  bosTokenId: number | null;
  eosTokenIds: number[];
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry a bias: always for Qwen2; with `attention_bias` for Llama, whose o_proj then has one too. */
  attentionBias: boolean;
  ropeTheta: number;
  ropeScaling: RopeScaling;
}

const ARCHITECTURES: Record<string, Architecture> = { Qwen2ForCausalLM: 'qwen2', LlamaForCausalLM: 'llama' };
/** config.json's `model_type` of each architecture (transformers' names). */
const MODEL_TYPES: Record<string, Architecture> = { qwen2: 'qwen2', llama: 'llama' };

type Json = Record<string, unknown>;

export function parseModelConfig(json: unknown, source = 'config.json'): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new FileFormatError(source, 'a JSON object', describe(json));
  const c = json as Json;
  const refuse = (what: string, got: unknown): never => {
    throw new FileFormatError(source, `a supported ${what}`, `${JSON.stringify(got)} (not supported)`);
  };
  const int = (key: string, fallback?: number): number => {
    const v = c[key] ?? fallback;
    if (!Number.isSafeInteger(v) || (v as number) < 1) throw new FileFormatError(source, `"${key}": a positive integer`, describe(v));
    return v as number;
  };
  const positive = (key: string, value: unknown): number => {
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new FileFormatError(source, `"${key}": a positive number`, describe(value));
    return value;
  };
  const tokenIds = (key: string): number[] => {
    const v = c[key];
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    if (!list.every((id) => Number.isSafeInteger(id) && id >= 0)) throw new FileFormatError(source, `"${key}": a token id or a list of them`, describe(v));
    return list as number[];
  };

  const architecture = architectureOf(c, source);
  if ((c.hidden_act ?? 'silu') !== 'silu') refuse('"hidden_act" (silu)', c.hidden_act);
  if (c.use_sliding_window === true) refuse('attention ("use_sliding_window": false)', c.use_sliding_window);
  if (Array.isArray(c.layer_types) && c.layer_types.some((t) => t !== 'full_attention')) refuse('"layer_types" (full_attention only)', c.layer_types);
  if (c.mlp_bias === true) refuse('MLP ("mlp_bias": false)', c.mlp_bias);
  if (architecture === 'qwen2' && c.attention_bias === false) refuse('Qwen2 attention (q/k/v bias is part of Qwen2)', c.attention_bias);

  const hiddenSize = int('hidden_size');
  const numHeads = int('num_attention_heads');
  const numKeyValueHeads = int('num_key_value_heads', numHeads);
  if (numHeads % numKeyValueHeads !== 0) throw new FileFormatError(source, '"num_attention_heads" a multiple of "num_key_value_heads"', `${numHeads} and ${numKeyValueHeads}`);
  const headDim = c.head_dim === undefined || c.head_dim === null ? hiddenSize / numHeads : int('head_dim');
  if (!Number.isSafeInteger(headDim) || headDim % 2 !== 0) throw new FileFormatError(source, 'an even head dimension (hidden_size / num_attention_heads, or "head_dim")', String(headDim));

  const ropeParameters = (c.rope_parameters ?? null) as Json | null;
  const ropeScalingJson = (c.rope_scaling ?? ropeParameters ?? null) as Json | null;
  const ropeTheta = positive('rope_theta', c.rope_theta ?? ropeParameters?.rope_theta ?? 10000);
  const ropeType = ropeScalingJson === null ? 'default' : String(ropeScalingJson.rope_type ?? ropeScalingJson.type ?? 'default');
  let ropeScaling: RopeScaling;
  if (ropeType === 'default') {
    ropeScaling = { type: 'default' };
  } else if (ropeType === 'llama3') {
    const s = ropeScalingJson!;
    ropeScaling = {
      type: 'llama3',
      factor: positive('rope_scaling.factor', s.factor),
      lowFreqFactor: positive('rope_scaling.low_freq_factor', s.low_freq_factor),
      highFreqFactor: positive('rope_scaling.high_freq_factor', s.high_freq_factor),
      originalMaxPositionEmbeddings: positive('rope_scaling.original_max_position_embeddings', s.original_max_position_embeddings),
    };
  } else {
    return refuse('RoPE type (default, llama3)', ropeType);
  }

  if (c.tie_word_embeddings !== undefined && typeof c.tie_word_embeddings !== 'boolean') {
    throw new FileFormatError(source, '"tie_word_embeddings": true or false', describe(c.tie_word_embeddings));
  }
  const eps = positive('rms_norm_eps', c.rms_norm_eps ?? 1e-6);
  const bos = tokenIds('bos_token_id');
  return {
    architecture, hiddenSize, numHeads, numKeyValueHeads, headDim,
    intermediateSize: int('intermediate_size'),
    numLayers: int('num_hidden_layers'),
    rmsNormEps: eps,
    vocabSize: int('vocab_size'),
    maxPositionEmbeddings: int('max_position_embeddings', 2048),
    bosTokenId: bos[0] ?? null,
    eosTokenIds: tokenIds('eos_token_id'),
    tieWordEmbeddings: (c.tie_word_embeddings as boolean | undefined) ?? false,
    attentionBias: architecture === 'qwen2' ? true : c.attention_bias === true,
    ropeTheta,
    ropeScaling,
  };
}

/**
 * The architecture named by `architectures` (one class) and `model_type`: either may be missing,
 * not both, and where both are present they must name the same architecture.
 */
function architectureOf(c: Json, source: string): Architecture {
  const absent = (v: unknown) => v === undefined || v === null;
  const { architectures, model_type: modelType } = c;
  const supportedTypes = Object.keys(MODEL_TYPES).join(', ');
  if (absent(architectures) && absent(modelType)) {
    throw new FileFormatError(source, `"architectures" (one of ${Object.keys(ARCHITECTURES).join(', ')}) or "model_type" (one of ${supportedTypes})`, 'neither');
  }
  const fromType = typeof modelType === 'string' && Object.hasOwn(MODEL_TYPES, modelType) ? MODEL_TYPES[modelType] : undefined;
  if (absent(architectures)) {
    if (fromType === undefined) throw new FileFormatError(source, `"model_type": one of ${supportedTypes}`, JSON.stringify(modelType));
    return fromType;
  }
  const name = Array.isArray(architectures) && architectures.length === 1 ? String(architectures[0]) : undefined;
  const architecture = name !== undefined && Object.hasOwn(ARCHITECTURES, name) ? ARCHITECTURES[name] : undefined;
  if (architecture === undefined) {
    throw new FileFormatError(source, `"architectures": one of ${Object.keys(ARCHITECTURES).join(', ')}`, JSON.stringify(architectures));
  }
  if (!absent(modelType) && fromType !== architecture) {
    const expected = Object.keys(MODEL_TYPES).find((t) => MODEL_TYPES[t] === architecture)!;
    throw new FileFormatError(source, `"model_type" agreeing with "architectures" ("${expected}" for ${name}; supported model types: ${supportedTypes})`,
      `"model_type": ${JSON.stringify(modelType)} with "architectures": ${JSON.stringify(architectures)}`);
  }
  return architecture;
}

function readJsonFile(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new FileFormatError(path, 'JSON', (err as Error).message);
  }
}

/**
 * The `eos_token_id`s of a folder's optional generation_config.json (an id or a list of them;
 * none when the file or the field is absent).
 */
function generationEosTokenIds(dir: string): number[] {
  const path = join(dir, 'generation_config.json');
  if (!existsSync(path)) return [];
  const json = readJsonFile(path);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new FileFormatError(path, 'a JSON object', describe(json));
  const v = (json as Json).eos_token_id;
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  if (!list.every((id) => Number.isSafeInteger(id) && id >= 0)) throw new FileFormatError(path, '"eos_token_id": a token id or a list of them', JSON.stringify(v));
  return list as number[];
}

/**
 * config.json of a model folder. `eosTokenIds` is config.json's EOS ids followed by those that
 * only generation_config.json lists (Qwen2.5-Instruct: 151645 in config.json, [151645, 151643]
 * there): generation stops at any of them, as in transformers.
 */
export function loadModelConfig(dir: string): ModelConfig {
  const path = join(dir, 'config.json');
  if (!existsSync(path)) throw new FileFormatError(path, 'a Hugging Face config.json in the model folder', 'no such file');
  const config = parseModelConfig(readJsonFile(path), path);
  const eos = new Set(config.eosTokenIds);
  for (const id of generationEosTokenIds(dir)) eos.add(id);
  return { ...config, eosTokenIds: [...eos] };
}

/**
 * RoPE inverse frequencies θ^(−2i/d), i < d/2, in float64, with Llama 3 scaling applied as
 * transformers' `_compute_llama3_parameters` does: long wavelengths divided by `factor`, short
 * ones kept, the band between interpolated smoothly.
 */
export function ropeInverseFrequencies(config: Pick<ModelConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float64Array {
  const half = config.headDim / 2;
  const inv = Float64Array.from({ length: half }, (_, i) => config.ropeTheta ** (-(2 * i) / config.headDim));
  const s = config.ropeScaling;
  if (s.type === 'default') return inv;
  const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) return f;
    if (wavelen > lowFreqWavelen) return f / s.factor;
    const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}
