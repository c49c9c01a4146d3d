/** The reward registry: spec parsing, each text reward with and without a task, seeded randomness, user modules and their failures. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FileFormatError, InvalidArgumentError } from '../../src/errors.js';
import {
  MODEL_STAT_REWARDS,
  REWARDS,
  RewardError,
  TEXT_REWARDS,
  builtinReward,
  evaluateReward,
  loadUserReward,
  numericWrongAnswer,
  parseRewardSpec,
  resolveRewards,
  rewardRandom,
  type RewardSample,
} from '../../src/rl/rewards.js';
import { getTask } from '../../src/tasks/index.js';

const ctx = {};

describe('parseRewardSpec', () => {
  test('names with optional weights, built-ins and module paths', () => {
    expect(parseRewardSpec('self-certainty,accuracy:0.5,./my.js:2')).toEqual([
      { name: 'self-certainty', weight: 1, kind: 'builtin' },
      { name: 'accuracy', weight: 0.5, kind: 'builtin' },
      { name: './my.js', weight: 2, kind: 'module' },
    ]);
    expect(parseRewardSpec(' format : -1 , random:0 , /abs/r.mjs, reward.cjs:1e-1')).toEqual([
      { name: 'format', weight: -1, kind: 'builtin' },
      { name: 'random', weight: 0, kind: 'builtin' },
      { name: '/abs/r.mjs', weight: 1, kind: 'module' },
      { name: 'reward.cjs', weight: 0.1, kind: 'module' },
    ]);
    expect(parseRewardSpec('C:\\rewards\\r.mjs:3')).toEqual([{ name: 'C:\\rewards\\r.mjs', weight: 3, kind: 'module' }]);
    expect(parseRewardSpec('C:\\rewards\\r.mjs')).toEqual([{ name: 'C:\\rewards\\r.mjs', weight: 1, kind: 'module' }]);
  });

  test('unknown names, malformed weights, empty entries and duplicates are refused', () => {
    expect(() => parseRewardSpec('acuracy')).toThrow(/a known reward \(accuracy, format, random, incorrect, self-certainty, contrastive-self-certainty, logprob, neg-entropy\) or a path/);
    expect(() => parseRewardSpec('accuracy:abc')).toThrow(/rewards: weight of 'accuracy': expected a finite number after the colon, got "abc"/);
    expect(() => parseRewardSpec('accuracy:')).toThrow(/weight of 'accuracy'/);
    expect(() => parseRewardSpec('./my.js:x')).toThrow(/weight of '.\/my.js'/);
    expect(() => parseRewardSpec('accuracy,,format')).toThrow(/no empty entries/);
    expect(() => parseRewardSpec('accuracy,accuracy:2')).toThrow(/each reward at most once/);
    expect(() => parseRewardSpec(':2')).toThrow(/a reward name before/);
    expect(() => parseRewardSpec('')).toThrow(InvalidArgumentError);
  });
});

describe('the registry', () => {
  test('model-statistic rewards are flagged and have no text function', () => {
    for (const name of MODEL_STAT_REWARDS) {
      expect(REWARDS[name].needsModelStats).toBe(true);
      expect(() => builtinReward(name as never)).toThrow(/which the trainer computes from model statistics/);
    }
    for (const name of TEXT_REWARDS) expect(REWARDS[name].needsModelStats).toBe(false);
    expect(() => builtinReward('bogus' as never)).toThrow(/name: expected one of the text rewards/);
  });

  test('resolveRewards attaches functions, null for model statistics', async () => {
    const resolved = await resolveRewards(parseRewardSpec('self-certainty,accuracy:0.5'));
    expect(resolved.map((r) => [r.name, r.weight, r.needsModelStats, r.needsAnswer, r.fn === null])).toEqual([
      ['self-certainty', 1, true, false, true],
      ['accuracy', 0.5, false, true, false],
    ]);
  });
});

describe('text rewards', () => {
  const accuracy = builtinReward('accuracy');
  const format = builtinReward('format');
  const incorrect = builtinReward('incorrect');
  const free = (completion: string, answer?: string): RewardSample => ({ prompt: 'q', completion, ...(answer === undefined ? {} : { answer }) });

  test('accuracy without a task: extracted final answer against the reference', async () => {
    expect(await accuracy(free('so \\boxed{\\frac{1}{2}}', '0.5'), ctx)).toBe(1);
    expect(await accuracy(free('The answer is 12.', '12'), ctx)).toBe(1);
    expect(await accuracy(free('maybe 11', '12'), ctx)).toBe(0);
    expect(await accuracy(free('no idea', '12'), ctx)).toBe(0);
    await expect(async () => accuracy(free('12'), ctx)).rejects.toThrow(/answer: expected a reference answer \(the 'accuracy' reward needs one\)/);
  });

  test('accuracy with a task uses its verifier', async () => {
    const arithmetic = getTask('arithmetic');
    expect(await accuracy({ prompt: '2+3=', completion: '5\n', answer: '5', task: arithmetic }, ctx)).toBe(1);
    expect(await accuracy({ prompt: '2+3=', completion: 'five', answer: '5', task: arithmetic }, ctx)).toBe(0);
    const permutations = getTask('permutations');
    expect(await accuracy({ prompt: 'perm ABA:', completion: 'BAA,AAB,ABA\n', answer: 'AAB,ABA,BAA', task: permutations }, ctx)).toBe(1);
    expect(await accuracy({ prompt: 'perm ABA:', completion: 'BAA,AAB\n', answer: 'AAB,ABA,BAA', task: permutations }, ctx)).toBe(0);
    const countdown = getTask('countdown');
    expect(await accuracy({ prompt: '3 5 7 -> 22:', completion: '3*5+7\n', answer: '22 from 3 5 7', task: countdown }, ctx)).toBe(1);
  });

  test('format: the task’s formatOk, or a boxed answer without a task', async () => {
    expect(await format(free('\\boxed{3}'), ctx)).toBe(1);
    expect(await format(free('3'), ctx)).toBe(0);
    const arithmetic = getTask('arithmetic');
    expect(await format({ prompt: '2+3=', completion: '6\n', task: arithmetic }, ctx)).toBe(1);
    expect(await format({ prompt: '2+3=', completion: 'six\n', task: arithmetic }, ctx)).toBe(0);
  });

  test('incorrect rewards the fixed wrong label, never the right answer', async () => {
    expect(numericWrongAnswer('41')).toBe('42');
    expect(numericWrongAnswer('\\frac{1}{2}')).toBe('1.5');
    expect(() => numericWrongAnswer('(1,2)')).toThrow(/answer: expected a numeric answer/);
    expect(await incorrect(free('\\boxed{42}', '41'), ctx)).toBe(1);
    expect(await incorrect(free('\\boxed{41}', '41'), ctx)).toBe(0);
    const arithmetic = getTask('arithmetic');
    expect(await incorrect({ prompt: '2+3=', completion: '6\n', answer: '5', task: arithmetic }, ctx)).toBe(1);
    expect(await incorrect({ prompt: '2+3=', completion: '5\n', answer: '5', task: arithmetic }, ctx)).toBe(0);
    const permutations = getTask('permutations');
    const answer = 'AAB,ABA,BAA';
    expect(await incorrect({ prompt: 'perm ABA:', completion: `${permutations.wrongAnswer(answer)}\n`, answer, task: permutations }, ctx)).toBe(1);
    expect(await incorrect({ prompt: 'perm ABA:', completion: `${answer}\n`, answer, task: permutations }, ctx)).toBe(0);
  });

  test('random: Bernoulli(p) from the supplied generator, reproducible per (seed, step, prompt, sample)', async () => {
    const random = builtinReward('random');
    const draw = (seed: number, step: number, prompt: number, sample: number) => random(free('x'), { rand: rewardRandom(seed, step, prompt, sample) }) as number;
    expect(draw(1, 2, 3, 4)).toBe(draw(1, 2, 3, 4));
    let sum = 0;
    const n = 4000;
    for (let i = 0; i < n; i++) sum += draw(7, Math.floor(i / 64), Math.floor(i / 8) % 8, i % 8);
    expect(Math.abs(sum / n - 0.5)).toBeLessThan(0.03);
    const rare = builtinReward('random', { randomProbability: 0.1 });
    let hits = 0;
    for (let i = 0; i < n; i++) hits += rare(free('x'), { rand: rewardRandom(3, 0, i, 0) }) as number;
    expect(Math.abs(hits / n - 0.1)).toBeLessThan(0.02);
    // Neighbouring tuples draw differently.
    const firsts = new Set([0, 1, 2, 3].map((s) => rewardRandom(0, 0, 0, s)()));
    expect(firsts.size).toBe(4);
    expect(() => builtinReward('random', { randomProbability: 1.5 })).toThrow(/randomProbability: expected a number in \[0, 1\]/);
    expect(() => random(free('x'), {})).toThrow(/context\.rand: expected a seeded/);
    expect(() => rewardRandom(1.5, 0, 0, 0)).toThrow(InvalidArgumentError);
  });
});

describe('evaluateReward and user modules', () => {
  let directory: string;
  beforeAll(async () => {
    directory = await mkdtemp(path.join(os.tmpdir(), 'intuitor-rewards-'));
  });
  afterAll(() => rm(directory, { recursive: true, force: true }));

  const write = async (name: string, source: string) => {
    const file = path.join(directory, name);
    await writeFile(file, source);
    return file;
  };
  const sample: RewardSample = { prompt: 'p', completion: 'hello', answer: 'a', task: getTask('arithmetic') };

  test('a default export receives the plain sample, task by name', async () => {
    const file = await write('default.mjs', 'export default (s) => s.completion.length + (s.task === "arithmetic" ? 100 : 0) + (s.answer === "a" ? 1000 : 0);');
    const fn = await loadUserReward(file);
    expect(await evaluateReward('default.mjs', fn, sample, 0)).toBe(1105);
  });

  test('a named async `reward` export', async () => {
    const file = await write('named.mjs', 'export const other = 1;\nexport async function reward(s) { return s.prompt === "p" ? 0.25 : 0; }');
    expect(await evaluateReward('named', await loadUserReward(file), sample, 3)).toBe(0.25);
  });

  test('throws, NaN and non-numbers become RewardErrors naming the reward and the prompt', async () => {
    const throws = await loadUserReward(await write('throws.mjs', 'export default () => { throw new Error("boom"); };'));
    await expect(evaluateReward('throws.mjs', throws, sample, 7)).rejects.toThrow(`reward 'throws.mjs': expected a finite number for prompt 7 (${JSON.stringify(sample.prompt)}), got a throw: boom`);
    const error = await evaluateReward('throws.mjs', throws, sample, 7).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RewardError);
    expect(error).toMatchObject({ reward: 'throws.mjs', promptIndex: 7, code: 'REWARD_FAILED' });
    // Bad input from the user's module (exit 2 on the command line), its own stack kept as the cause.
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect(((error as Error).cause as Error).stack).toContain('throws.mjs');
    const nan = await loadUserReward(await write('nan.mjs', 'export default () => NaN;'));
    await expect(evaluateReward('nan.mjs', nan, sample, 2)).rejects.toThrow(/^reward 'nan\.mjs': expected a finite number for prompt 2 \(.*\), got NaN$/);
    const text = await loadUserReward(await write('text.mjs', 'export default async () => "1";'));
    await expect(evaluateReward('text.mjs', text, sample, 4)).rejects.toThrow(/for prompt 4 \(.*\), got "1"/);
    const infinite = await loadUserReward(await write('inf.mjs', 'export default () => Infinity;'));
    await expect(evaluateReward('inf.mjs', infinite, sample, 0)).rejects.toThrow(RewardError);
    const rejects = await loadUserReward(await write('rejects.mjs', 'export default async () => { throw new Error("later"); };'));
    await expect(evaluateReward('rejects.mjs', rejects, sample, 1)).rejects.toThrow(`reward 'rejects.mjs': expected a finite number for prompt 1 ("p"), got a throw: later`);
  });

  test('built-in rewards fail the same way', async () => {
    await expect(evaluateReward('accuracy', builtinReward('accuracy'), { prompt: 'p', completion: 'c' }, 9)).rejects.toThrow(/^reward 'accuracy': expected a finite number for prompt 9 \("p"\), got a throw: answer: expected a reference answer/);
  });

  test('a module without a reward function, or that does not load, is a FileFormatError', async () => {
    const none = await write('none.mjs', 'export const x = 1;');
    await expect(loadUserReward(none)).rejects.toThrow(/expected a default or named `reward` function export, got exports x/);
    await expect(loadUserReward(path.join(directory, 'missing.mjs'))).rejects.toThrow(FileFormatError);
    const broken = await write('broken.mjs', 'export default (;');
    await expect(loadUserReward(broken)).rejects.toThrow(/expected an importable JavaScript module/);
    await expect(loadUserReward('')).rejects.toThrow(InvalidArgumentError);
  });

  test('resolveRewards loads module specs', async () => {
    const file = await write('resolved.mjs', 'export default () => 2;');
    const [resolved] = await resolveRewards(parseRewardSpec(`${file}:0.5`));
    expect(resolved).toMatchObject({ name: file, weight: 0.5, kind: 'module', needsModelStats: false });
    expect(await evaluateReward(resolved!.name, resolved!.fn!, sample, 0)).toBe(2);
  });
});
