/** Greedy generation with the KV cache against transformers, batched prompts of different lengths, and the decode kernels. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GpuContext } from '../../src/gpu/context.js';
import { PolicyModel } from '../../src/model/policy.js';
import { argmax, referenceArgmax } from '../../src/ops/argmax.js';
import { tokenStats } from '../../src/ops/token-stats.js';
import { TOLERANCES, expectClose } from '../tolerances.js';
import { FIXTURES, describeGpu, openGpu } from '../helpers.js';

const dir = join(FIXTURES, 'tiny-qwen2');
const reference = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as { greedy_prompt_ids: number[]; greedy_output_ids: number[]; input_ids: number[][] };

describeGpu('greedy generation (WebGPU, KV cache)', () => {
  let ctx: GpuContext;
  let model: PolicyModel;
  beforeAll(async () => {
    ctx = await openGpu();
    model = await PolicyModel.load(ctx, dir);
  });
  afterAll(() => {
    model.destroy();
    ctx.close();
  });

  test('12 greedy tokens after greedy_prompt_ids reproduce transformers exactly', async () => {
    const prompt = reference.greedy_prompt_ids;
    const { tokens: [got] } = await model.generate([prompt], { maxNewTokens: 12 });
    expect([...prompt, ...got!]).toEqual(reference.greedy_output_ids);
  });

  test('prompts of different lengths in one batch give what each gives alone; EOS and max tokens stop a sequence', async () => {
    const prompts = [reference.greedy_prompt_ids, reference.input_ids[1]!.slice(0, 5), reference.input_ids[2]!.slice(0, 17)];
    const { tokens: batched } = await model.generate(prompts, { maxNewTokens: 9 });
    for (const [i, prompt] of prompts.entries()) {
      expect(batched[i]).toEqual((await model.generate([prompt], { maxNewTokens: 9 })).tokens[0]);
    }
    const first = batched[1]![0]!;
    const { tokens: stopped } = await model.generate([prompts[1]!], { maxNewTokens: 9, eosTokenIds: [first] });
    expect(stopped[0]).toEqual([first]);
  });

  test('sampling: the same seeds repeat, other seeds differ; returned log-probs and self-certainty are those of the tempered distribution', async () => {
    const prompts = [reference.input_ids[0]!.slice(0, 6), reference.input_ids[3]!.slice(0, 3)];
    const sampling = { temperature: 0.8, topK: 50, topP: 0.95 };
    const options = { maxNewTokens: 10, sampling, seeds: [11, 12], eosTokenIds: [] };
    const a = await model.generate(prompts, options);
    expect(await model.generate(prompts, options)).toEqual(a);
    expect((await model.generate(prompts, { ...options, seeds: [13, 14] })).tokens).not.toEqual(a.tokens);
    for (const [b, prompt] of prompts.entries()) {
      const full = [...prompt, ...a.tokens[b]!];
      const logits = await model.logits(full, 1, full.length);
      const V = model.config.vocabSize;
      const rows = a.tokens[b]!.length;
      const picked = logits.slice((prompt.length - 1) * V, (prompt.length - 1 + rows) * V);
      const want = await tokenStats({ logits: picked, shape: [rows, V], ids: Int32Array.from(a.tokens[b]!), temperature: 0.8 }, { backend: 'js' });
      expectClose(`log-probs of sequence ${b}`, a.logprobs[b]!, want.logprob!, TOLERANCES.fixture);
      expectClose(`self-certainty of sequence ${b}`, a.selfCertainty[b]!, want.selfCertainty, TOLERANCES.fixture);
    }
  });

  test('decode steps run ahead of the host: sequences that end early, and a batch that ends while steps are in flight, keep the tokens of a full run', async () => {
    const prompts = [reference.input_ids[0]!.slice(0, 4), reference.input_ids[1]!.slice(0, 7), reference.input_ids[2]!.slice(0, 2)];
    const options = { maxNewTokens: 12, sampling: { temperature: 1 }, seeds: [5, 6, 7], eosTokenIds: [] };
    const full = await model.generate(prompts, options);
    const stopAt = [3, 1, 6];
    const stopped = await model.generate(prompts, { ...options, shouldStop: (b, tokens) => tokens.length >= stopAt[b]! });
    prompts.forEach((_, b) => {
      expect(stopped.tokens[b]).toEqual(full.tokens[b]!.slice(0, stopAt[b]));
      expect(stopped.logprobs[b]).toEqual(full.logprobs[b]!.slice(0, stopAt[b]));
    });
    // The model is reusable at once: nothing of the dropped steps is left mapped or pending.
    expect(await model.generate(prompts, options)).toEqual(full);
  });

  test('a batch whose buffers exceed one binding is generated in chunks of sequences, with the tokens of one batch', async () => {
    // 96 KiB bindings (the embedding table's size): a 17-token prompt's widest prefill activations
    // (17 × 176 float32, 11,968 B) allow 8 sequences a chunk, so 12 prompts run as 8 + 4.
    const narrow = await GpuContext.create({ maxBindingBytes: 98_304 });
    const narrowModel = await PolicyModel.load(narrow, dir);
    try {
      const prompts = Array.from({ length: 12 }, (_, i) => reference.input_ids[i % 4]!.slice(i, i + 5 + (i % 3) * 6));
      const options = { maxNewTokens: 9, sampling: { temperature: 1 }, seeds: prompts.map((_, i) => 40 + i), eosTokenIds: [] };
      // Chunks of 8 and 4 decode on linear_rows_main, the batch of 12 on 32-row tiles: the same
      // tokens, and log-probs within float32 summation order.
      const [chunked, whole] = [await narrowModel.generate(prompts, options), await model.generate(prompts, options)];
      expect(chunked.tokens).toEqual(whole.tokens);
      expectClose('chunked log-probs', chunked.logprobs.flat(), whole.logprobs.flat(), TOLERANCES.fixture);
      expectClose('chunked self-certainty', chunked.selfCertainty.flat(), whole.selfCertainty.flat(), TOLERANCES.fixture);
      const tooLong = new Array<number>(200).fill(5);
      await expect(narrowModel.generate([tooLong], { maxNewTokens: 2 })).rejects.toThrow(/prompts: expected prompts whose prefill activations \(200 × 176 float32\), cache \(202 × 32\) and logits \(384\) each fit one storage binding \(98304 bytes\), got a 200-token prompt \(2 new tokens\); at most 139 prompt tokens and 768 prompt \+ new tokens fit/);
    } finally {
      narrowModel.destroy();
      narrow.close();
    }
  });

  test('bad prompts and lengths are refused by name', async () => {
    await expect(model.generate([], { maxNewTokens: 2 })).rejects.toThrow(/prompts: expected a non-empty array/);
    await expect(model.generate([[1]], { maxNewTokens: 0 })).rejects.toThrow(/maxNewTokens: expected a positive integer, got 0/);
    await expect(model.generate([[1, 2]], { maxNewTokens: 255 })).rejects.toThrow(/maxNewTokens: expected at most 254 for a 2-token prompt/);
  });

  test('argmax takes the lowest index on ties, on rows wider than a workgroup', async () => {
    const rows = 3;
    const cols = 1000;
    const x = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i) * 10);
    x[1 * cols + 17] = 50;
    x[1 * cols + 900] = 50; // tie: the lower index wins
    x[2 * cols + 999] = 60; // the last column
    expect(Array.from(await argmax(ctx, x, { rows, cols }))).toEqual(Array.from(referenceArgmax(x, { rows, cols })));
    expect((await argmax(ctx, x, { rows, cols }))[1]).toBe(17);
  });
});
