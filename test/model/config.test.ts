/** Hugging Face config.json parsing for Qwen2 and Llama checkpoints (src/model/config.ts). */
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileFormatError } from '../../src/errors.js';
import { loadModelConfig, parseModelConfig, ropeInverseFrequencies } from '../../src/model/config.js';
import { FIXTURES } from '../helpers.js';

const llama = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 96, intermediate_size: 256, num_hidden_layers: 3,
  num_attention_heads: 6, num_key_value_heads: 2, head_dim: 32, rms_norm_eps: 1e-5, vocab_size: 500, max_position_embeddings: 8192,
  bos_token_id: 1, eos_token_id: [2, 3], tie_word_embeddings: false, attention_bias: false, rope_theta: 500000,
  rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
};

describe('parseModelConfig', () => {
  test('the tiny-qwen2 fixture (transformers v5: rope_parameters.rope_theta)', () => {
    const c = loadModelConfig(join(FIXTURES, 'tiny-qwen2'));
    expect(c).toMatchObject({
      architecture: 'qwen2', hiddenSize: 64, intermediateSize: 176, numLayers: 2, numHeads: 4, numKeyValueHeads: 2, headDim: 16,
      rmsNormEps: 1e-6, vocabSize: 384, maxPositionEmbeddings: 256, bosTokenId: 0, eosTokenIds: [0], tieWordEmbeddings: true,
      attentionBias: true, ropeTheta: 10000, ropeScaling: { type: 'default' },
    });
  });

  test('a transformers v4 Qwen2 file: top-level rope_theta, rope_scaling null', () => {
    const c = parseModelConfig({ architectures: ['Qwen2ForCausalLM'], hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24,
      num_attention_heads: 14, num_key_value_heads: 2, rms_norm_eps: 1e-6, vocab_size: 151936, max_position_embeddings: 32768,
      rope_theta: 1000000, rope_scaling: null, tie_word_embeddings: true, eos_token_id: 151643, bos_token_id: 151643 });
    expect(c).toMatchObject({ headDim: 64, ropeTheta: 1e6, attentionBias: true, eosTokenIds: [151643], ropeScaling: { type: 'default' } });
  });

  test('the Llama layout: explicit head_dim, no q/k/v bias, untied lm_head, Llama 3 RoPE scaling', () => {
    const c = parseModelConfig(llama);
    expect(c).toMatchObject({ architecture: 'llama', headDim: 32, attentionBias: false, tieWordEmbeddings: false, eosTokenIds: [2, 3], ropeTheta: 500000 });
    expect(c.ropeScaling).toEqual({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
  });

  test.each([
    ['another architecture', { ...llama, architectures: ['MistralForCausalLM'] }, /"architectures": one of Qwen2ForCausalLM, LlamaForCausalLM, got \["MistralForCausalLM"\]/],
    ['another activation', { ...llama, hidden_act: 'gelu' }, /a supported "hidden_act" \(silu\), got "gelu" \(not supported\)/],
    ['YaRN RoPE scaling', { ...llama, rope_scaling: { rope_type: 'yarn', factor: 4 } }, /a supported RoPE type \(default, llama3\), got "yarn" \(not supported\)/],
    ['sliding-window attention', { ...llama, use_sliding_window: true }, /use_sliding_window/],
    ['MLP bias', { ...llama, mlp_bias: true }, /mlp_bias/],
    ['heads not divisible by key/value heads', { ...llama, num_key_value_heads: 4 }, /a multiple of "num_key_value_heads", got 6 and 4/],
    ['a missing size', { ...llama, hidden_size: undefined }, /"hidden_size": a positive integer, got undefined/],
    ['a model_type that disagrees with architectures', { ...llama, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen3' },
      /"model_type" agreeing with "architectures" \("qwen2" for Qwen2ForCausalLM; supported model types: qwen2, llama\), got "model_type": "qwen3" with "architectures": \["Qwen2ForCausalLM"\]$/],
    ['a known model_type of the other architecture', { ...llama, model_type: 'qwen2' }, /got "model_type": "qwen2" with "architectures": \["LlamaForCausalLM"\]$/],
    ['an unknown model_type alone', { ...llama, architectures: undefined, model_type: 'mistral' }, /"model_type": one of qwen2, llama, got "mistral"$/],
    ['a model_type that is not a string', { ...llama, architectures: undefined, model_type: 7 }, /"model_type": one of qwen2, llama, got 7$/],
    ['neither architectures nor model_type', { ...llama, architectures: undefined, model_type: undefined },
      /"architectures" \(one of Qwen2ForCausalLM, LlamaForCausalLM\) or "model_type" \(one of qwen2, llama\), got neither$/],
  ])('refuses %s by name', (_name, json, message) => {
    expect(() => parseModelConfig(json)).toThrow(FileFormatError);
    expect(() => parseModelConfig(json)).toThrow(message);
  });

  test('model_type alone names the architecture', () => {
    expect(parseModelConfig({ ...llama, architectures: undefined }).architecture).toBe('llama');
    expect(parseModelConfig({ ...llama, architectures: null, model_type: 'qwen2', attention_bias: undefined })).toMatchObject({ architecture: 'qwen2', attentionBias: true });
    // A v4 file without model_type still loads from architectures alone.
    expect(parseModelConfig({ ...llama, model_type: undefined }).architecture).toBe('llama');
  });
});

describe('loadModelConfig with generation_config.json', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'intuitor-config-'));
    copyFileSync(join(FIXTURES, 'tiny-qwen2', 'config.json'), join(dir, 'config.json')); // eos_token_id 0
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const generation = (json: unknown) => writeFileSync(join(dir, 'generation_config.json'), typeof json === 'string' ? json : JSON.stringify(json));

  test.each([
    ['no generation_config.json', undefined, [0]],
    ['no eos_token_id in it (the fixture\'s)', { _from_model_config: true, use_cache: true }, [0]],
    ['eos_token_id null', { eos_token_id: null }, [0]],
    ['one more id', { eos_token_id: 7 }, [0, 7]],
    // Qwen2.5-Instruct's shape: config.json's id first, then the others, no duplicates.
    ['a list that repeats config.json\'s id', { eos_token_id: [5, 0, 5, 9] }, [0, 5, 9]],
  ])('%s: eosTokenIds is the union with config.json\'s', (_name, json, eos) => {
    if (json !== undefined) generation(json);
    expect(loadModelConfig(dir).eosTokenIds).toEqual(eos);
  });

  test.each([
    ['not JSON', '{ "eos_token_id": ', /generation_config\.json: expected JSON, got /],
    ['not an object', '[1, 2]', /generation_config\.json: expected a JSON object, got array of length 2$/],
    ['a negative id', { eos_token_id: [1, -2] }, /generation_config\.json: expected "eos_token_id": a token id or a list of them, got \[1,-2\]$/],
    ['a string id', { eos_token_id: '2' }, /generation_config\.json: expected "eos_token_id": a token id or a list of them, got "2"$/],
  ])('a malformed generation_config.json (%s) is refused naming the file', (_name, json, message) => {
    generation(json);
    expect(() => loadModelConfig(dir)).toThrow(FileFormatError);
    expect(() => loadModelConfig(dir)).toThrow(message);
  });
});

describe('ropeInverseFrequencies', () => {
  test('default: θ^(−2i/d)', () => {
    const inv = ropeInverseFrequencies({ headDim: 16, ropeTheta: 10000, ropeScaling: { type: 'default' } });
    expect(inv).toHaveLength(8);
    expect(inv[0]).toBe(1);
    expect(inv[3]).toBeCloseTo(10000 ** (-6 / 16), 15);
  });

  test('Llama 3: short wavelengths kept, long ones divided by the factor, the band between interpolated', () => {
    const c = parseModelConfig(llama);
    const base = ropeInverseFrequencies({ ...c, ropeScaling: { type: 'default' } });
    const scaled = ropeInverseFrequencies(c);
    const wavelen = (f: number) => (2 * Math.PI) / f;
    let kinds = 0;
    base.forEach((f, i) => {
      const w = wavelen(f);
      if (w < 8192 / 4) expect(scaled[i]).toBe(f);
      else if (w > 8192 / 1) expect(scaled[i]).toBeCloseTo(f / 8, 15);
      else {
        expect(scaled[i]).toBeLessThan(f);
        expect(scaled[i]).toBeGreaterThan(f / 8);
      }
      kinds |= w < 2048 ? 1 : w > 8192 ? 2 : 4;
    });
    expect(kinds).toBe(7); // this head_dim and theta reach all three bands
  });
});
