/**
 * Free-form math answers, for datasets given as JSON lines ({prompt, answer}) rather than a
 * built-in generator: the final answer is extracted (last \boxed{}, "the answer is", the last
 * number) and compared numerically (src/rl/verifier.ts). Completions end at EOS only.
 */
import { InvalidArgumentError } from '../errors.js';
import { answersEqual, extractAnswer } from '../rl/verifier.js';
import { numericWrongAnswer } from '../rl/rewards.js';
import type { Task } from './dataset.js';

export const mathTask: Task = {
  name: 'math',
  description: 'free-form math (a --data file): the extracted final answer compared numerically with the reference',
  stop: '',
  generate() {
    // The library's word: the CLI's train says which flag gives math its data (src/cli/train.ts).
    throw new InvalidArgumentError('task', 'a task with a generator (addition, arithmetic, countdown, permutations); math has none, its prompts come from a dataset', '"math"');
  },
  formatOk: (completion) => extractAnswer(completion) !== null,
  score(completion, answer) {
    const got = extractAnswer(completion);
    return got !== null && answersEqual(got, answer) ? 1 : 0;
  },
  wrongAnswer: numericWrongAnswer,
};
