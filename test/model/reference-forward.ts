/**
 * A float64 reference of the whole decoder forward (Qwen2/Llama, with the attention biases
 * src/model/weights.ts expects), composed from the ops' float64 references, reading weights
 * straight from the safetensors file (16-bit decoded exactly). Used to check the WebGPU forward
 * on layouts the Hugging Face fixture doesn't cover, and on bf16 weights.
 */
import { elementReader } from '../../src/dtype.js';
import { openSafetensors } from '../../src/io/safetensors.js';
import type { ModelConfig } from '../../src/model/config.js';
import { ropeInverseFrequencies } from '../../src/model/config.js';
import { hasOutputProjectionBias } from '../../src/model/weights.js';
import { referenceAttention } from '../../src/ops/attention.js';
import { referenceLinear } from '../../src/ops/linear.js';
import { referenceRmsNorm } from '../../src/ops/rmsnorm.js';
import { referenceRope } from '../../src/ops/rope.js';
import { referenceSwiglu } from '../../src/ops/swiglu.js';

export async function loadReferenceWeights(path: string): Promise<(name: string) => Float64Array> {
  const file = await openSafetensors(path);
  const cache = new Map<string, Float64Array>();
  return (name) => {
    let values = cache.get(name);
    if (!values) {
      const t = file.tensor(name);
      const n = t.data.length;
      if (t.dtype === 'f32' || t.dtype === 'f64') values = Float64Array.from(t.data as Float32Array);
      else if (t.dtype === 'bf16' || t.dtype === 'f16') {
        const read = elementReader(t.dtype, t.data as Uint16Array);
        values = Float64Array.from({ length: n }, (_, i) => read(i));
      } else throw new Error(`${name}: unexpected dtype ${t.dtype}`);
      cache.set(name, values);
    }
    return values;
  };
}

export function referenceModelForward(c: ModelConfig, weight: (name: string) => Float64Array, ids: ArrayLike<number>, batch: number, seqLen: number, lengths: ArrayLike<number>): Float64Array {
  const rows = batch * seqLen;
  const H = c.hiddenSize;
  const invFreq = Float64Array.from(Float32Array.from(ropeInverseFrequencies(c)));
  const positions = Array.from({ length: rows }, (_, i) => i % seqLen);
  const embed = weight('model.embed_tokens.weight');
  let x = new Float64Array(rows * H);
  for (let r = 0; r < rows; r++) x.set(embed.subarray(Number(ids[r]) * H, (Number(ids[r]) + 1) * H), r * H);
  const linear = (input: ArrayLike<number>, name: string, k: number, n: number, bias: boolean) =>
    referenceLinear(input, weight(`${name}.weight`), bias ? weight(`${name}.bias`) : null, { m: rows, k, n });
  const qWidth = c.numHeads * c.headDim;
  const kvWidth = c.numKeyValueHeads * c.headDim;
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    const h = referenceRmsNorm(x, weight(`${p}.input_layernorm.weight`), { rows, hidden: H, eps: c.rmsNormEps });
    const q = referenceRope(linear(h, `${p}.self_attn.q_proj`, H, qWidth, c.attentionBias), positions, invFreq, { tokens: rows, heads: c.numHeads, headDim: c.headDim });
    const k = referenceRope(linear(h, `${p}.self_attn.k_proj`, H, kvWidth, c.attentionBias), positions, invFreq, { tokens: rows, heads: c.numKeyValueHeads, headDim: c.headDim });
    const v = linear(h, `${p}.self_attn.v_proj`, H, kvWidth, c.attentionBias);
    const a = referenceAttention(q, k, v, lengths, { batch, seqLen, heads: c.numHeads, kvHeads: c.numKeyValueHeads, headDim: c.headDim }).out;
    const o = linear(a, `${p}.self_attn.o_proj`, qWidth, H, hasOutputProjectionBias(c));
    x = x.map((value, i) => value + o[i]!);
    const h2 = referenceRmsNorm(x, weight(`${p}.post_attention_layernorm.weight`), { rows, hidden: H, eps: c.rmsNormEps });
    const act = referenceSwiglu(linear(h2, `${p}.mlp.gate_proj`, H, c.intermediateSize, false), linear(h2, `${p}.mlp.up_proj`, H, c.intermediateSize, false));
    const d = linear(act, `${p}.mlp.down_proj`, c.intermediateSize, H, false);
    x = x.map((value, i) => value + d[i]!);
  }
  const final = referenceRmsNorm(x, weight('model.norm.weight'), { rows, hidden: H, eps: c.rmsNormEps });
  return referenceLinear(final, weight(c.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight'), null, { m: rows, k: H, n: c.vocabSize });
}
