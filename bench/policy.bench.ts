/**
 * Suites `train_step`, `decode` and `score_completions`: the whole policy on a Qwen2.5-0.5B-shaped
 * random checkpoint (hidden 896, 24 layers, 14/2 heads, intermediate 4864, vocabulary 151,936,
 * tied embeddings), built on the fly in a temporary folder.
 * - train_step: forward + backward + AdamW on f32 master weights at batch 8 × 512 tokens (two
 *   micro-batches of 4 × 512, as recorded before the lm_head ran fused: then the (4096, 151936)
 *   f32 logits exceeded one 2 GiB binding; now no logits bound a pass);
 *   tokens/s, the peak of GPU memory in buffers (GpuContext.memory), and the model FLOP/s
 *   (6 · parameters · tokens + attention).
 * - decode: greedy generation, batch 1 and 32, a 64-token prompt and 128 new tokens (EOS off); new
 *   tokens/s. Beside it, decode_step: the GPU's own time per step, steps recorded back to back, at
 *   batch 1, 32 and 128 with f32 and with bf16 weights (a bf16 copy of the checkpoint), its GB/s the
 *   weights' bytes per step, so its fraction of the copy ceiling is one read of the weights over
 *   the step's time (issue 16's target: a step within 3× that floor, a fraction ≥ 33%).
 * - score_completions: `intuitor score-completions`' path (src/score/pipeline.ts with this
 *   process's scorer: a JSON lines file of pre-tokenised completions read, parsed, packed into
 *   passes, scored, written) over 32 sequences of a 128-token prompt and a 384-token completion;
 *   rows/s = sequence tokens (prompt + completion) per second.
 * PyTorch rows (HF transformers eager f32 training step with AdamW; HF generate; HF forward +
 * log_softmax + the statistics, f32 and bf16) come from bench/peers/torch_policy.py on the same
 * card and join through --peers.
 * On a software adapter (lavapipe) or with --quick both run on a small model, labelled by shape.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSafetensors } from '../src/io/safetensors.js';
import type { HostTensor } from '../src/io/tensor.js';
import { profileDispatches } from '../src/gpu/profile.js';
import { parseModelConfig } from '../src/model/config.js';
import { PolicyModel } from '../src/model/policy.js';
import { TrainingGraph } from '../src/model/training.js';
import { expectedParameters } from '../src/model/weights.js';
import { DEFAULT_OPTIMIZER, Optimizer } from '../src/train/optimizer.js';
import { charTokenizerJson } from '../src/model/char-tokenizer.js';
import { Scorer } from '../src/score/engine.js';
import { localChunkScorer } from '../src/score/lines.js';
import { scoreFile } from '../src/score/pipeline.js';
import { floatToBf16Bits } from '../src/dtype.js';
import { mulberry32 } from '../src/util/random.js';
import { runCase, withBandwidthCeiling, withMatmulCeiling, type BenchEnv } from './harness.js';
import { rowFromSamples, type BenchRow } from './schema.js';

export const POLICY_KERNELS = ['train_step', 'decode', 'score_completions'] as const;

/** Qwen2.5-0.5B's shape (config.json of Qwen/Qwen2.5-0.5B), and a small one for software adapters. */
export function policyConfig(small: boolean): Record<string, unknown> {
  return {
    architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2',
    hidden_size: small ? 128 : 896, intermediate_size: small ? 352 : 4864, num_hidden_layers: small ? 2 : 24,
    num_attention_heads: small ? 4 : 14, num_key_value_heads: 2, rms_norm_eps: 1e-6, vocab_size: small ? 2048 : 151936,
    max_position_embeddings: 32768, rope_theta: 1000000, tie_word_embeddings: true, bos_token_id: 151643, eos_token_id: 151643,
  };
}

/**
 * Writes a random checkpoint of `json`'s shape (uniform ±0.04 matrices, unit norms) into a new
 * temporary folder, with a character tokenizer (the scorer loads one; the benchmark's lines are
 * pre-tokenised). With dtype bf16 the same values are stored rounded to bf16.
 */
async function randomCheckpoint(json: Record<string, unknown>, dtype: 'f32' | 'bf16' = 'f32'): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'intuitor-bench-policy-'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(json));
  const { tokenizer, tokenizerConfig } = charTokenizerJson([...'0123456789+= '], { eos: '<|endoftext|>' });
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig));
  const rand = mulberry32(3);
  const tensors: Record<string, HostTensor> = {};
  for (const [name, shape] of expectedParameters(parseModelConfig(json))) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (name.endsWith('norm.weight')) data.fill(1);
    else for (let i = 0; i < data.length; i++) data[i] = 0.08 * (rand() - 0.5);
    tensors[name] = dtype === 'f32' ? { dtype, shape, data } : { dtype, shape, data: Uint16Array.from(data, floatToBf16Bits) };
  }
  await writeSafetensors(join(dir, 'model.safetensors'), tensors);
  return dir;
}

export async function policySuite(env: BenchEnv, kernels: ReadonlySet<string>): Promise<void> {
  const gpu = env.gpu;
  if (!gpu || !POLICY_KERNELS.some((k) => kernels.has(k))) return;
  const small = env.quick || gpu.adapter?.isFallbackAdapter === true;
  const json = policyConfig(small);
  const dir = await randomCheckpoint(json);
  try {
    if (kernels.has('train_step') || kernels.has('decode')) {
      const config = parseModelConfig(json);
      const model = await PolicyModel.load(gpu, dir, { dtype: 'f32' });
      const parameters = [...expectedParameters(config).values()].reduce((sum, shape) => sum + shape.reduce((a, b) => a * b, 1), 0);
      try {
        if (kernels.has('train_step')) await trainStepCase(env, model, parameters, small);
        if (kernels.has('decode')) await decodeCase(env, model, parameters, small);
      } finally {
        model.destroy();
      }
      if (kernels.has('decode')) await decodeStepBf16(env, json, parameters, small);
    }
    if (kernels.has('score_completions')) await scoreCompletionsCase(env, dir, small);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function trainStepCase(env: BenchEnv, model: PolicyModel, parameters: number, small: boolean): Promise<void> {
  const gpu = env.gpu!;
  const c = model.config;
  const [batch, seqLen, micro] = small ? [4, 64, 2] : [8, 512, 4];
  await runCase(env, `train_step ${batch}x${seqLen}`, async () => {
    gpu.resetPeak();
    const graph = TrainingGraph.create(model);
    const optimizer = await Optimizer.create(graph, { ...DEFAULT_OPTIMIZER, lr: 1e-5, totalSteps: 1000 });
    const step = await graph.prepareStep(micro, seqLen);
    try {
      const rand = mulberry32(9);
      const rows = micro * seqLen;
      const ids = Uint32Array.from({ length: rows }, () => Math.floor(rand() * c.vocabSize));
      const targets = Uint32Array.from({ length: rows }, (_, r) => ids[(r + 1) % rows]!);
      graph.writeBatch(step, { ids, targets, lengths: new Uint32Array(micro).fill(seqLen), gLogprob: new Float32Array(rows).fill(-1 / (batch * seqLen)) });
      const samples: number[] = [];
      const count = env.quick ? 3 : 8;
      for (let i = 0; i <= count; i++) {
        const started = performance.now();
        await graph.zeroGrads();
        for (let m = 0; m < batch / micro; m++) await graph.forwardBackward(step);
        await optimizer.update(i + 1);
        await gpu.sync('train_step');
        if (i > 0) samples.push(performance.now() - started);
      }
      if (env.profile) env.profiles.push(await profileDispatches(gpu, `train_step ${micro}×${seqLen} (one micro-batch: forward + backward)`, (pass) => { step.encodeForward(pass); step.encodeBackward(pass); }));
      const tokens = batch * seqLen;
      const bytes = gpu.memory.peakBytes;
      const row = rowFromSamples({
        kernel: 'train_step', backend: 'webgpu', dtype: 'f32', shape: [batch, seqLen], device: env.gpuDevice, method: 'wall-clock',
        note: `${(parameters / 1e6).toFixed(0)}M parameters, ${batch / micro} micro-batches of ${micro}×${seqLen}; GPU memory peak ${(bytes / 2 ** 30).toFixed(2)} GiB (${(bytes / 2 ** 20).toFixed(1)} MiB; every buffer, weights to op scratch)`,
      }, samples, 0, tokens);
      // 6 FLOPs per parameter per token (forward 2, backward 4) plus causal attention (QKᵀ and PV: 2 · 2 · T/2 per head dim, ×3 for backward).
      const attention = 3 * 2 * 2 * c.numLayers * c.numHeads * c.headDim * (seqLen + 1) / 2 * tokens;
      row.gflops = (6 * parameters * tokens + attention) / (row.medianMs / 1000) / 1e9;
      env.rows.push(withMatmulCeiling(env, row));
    } finally {
      step.destroy();
      optimizer.destroy();
      graph.destroy();
    }
  });
}

/** Batches of the decode_step rows: issue 16's targets (32 and 128), and 1, where the fused norm + projections (src/ops/linear-norm.ts) run. */
const DECODE_STEP_BATCHES = [1, 32, 128];

async function decodeCase(env: BenchEnv, model: PolicyModel, parameters: number, small: boolean): Promise<void> {
  const [promptLen, newTokens] = small ? [16, 16] : [64, 128];
  for (const batch of [1, 32]) {
    await runCase(env, `decode ${batch}x${promptLen}+${newTokens}`, async () => {
      const rand = mulberry32(4);
      const prompts = Array.from({ length: batch }, () => Array.from({ length: promptLen }, () => Math.floor(rand() * model.config.vocabSize)));
      const samples: number[] = [];
      for (let i = 0; i <= (env.quick ? 2 : 4); i++) {
        const started = performance.now();
        const { tokens } = await model.generate(prompts, { maxNewTokens: newTokens, eosTokenIds: [] });
        if (tokens.some((t) => t.length !== newTokens)) throw new Error('decode bench: a sequence stopped early');
        if (i > 0) samples.push(performance.now() - started);
      }
      env.rows.push(rowFromSamples({
        kernel: 'decode', backend: 'webgpu', dtype: 'f32', shape: [batch, promptLen, newTokens], device: env.gpuDevice, method: 'wall-clock',
        note: 'greedy, prefill + KV-cache decode, f32 weights; rows/s = new tokens/s',
      }, samples, 0, batch * newTokens));
    });
  }
  for (const batch of DECODE_STEP_BATCHES) {
    await runCase(env, `decode_step f32 ${batch}`, async () => { env.rows.push(await decodeStepRow(env, model, 'f32', parameters, batch, promptLen + newTokens / 2)); });
  }
}

/** decode_step with the weights stored and read as bf16: the same random checkpoint, rounded. */
async function decodeStepBf16(env: BenchEnv, json: Record<string, unknown>, parameters: number, small: boolean): Promise<void> {
  const dir = await randomCheckpoint(json, 'bf16');
  try {
    const model = await PolicyModel.load(env.gpu!, dir, { dtype: 'as-stored' });
    try {
      const [promptLen, newTokens] = small ? [16, 16] : [64, 128];
      for (const batch of DECODE_STEP_BATCHES) {
        await runCase(env, `decode_step bf16 ${batch}`, async () => { env.rows.push(await decodeStepRow(env, model, 'bf16', parameters, batch, promptLen + newTokens / 2)); });
      }
    } finally {
      model.destroy();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The GPU's own time for one decode step: the step recorded `STEPS` times back to back and one
 * wait at the end, so the host never holds the GPU up (a diagnostic beside `decode`: how much of
 * generate's time per token the GPU is busy). Each step attends to `keys` cached positions.
 */
async function decodeStepRow(env: BenchEnv, model: PolicyModel, dtype: 'f32' | 'bf16', parameters: number, batch: number, keys: number): Promise<BenchRow> {
  const gpu = env.gpu!;
  const STEPS = 32;
  const cache = await model.createCache(batch, keys);
  const step = await model.prepareDecode(cache);
  try {
    gpu.writeBuffer(step.tokens, 0, new Uint32Array(batch).fill(1));
    gpu.writeBuffer(step.positions, 0, new Uint32Array(batch).fill(keys - 1));
    gpu.writeBuffer(step.lengths, 0, new Uint32Array(batch).fill(keys));
    const samples: number[] = [];
    for (let i = 0; i <= (env.quick ? 2 : 4); i++) {
      const started = performance.now();
      for (let s = 0; s < STEPS; s++) await gpu.runPass('decode_step', (pass) => step.encode(pass));
      await gpu.sync('decode_step');
      if (i > 0) samples.push((performance.now() - started) / STEPS);
    }
    if (env.profile) env.profiles.push(await profileDispatches(gpu, `decode_step ${dtype} weights, batch ${batch}, ${keys} cached keys`, (pass) => step.encode(pass)));
    // One read of every weight (the tied embedding once, as the lm_head) is the step's floor; GB/s counts those bytes.
    const weightBytes = parameters * (dtype === 'f32' ? 4 : 2);
    return withBandwidthCeiling(rowFromSamples({
      kernel: 'decode_step', backend: 'webgpu', dtype, shape: [batch, keys], device: env.gpuDevice, method: 'wall-clock',
      note: `one decode step (${keys} cached keys), ${STEPS} recorded back to back, one wait: the GPU's time per step; GB/s = the weights' ${(weightBytes / 2 ** 20).toFixed(0)} MiB a step, so the fraction of the copy ceiling is the weights-read floor over the step's time; rows/s = tokens/s`,
    }, samples, weightBytes, batch), env.ceilings.gpuCopy);
  } finally {
    step.destroy();
    cache.destroy();
  }
}

/**
 * score-completions' path, file to file: `count` pre-tokenised lines of random ids, two chunks (so
 * one is parsed while the other runs, as in a long file), each sample a fresh output file.
 */
async function scoreCompletionsCase(env: BenchEnv, dir: string, small: boolean): Promise<void> {
  const gpu = env.gpu!;
  const [count, promptLen, completionLen] = small ? [32, 32, 96] : [32, 128, 384];
  const seqLen = promptLen + completionLen;
  await runCase(env, `score_completions ${count}x${seqLen}`, async () => {
    const scorer = await Scorer.load(gpu, dir, { dtype: 'f32' });
    const work = mkdtempSync(join(tmpdir(), 'intuitor-bench-score-'));
    try {
      const rand = mulberry32(6);
      const ids = (n: number) => Array.from({ length: n }, () => Math.floor(rand() * scorer.config.vocabSize));
      const input = join(work, 'input.jsonl');
      writeFileSync(input, Array.from({ length: count }, () => JSON.stringify({ prompt_ids: ids(promptLen), completion_ids: ids(completionLen) })).join('\n') + '\n');
      const samples: number[] = [];
      for (let i = 0; i <= (env.quick ? 2 : 3); i++) {
        const out = join(work, `scores-${i}.jsonl`);
        const started = performance.now();
        const summary = await scoreFile({ input, out, scorer: localChunkScorer(scorer), chunkLines: count / 2 });
        if (summary.scored !== count) throw new Error(`score_completions bench: ${summary.scored} of ${count} lines scored`);
        if (i > 0) samples.push(performance.now() - started);
      }
      const row = rowFromSamples({
        kernel: 'score_completions', backend: 'webgpu', dtype: 'f32', shape: [count, seqLen], device: env.gpuDevice, method: 'wall-clock',
        note: `score-completions' path, file to file: ${count} pre-tokenised lines of ${promptLen} + ${completionLen} tokens, f32 weights, ${scorer.packing.maxRows} token rows a pass; rows/s = sequence tokens/s`,
      }, samples, 0, count * seqLen);
      // The forward's FLOPs: the layers' projections on every token, causal attention, and the lm_head on the completions' rows only.
      const c = scorer.config;
      const projections = c.numLayers * (2 * c.hiddenSize * c.numHeads * c.headDim + 2 * c.hiddenSize * c.numKeyValueHeads * c.headDim + 3 * c.hiddenSize * c.intermediateSize);
      const attention = 2 * 2 * c.numLayers * c.numHeads * c.headDim * (seqLen + 1) / 2 * seqLen;
      const flops = count * (2 * projections * seqLen + attention + 2 * c.hiddenSize * c.vocabSize * completionLen);
      row.gflops = flops / (row.medianMs / 1000) / 1e9;
      env.rows.push(withMatmulCeiling(env, row));
    } finally {
      await scorer.destroy();
      rmSync(work, { recursive: true, force: true });
    }
  });
}
