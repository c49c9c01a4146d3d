/** Greedy generation with the KV cache against transformers, batched prompts of different lengths, and the decode kernels. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GpuContext } from '../../src/gpu/context.js';
import { PolicyModel } from '../../src/model/policy.js';
import { argmax, referenceArgmax } from '../../src/ops/argmax.js';
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
    const [got] = await model.generateGreedy([prompt], { maxNewTokens: 12 });
    expect([...prompt, ...got!]).toEqual(reference.greedy_output_ids);
  });

  test('prompts of different lengths in one batch give what each gives alone; EOS and max tokens stop a sequence', async () => {
    const prompts = [reference.greedy_prompt_ids, reference.input_ids[1]!.slice(0, 5), reference.input_ids[2]!.slice(0, 17)];
    const batched = await model.generateGreedy(prompts, { maxNewTokens: 9 });
    for (const [i, prompt] of prompts.entries()) {
      expect(batched[i]).toEqual((await model.generateGreedy([prompt], { maxNewTokens: 9 }))[0]);
    }
    const first = batched[1]![0]!;
    const stopped = await model.generateGreedy([prompts[1]!], { maxNewTokens: 9, eosTokenIds: [first] });
    expect(stopped[0]).toEqual([first]);
  });

  test('bad prompts and lengths are refused by name', async () => {
    await expect(model.generateGreedy([], { maxNewTokens: 2 })).rejects.toThrow(/prompts: expected a non-empty array/);
    await expect(model.generateGreedy([[1]], { maxNewTokens: 0 })).rejects.toThrow(/maxNewTokens: expected a positive integer, got 0/);
    await expect(model.generateGreedy([[1, 2]], { maxNewTokens: 255 })).rejects.toThrow(/maxNewTokens: expected at most 254 for a 2-token prompt/);
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
