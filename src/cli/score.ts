/**
 * `intuitor score`: best-of-N selection. For every prompt, N sampled completions, each scored by
 * the policy (mean self-certainty and mean token log-prob at temperature 1, from one forward over
 * prompt ++ completion), and one pick per rule (src/rl/selection.ts: self-certainty, logprob,
 * majority, Borda voting by self-certainty rank as in Kang et al. 2025). Writes every candidate
 * with its scores and each rule's pick; when the prompts carry answers, prints each rule's
 * accuracy beside pass@N (some candidate right) and the expected accuracy of a random pick.
 */
import { GpuContext } from '../gpu/context.js';
import { writeFileAtomic } from '../io/tensor.js';
import { loadModelConfig } from '../model/config.js';
import { PolicyModel } from '../model/policy.js';
import { PolicyTokenizer } from '../model/tokenizer.js';
import { extractAnswer } from '../rl/verifier.js';
import { rollout, scoreCompletions, scoringLayout } from '../rl/rollout.js';
import { SELECTION_RULES, selectBest, type SelectionRule } from '../rl/selection.js';
import { finalAnswer, readJsonlDataset } from '../tasks/dataset.js';
import { getTask } from '../tasks/index.js';
import { consoleTable } from '../train/summary.js';
import { choiceOption, maxNewTokensOption, numberOption } from './inputs.js';

/** --max-new-tokens when not given: this many, or fewer where the model has fewer positions left. */
export const SCORE_MAX_NEW_TOKENS = 64;

export interface ScoreCommandOptions {
  model: string;
  prompts: string;
  n: string;
  select: string;
  task?: string;
  temperature: string;
  maxNewTokens?: string;
  seed: string;
  out?: string;
}

export async function scoreCommand(o: ScoreCommandOptions): Promise<void> {
  const n = numberOption('--n', o.n, { min: 2, integer: true });
  const select = choiceOption('--select', o.select, SELECTION_RULES);
  const temperature = numberOption('--temperature', o.temperature, { above: 0 });
  const seed = numberOption('--seed', o.seed, { min: 0, integer: true });
  // Without --task the answers are free-form math: extracted and compared numerically.
  const task = getTask(o.task ?? 'math');
  const examples = await readJsonlDataset(o.prompts, { requireAnswer: false });
  const tokenizer = PolicyTokenizer.load(o.model);
  const prompts = examples.map((e, i) => tokenizer.encode(e.prompt, { source: `prompt ${i + 1} of ${o.prompts}` }));
  const maxNewTokens = maxNewTokensOption(o.maxNewTokens, Math.max(...prompts.map((p) => p.length)), loadModelConfig(o.model).maxPositionEmbeddings, SCORE_MAX_NEW_TOKENS);
  const answerOf = (text: string): string | null => {
    if (task.stop === '') return extractAnswer(text);
    return finalAnswer(task, text);
  };
  const ctx = await GpuContext.create();
  try {
    const model = await PolicyModel.load(ctx, o.model);
    try {
      const records = [];
      const correct: Record<SelectionRule | 'pass@N' | 'random pick', number> = { 'self-certainty': 0, logprob: 0, majority: 0, borda: 0, 'pass@N': 0, 'random pick': 0 };
      const labelled = examples.filter((e) => e.answer !== undefined).length;
      for (const [p, example] of examples.entries()) {
        const completions = await rollout(model, tokenizer, [prompts[p]!], { groupSize: n, maxNewTokens, sampling: { temperature }, seed, step: p, stop: task.stop });
        const seqLen = prompts[p]!.length + Math.max(...completions.map((c) => c.tokens.length));
        const stats = await scoreCompletions(model, scoringLayout(completions.map(() => prompts[p]!), completions.map((c) => c.tokens), seqLen), seqLen, 1);
        const candidates = completions.map((c, i) => ({ text: c.text, answer: answerOf(c.text), selfCertainty: stats.meanSelfCertainty[i]!, logprob: stats.meanLogprob[i]! }));
        const picks = Object.fromEntries(SELECTION_RULES.map((rule) => [rule, selectBest(candidates, rule).index])) as Record<SelectionRule, number>;
        const isRight = (text: string): boolean => example.answer !== undefined && task.score(text, String(example.answer)) === 1;
        if (example.answer !== undefined) {
          for (const rule of SELECTION_RULES) correct[rule] += isRight(candidates[picks[rule]]!.text) ? 1 : 0;
          const rights = candidates.filter((c) => isRight(c.text)).length;
          correct['pass@N'] += rights > 0 ? 1 : 0;
          correct['random pick'] += rights / n;
        }
        records.push({
          prompt: example.prompt, answer: example.answer ?? null,
          candidates: candidates.map((c) => ({ text: c.text, answer: c.answer, self_certainty: c.selfCertainty, mean_logprob: c.logprob })),
          picks, chosen: candidates[picks[select]]!.answer, chosen_text: candidates[picks[select]]!.text,
        });
      }
      const out = o.out ?? o.prompts.replace(/(\.jsonl)?$/, '.scored.jsonl');
      await writeFileAtomic(out, [Buffer.from(records.map((r) => JSON.stringify(r)).join('\n') + '\n')]);
      process.stdout.write(`intuitor score: ${examples.length} prompts × ${n} candidates, selection by ${select}; candidates, scores and picks → ${out}\n`);
      if (labelled > 0) {
        process.stdout.write(`${consoleTable(['rule', `accuracy (${labelled} labelled prompts)`], Object.entries(correct).map(([rule, c]) => [rule, c / labelled]))}\n`);
      }
    } finally {
      model.destroy();
    }
  } finally {
    ctx.close();
  }
}
