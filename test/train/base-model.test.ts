/**
 * The base model intuitor builds and ships: its character tokenizer (both readers' format,
 * exact round trips of everything the task produces), the shipped models/addition-base (loads,
 * and still scores what its base_model.json says on the held-out prompts, so a broken or stale
 * artefact fails), and a short build into a temporary folder.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError } from '../../src/errors.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { charTokenizerJson } from '../../src/model/char-tokenizer.js';
import { loadModelConfig } from '../../src/model/config.js';
import { PolicyModel } from '../../src/model/policy.js';
import { PolicyTokenizer } from '../../src/model/tokenizer.js';
import { modeCompletion } from '../../src/tasks/addition-modes.js';
import { getTask } from '../../src/tasks/index.js';
import {
  BASE_MODEL_ALPHABETS, BASE_MODEL_DEFAULTS, BASE_MODEL_RECORD, EOS_TOKEN, baseModelEvalSet, buildBaseModel, evaluateGreedy, modeBreakdown, randomInitTensors, tinyQwen2Config,
  type BaseModelRecord, type BaseModelTask,
} from '../../src/train/base-model.js';
import { describeGpu, openGpu } from '../helpers.js';
import { TOLERANCES } from '../tolerances.js';

/** models/addition-base in the checkout (tests run from dist/test/train). */
const SHIPPED = fileURLToPath(new URL('../../../models/addition-base/', import.meta.url));
/** The held-out accuracy band the shipped model is built for: partly trained, so GRPO has room. */
const ACCURACY_BAND = [0.4, 0.75] as const;

const addition = getTask('addition');
const ALPHABET = BASE_MODEL_ALPHABETS.addition;

function writeTokenizer(dir: string, files: ReturnType<typeof charTokenizerJson>): string {
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(files.tokenizer));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(files.tokenizerConfig));
  return dir;
}

function readRecord(dir: string): BaseModelRecord {
  return JSON.parse(readFileSync(join(dir, BASE_MODEL_RECORD), 'utf8')) as BaseModelRecord;
}

describe('character tokenizer', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'intuitor-char-tokenizer-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  test('ids are the characters in order, then EOS; the files carry what both readers need', () => {
    const files = charTokenizerJson(ALPHABET, { eos: EOS_TOKEN });
    expect(files.vocab).toEqual(Object.fromEntries([...ALPHABET.map((c, i) => [c, i]), [EOS_TOKEN, ALPHABET.length]]));
    expect(files.eosId).toBe(ALPHABET.length);
    expect(files.padId).toBe(files.eosId);
    expect(files.vocabSize).toBe(ALPHABET.length + 1);
    const model = files.tokenizer.model as Record<string, unknown>;
    expect(model.type).toBe('BPE');
    expect(model.merges).toEqual([]);
    expect(files.tokenizer.decoder).toEqual({ type: 'Fuse' });
    for (const key of ['normalizer', 'pre_tokenizer', 'post_processor']) expect(files.tokenizer[key]).toBeNull();
    expect(files.tokenizer.added_tokens).toEqual([{ id: files.eosId, content: EOS_TOKEN, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }]);
    expect(files.tokenizerConfig).toMatchObject({ tokenizer_class: 'PreTrainedTokenizerFast', eos_token: EOS_TOKEN, pad_token: EOS_TOKEN, model_max_length: 32 });
  });

  test.each(Object.keys(BASE_MODEL_ALPHABETS) as BaseModelTask[])('%s: every character, every task prompt and completion round-trips exactly, one token per character', (name) => {
    const alphabet = BASE_MODEL_ALPHABETS[name];
    const task = getTask(name);
    const files = charTokenizerJson(alphabet, { eos: EOS_TOKEN });
    const tokenizer = PolicyTokenizer.load(writeTokenizer(mkdtempSync(join(tmp, 'rt-')), files));
    alphabet.forEach((ch, id) => {
      expect(tokenizer.encode(ch)).toEqual([id]);
      expect(tokenizer.decode([id])).toBe(ch);
    });
    expect(tokenizer.decode(tokenizer.encode('12+3=15\n'))).toBe('12+3=15\n');
    const seen = new Set<string>();
    const wrong: string[] = [];
    for (const split of ['train', 'test'] as const) {
      // addition-modes: each answer in both modes, as its SFT data writes them.
      const texts = task.generate(3, 1000, split).flatMap((e) => (name === 'addition-modes' ? (['direct', 'scratch'] as const).map((mode) => modeCompletion(Number(e.answer), mode)) : [e.answer]).map((answer) => `${e.prompt}${answer}${task.stop}`));
      for (const text of texts) {
        const ids = tokenizer.encode(text);
        const want = [...text].map((ch) => files.vocab[ch]);
        if (ids.length !== want.length || ids.some((id, i) => id !== want[i]) || tokenizer.decode(ids) !== text) wrong.push(text);
        for (const ch of text) seen.add(ch);
      }
    }
    expect(wrong).toEqual([]);
    // The data exercised the whole alphabet, so no character is there by mistake.
    expect([...seen].sort()).toEqual([...alphabet].sort());
  });

  test('EOS text encodes to its id; skipSpecialTokens drops it; a separate PAD gets the next id', () => {
    const files = charTokenizerJson(ALPHABET, { eos: EOS_TOKEN, pad: '<|pad|>' });
    expect([files.eosId, files.padId, files.vocabSize]).toEqual([ALPHABET.length, ALPHABET.length + 1, ALPHABET.length + 2]);
    const tokenizer = PolicyTokenizer.load(writeTokenizer(mkdtempSync(join(tmp, 'pad-')), files));
    expect(tokenizer.encode(`7\n${EOS_TOKEN}`)).toEqual([files.vocab['7'], files.vocab['\n'], files.eosId]);
    expect(tokenizer.encode('<|pad|>')).toEqual([files.padId]);
    expect(tokenizer.decode([files.vocab['7']!, files.eosId])).toBe(`7${EOS_TOKEN}`);
    expect(tokenizer.decode([files.vocab['7']!, files.eosId, files.padId], { skipSpecialTokens: true })).toBe('7');
  });

  test('bad alphabets and specials are refused by name', () => {
    const cases: Array<[() => unknown, string]> = [
      [() => charTokenizerJson([], { eos: EOS_TOKEN }), 'chars'],
      [() => charTokenizerJson(['1', '12'], { eos: EOS_TOKEN }), 'chars[1]'],
      [() => charTokenizerJson(['1', '2', '1'], { eos: EOS_TOKEN }), 'chars[2]'],
      [() => charTokenizerJson(['1'], { eos: 'E' }), 'specials.eos'],
      [() => charTokenizerJson(['1'], { eos: EOS_TOKEN, pad: '' }), 'specials.pad'],
    ];
    for (const [call, argument] of cases) {
      expect(call).toThrow(InvalidArgumentError);
      try {
        call();
      } catch (error) {
        expect((error as InvalidArgumentError).argument).toBe(argument);
      }
    }
  });
});

describe('tiny Qwen2 initialisation', () => {
  const files = charTokenizerJson(ALPHABET, { eos: EOS_TOKEN });
  const config = tinyQwen2Config(BASE_MODEL_DEFAULTS.architecture, files.vocabSize, files.eosId, 0.02);

  test('the config is a tied Qwen2 over the character vocabulary', () => {
    expect(config).toMatchObject({ architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', vocab_size: ALPHABET.length + 1, eos_token_id: files.eosId, tie_word_embeddings: true });
  });

  test('seeded: N(0, 0.02²) matrices, zero biases, unit norms; the same seed gives the same weights', () => {
    const a = randomInitTensors(config, 5, 0.02);
    const b = randomInitTensors(config, 5, 0.02);
    const c = randomInitTensors(config, 6, 0.02);
    expect(Object.keys(a)).not.toContain('lm_head.weight');
    const bytes = (data: unknown) => Buffer.from((data as Float32Array).buffer);
    for (const [name, tensor] of Object.entries(a)) {
      const data = tensor.data as Float32Array;
      expect(bytes(b[name]!.data).equals(bytes(data))).toBe(true);
      if (name.endsWith('norm.weight')) expect(data.every((v) => v === 1)).toBe(true);
      else if (name.endsWith('.bias')) expect(data.every((v) => v === 0)).toBe(true);
      else {
        expect(bytes(c[name]!.data).equals(bytes(data))).toBe(false);
        if (data.length >= 1000) {
          const std = Math.sqrt(data.reduce((s, v) => s + v * v, 0) / data.length);
          expect(Math.abs(std - 0.02)).toBeLessThan(0.002);
        }
      }
    }
  });
});

describeGpu('base model', () => {
  let ctx: GpuContext;
  let tmp: string;
  beforeAll(async () => {
    ctx = await openGpu();
    tmp = mkdtempSync(join(tmpdir(), 'intuitor-base-model-'));
  });
  afterAll(() => {
    ctx.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('the shipped models/addition-base is small, loads, and scores what base_model.json records on its held-out prompts', async () => {
    const files = readdirSync(SHIPPED).sort();
    expect(files).toEqual(['base_model.json', 'config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    const bytes = files.reduce((sum, f) => sum + statSync(join(SHIPPED, f)).size, 0);
    expect(bytes).toBeLessThan(5 * 2 ** 20);
    const record = readRecord(SHIPPED);
    expect(record).toMatchObject({ format: 'intuitor-base-model', version: 1, task: 'addition' });
    expect(record.eval.accuracy).toBeGreaterThanOrEqual(ACCURACY_BAND[0]);
    expect(record.eval.accuracy).toBeLessThanOrEqual(ACCURACY_BAND[1]);

    const config = loadModelConfig(SHIPPED);
    const tokenizer = PolicyTokenizer.load(SHIPPED);
    // config.json's EOS first; generation_config.json adds '\n', where transformers' generate stops too.
    expect(config.eosTokenIds).toEqual([...tokenizer.encode(EOS_TOKEN), ...tokenizer.encode('\n')]);
    expect(config.vocabSize).toBe(ALPHABET.length + 1);
    expect(tokenizer.decode(tokenizer.encode('12+345=357\n'))).toBe('12+345=357\n');
    const model = await PolicyModel.load(ctx, SHIPPED);
    try {
      expect(model.weights.tied).toBe(true);
    } finally {
      model.destroy();
    }

    const examples = baseModelEvalSet('addition', record.eval.seed, record.eval.prompts);
    const { accuracy, completions } = await evaluateGreedy(ctx, SHIPPED, addition, examples);
    expect(Math.abs(accuracy - record.eval.accuracy)).toBeLessThanOrEqual(TOLERANCES.baseModelAccuracy.atol);
    // Right or wrong, the model answers in the task's format.
    const formatted = completions.filter((c) => addition.formatOk(c)).length / completions.length;
    expect(formatted).toBeGreaterThan(0.95);
  });

  test('a short build writes a loadable model folder with the right config and tokenizer, and replaces an older one', async () => {
    const out = join(tmp, 'built');
    const options = { task: 'addition', out, steps: 3, batchSize: 8, trainExamples: 64, evalPrompts: 8, seed: 4 } as const;
    const first = await buildBaseModel(ctx, options);
    expect(readdirSync(out).sort()).toEqual(['base_model.json', 'config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    expect(readRecord(out)).toEqual(first);
    expect(first).toMatchObject({ task: 'addition', seed: 4, sft: { steps: 3, batchSize: 8, trainExamples: 64 }, eval: { split: 'test', prompts: 8 } });
    expect(first.eval.accuracy).toBeGreaterThanOrEqual(0);
    expect(first.eval.accuracy).toBeLessThanOrEqual(1);
    expect(Number.isFinite(first.sft.finalLoss)).toBe(true);

    const config = loadModelConfig(out);
    expect(config).toMatchObject({
      architecture: 'qwen2', hiddenSize: BASE_MODEL_DEFAULTS.architecture.hiddenSize, numLayers: BASE_MODEL_DEFAULTS.architecture.numLayers,
      vocabSize: ALPHABET.length + 1, eosTokenIds: [ALPHABET.length, ALPHABET.indexOf('\n')], tieWordEmbeddings: true, maxPositionEmbeddings: 32,
    });
    const tokenizer = PolicyTokenizer.load(out);
    ALPHABET.forEach((ch, id) => expect(tokenizer.encode(ch)).toEqual([id]));
    const generation = JSON.parse(readFileSync(join(out, 'generation_config.json'), 'utf8')) as Record<string, unknown>;
    expect(generation.eos_token_id).toEqual([ALPHABET.length, ALPHABET.indexOf('\n')]);
    const model = await PolicyModel.load(ctx, out);
    model.destroy();

    // Nothing is left beside the folder; a second build replaces it whole.
    const second = await buildBaseModel(ctx, { ...options, steps: 2 });
    expect(readRecord(out).sft.steps).toBe(2);
    expect(second.sft.steps).toBe(2);
    expect(readdirSync(tmp)).toEqual(['built']);
    expect(existsSync(join(out, 'optimizer.safetensors'))).toBe(false);
  });

  test('addition-modes: a build is deterministic (same seed, same weights and record), with 48 positions, its mixture and per-mode accuracy recorded', async () => {
    const options = { task: 'addition-modes', steps: 4, batchSize: 8, trainExamples: 64, evalPrompts: 8, seed: 2, scratchShare: 0.4, directNoise: 0.2 } as const;
    const a = await buildBaseModel(ctx, { ...options, out: join(tmp, 'modes-a') });
    const b = await buildBaseModel(ctx, { ...options, out: join(tmp, 'modes-b') });
    expect(readFileSync(join(tmp, 'modes-b', 'model.safetensors')).equals(readFileSync(join(tmp, 'modes-a', 'model.safetensors')))).toBe(true);
    const stable = (r: BaseModelRecord) => ({ ...r, created: null, sft: { ...r.sft, seconds: null } });
    expect(stable(b)).toEqual(stable(a));
    expect(a.mixture).toEqual({ scratchShare: 0.4, directNoise: 0.2 });
    expect(Object.keys(a.eval.modes!)).toEqual(['direct', 'scratch', 'none']);
    expect(a.eval.maxNewTokens).toBe(12);
    expect(loadModelConfig(join(tmp, 'modes-a')).maxPositionEmbeddings).toBe(48);
    const c = await buildBaseModel(ctx, { ...options, seed: 3, out: join(tmp, 'modes-c') });
    expect(readFileSync(join(tmp, 'modes-c', 'model.safetensors')).equals(readFileSync(join(tmp, 'modes-a', 'model.safetensors')))).toBe(false);
    expect(c.seed).toBe(3);
    for (const dir of ['modes-a', 'modes-b', 'modes-c']) rmSync(join(tmp, dir), { recursive: true, force: true });
  }, 120_000);

  test.each(['addition-modes-q', 'addition-modes-l'])('the shipped models/%s is small, loads, and scores what base_model.json records, mode by mode', async (name) => {
    const dir = fileURLToPath(new URL(`../../../models/${name}/`, import.meta.url));
    const bytes = readdirSync(dir).reduce((sum, f) => sum + statSync(join(dir, f)).size, 0);
    expect(bytes).toBeLessThan(2 ** 20);
    const record = readRecord(dir);
    expect(record).toMatchObject({ format: 'intuitor-base-model', version: 1, task: 'addition-modes' });
    const task = getTask('addition-modes');
    const examples = baseModelEvalSet('addition-modes', record.eval.seed, record.eval.prompts);
    const { accuracy, completions } = await evaluateGreedy(ctx, dir, task, examples, record.eval.maxNewTokens);
    expect(Math.abs(accuracy - record.eval.accuracy)).toBeLessThanOrEqual(TOLERANCES.baseModelAccuracy.atol);
    const modes = modeBreakdown(task, completions, examples);
    for (const [mode, m] of Object.entries(record.eval.modes!)) expect(Math.abs(modes[mode]!.share - m.share)).toBeLessThanOrEqual(TOLERANCES.baseModelAccuracy.atol);
  });

  test('bad options are refused by name before anything is written', async () => {
    const out = join(tmp, 'refused');
    await expect(buildBaseModel(ctx, { task: 'countdown' as 'arithmetic', out })).rejects.toMatchObject({ argument: 'task' });
    await expect(buildBaseModel(ctx, { task: 'arithmetic', out, steps: 0 })).rejects.toMatchObject({ argument: 'steps' });
    await expect(buildBaseModel(ctx, { task: 'arithmetic', out, lr: -1 })).rejects.toMatchObject({ argument: 'lr' });
    await expect(buildBaseModel(ctx, { task: 'arithmetic', out, architecture: { numHeads: 0 } })).rejects.toMatchObject({ argument: 'architecture.numHeads' });
    await expect(buildBaseModel(ctx, { task: 'addition-modes', out, scratchShare: 1.5 })).rejects.toMatchObject({ argument: 'scratchShare' });
    await expect(buildBaseModel(ctx, { task: 'addition-modes', out, directNoise: -0.1 })).rejects.toMatchObject({ argument: 'directNoise' });
    await expect(buildBaseModel(ctx, { task: 'addition', out, scratchShare: 0.5 })).rejects.toMatchObject({ argument: 'scratchShare' });
    expect(existsSync(out)).toBe(false);
  });
});
