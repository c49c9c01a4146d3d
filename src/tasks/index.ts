/** The built-in tasks by name. */
import { InvalidArgumentError, describe } from '../errors.js';
import { additionModesTask } from './addition-modes.js';
import { additionTask, arithmeticTask } from './arithmetic.js';
import { countdownTask } from './countdown.js';
import type { Task } from './dataset.js';
import { mathTask } from './math.js';
import { permutationsTask } from './permutations.js';

export const TASKS: Readonly<Record<string, Task>> = Object.freeze({
  arithmetic: arithmeticTask,
  addition: additionTask,
  'addition-modes': additionModesTask,
  countdown: countdownTask,
  permutations: permutationsTask,
  math: mathTask,
});

export function taskNames(): string[] {
  return Object.keys(TASKS);
}

/** The built-in task called `name`; an InvalidArgumentError lists the known ones. */
export function getTask(name: string): Task {
  const task = typeof name === 'string' && Object.hasOwn(TASKS, name) ? TASKS[name] : undefined;
  if (task === undefined) throw new InvalidArgumentError('task', `one of ${taskNames().join(', ')}`, describe(name));
  return task;
}

export { additionModesTask, additionTask, arithmeticTask, countdownTask, mathTask, permutationsTask };
export type { Task };
