/**
 * Why GRPO on self-certainty LOWERS self-certainty on the shipped base model (README, "The main
 * job"). From models/addition-base, ten GRPO updates (16 train prompts × G = 8 each, lr 3e-4,
 * temperature 1) with one reward and one advantage filter per variant, then the mean
 * self-certainty, entropy and length of fresh samples on 64 held-out prompts × 4:
 *
 *   none                  no update (the base);
 *   self-certainty        the INTUITOR reward, both advantage signs;
 *   self-certainty (A>0)  only the positive advantages (the reinforced high-certainty samples);
 *   self-certainty (A<0)  only the negative ones;
 *   logprob               the mean log-prob reward, whose policy gradient is, in expectation, the
 *                         gradient of minus the entropy (the control: entropy must fall).
 *
 *   node dist/bench/self-certainty-dynamics.js [out.txt]
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { computeAdvantages } from '../src/rl/advantages.js';
import { GpuContext } from '../src/gpu/context.js';
import { PolicyTokenizer } from '../src/model/tokenizer.js';
import { grpoLoss } from '../src/rl/loss.js';
import { completionMask, readCompletionStats, rollout, rowGradients, scoringLayout } from '../src/rl/rollout.js';
import { SHIPPED_BASE_MODEL, SHIPPED_BASE_TASK } from '../src/cli/run.js';
import { getTask } from '../src/tasks/index.js';
import { DEFAULT_OPTIMIZER } from '../src/train/optimizer.js';
import { TrainingSession } from '../src/train/session.js';

const MAX_NEW = 8;
const G = 8;
const PROMPTS = 16;
const UPDATES = 10;
const SEQ_LEN = 8 + MAX_NEW;

type Variant = { name: string; reward: 'self-certainty' | 'logprob'; keep: 'both' | 'positive' | 'negative' } | null;
const VARIANTS: { name: string; variant: Variant }[] = [
  { name: 'none (the base)', variant: null },
  { name: 'self-certainty', variant: { name: 'sc', reward: 'self-certainty', keep: 'both' } },
  { name: 'self-certainty (A>0 only)', variant: { name: 'sc+', reward: 'self-certainty', keep: 'positive' } },
  { name: 'self-certainty (A<0 only)', variant: { name: 'sc-', reward: 'self-certainty', keep: 'negative' } },
  { name: 'logprob', variant: { name: 'lp', reward: 'logprob', keep: 'both' } },
];

const mean = (a: ArrayLike<number>): number => Array.from(a).reduce((x, y) => x + y, 0) / a.length;

/** Samples `groupSize` completions per prompt from the session's policy and scores them with its training forward (activations kept). */
async function scored(session: TrainingSession, tokenizer: PolicyTokenizer, prompts: number[][], groupSize: number, seed: number, step: number) {
  const completions = await rollout(session.model, tokenizer, prompts, { groupSize, maxNewTokens: MAX_NEW, sampling: { temperature: 1 }, seed, step, stop: getTask(SHIPPED_BASE_TASK).stop });
  const layout = scoringLayout(completions.map((c) => prompts[c.prompt]!), completions.map((c) => c.tokens), SEQ_LEN);
  const prepared = await session.graph.prepareStep(completions.length, SEQ_LEN);
  session.graph.writeBatch(prepared, { ids: layout.ids, lengths: layout.lengths, targets: layout.targets });
  await session.graph.forward(prepared);
  const stats = await readCompletionStats(session.model.ctx, 'dynamics', prepared.stats, layout, MAX_NEW);
  return { completions, layout, prepared, stats };
}

async function main(): Promise<void> {
  const task = getTask(SHIPPED_BASE_TASK);
  const tokenizer = PolicyTokenizer.load(SHIPPED_BASE_MODEL);
  const train = task.generate(0, PROMPTS * 2, 'train').map((e) => tokenizer.encode(e.prompt));
  const heldOut = task.generate(0, 64, 'test').map((e) => tokenizer.encode(e.prompt));
  const ctx = await GpuContext.create();
  const lines = [`variant                      self-certainty  entropy  length   (64 held-out prompts × 4 samples after ${UPDATES} updates)`];
  try {
    for (const { name, variant } of VARIANTS) {
      const session = await TrainingSession.open(ctx, {
        model: SHIPPED_BASE_MODEL, out: join(tmpdir(), `intuitor-dynamics-${process.pid}`), resume: false, keep: 1,
        optimizer: { ...DEFAULT_OPTIMIZER, lr: 3e-4, totalSteps: UPDATES },
      });
      try {
        for (let update = 1; update <= UPDATES && variant; update++) {
          const prompts = train.slice((update % 2) * PROMPTS, (update % 2 + 1) * PROMPTS);
          const { completions, layout, prepared, stats } = await scored(session, tokenizer, prompts, G, 1, update);
          try {
            const rewards = Array.from(variant.reward === 'logprob' ? stats.meanLogprob : stats.meanSelfCertainty);
            const advantages = computeAdvantages(rewards, G, { scaleRewards: 'group' });
            if (variant.keep !== 'both') advantages.forEach((a, i) => (advantages[i] = variant.keep === 'positive' ? Math.max(a, 0) : Math.min(a, 0)));
            const mask = completionMask(completions, MAX_NEW);
            const loss = grpoLoss({ logprobs: stats.logprob, oldLogprobs: stats.logprob, advantages, mask, lossType: 'grpo', maxCompletionLength: MAX_NEW });
            const gLogprob = rowGradients(layout, loss.gradLogprobs, MAX_NEW, completions.length * SEQ_LEN);
            session.graph.writeBatch(prepared, { ids: layout.ids, lengths: layout.lengths, targets: layout.targets, gLogprob });
            await session.graph.zeroGrads();
            await session.graph.backward(prepared);
            await session.optimizer.update(update);
          } finally {
            prepared.destroy();
          }
        }
        const { completions, prepared, stats } = await scored(session, tokenizer, heldOut, 4, 99, 1);
        prepared.destroy();
        lines.push(`${name.padEnd(28)} ${mean(stats.meanSelfCertainty).toFixed(3).padStart(14)} ${mean(stats.meanEntropy).toFixed(3).padStart(8)} ${mean(completions.map((c) => c.tokens.length)).toFixed(2).padStart(7)}`);
        process.stdout.write(`${lines.at(-1)}\n`);
      } finally {
        session.destroy();
      }
    }
  } finally {
    ctx.close();
  }
  const out = process.argv[2];
  if (out) writeFileSync(out, `${lines.join('\n')}\n`);
}

await main();
