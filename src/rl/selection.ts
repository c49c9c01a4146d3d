/**
 * Best-of-N selection: pick one of a prompt's N sampled completions, as in Kang et al. (2025),
 * "Scalable Best-of-N Selection for Large Language Models via Self-Certainty" (arXiv 2502.18581;
 * reference code github.com/backprop07/Self-Certainty). Each candidate brings its final answer,
 * its self-certainty (mean KL(Uniform ‖ π) over its tokens) and its mean token log-probability.
 *
 * Rules:
 * - 'self-certainty': the most self-certain candidate (the paper's "self-certainty" selection);
 * - 'logprob': the highest mean token log-probability (the paper's perplexity baseline);
 * - 'majority': the most frequent answer (self-consistency, Wang et al. 2023);
 * - 'borda': Borda voting weighted by self-certainty rank (the paper's eq. 11): with candidates
 *   ranked by self-certainty (rank 1 = highest), each gives (N − r + 1)^p votes to its answer,
 *   and the answer with the most votes wins. p = 0 is majority voting; large p approaches the
 *   'self-certainty' rule.
 *
 * Choices shared with the reference code: candidates without an answer never win while some
 * candidate has one (the code scores them −1e9 in selection and gives them no votes in Borda);
 * equal self-certainties rank in candidate order (Python's stable sort). Where the code leaves a
 * choice open, see the comments on the rule.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import { normalizeAnswer, parseNumericAnswer } from './verifier.js';

export interface SelectionCandidate {
  /** The completion's final answer (as extracted), or null when it has none. */
  answer: string | null;
  /** Mean over the completion's tokens of KL(Uniform ‖ π(·|prefix)), in nats. */
  selfCertainty: number;
  /** Mean token log-probability of the completion under the policy. */
  logprob: number;
}

export const SELECTION_RULES = ['self-certainty', 'logprob', 'majority', 'borda'] as const;
export type SelectionRule = (typeof SELECTION_RULES)[number];

/**
 * Borda's exponent p. 0.5 is the reference code's default (voting_from_list.py, `--power 0.5`);
 * the paper sweeps p and finds moderate values best at small N, larger ones as N grows.
 */
export const DEFAULT_BORDA_POWER = 0.5;

export interface SelectionOptions {
  /** Borda exponent p ≥ 0 (default DEFAULT_BORDA_POWER). */
  bordaPower?: number;
}

export interface Selection {
  /** Index of the chosen candidate. */
  index: number;
  /** Its answer as given (null when no candidate has an answer). */
  answer: string | null;
  /**
   * Per candidate, the value the rule maximises: its self-certainty or log-probability, or (for
   * 'majority' and 'borda') the count or votes of its answer. −Infinity marks a candidate the rule
   * cannot choose (no answer while another has one; any candidate under a voting rule with no answers).
   */
  scores: number[];
}

/**
 * The key answers are grouped by: normalizeAnswer (the verifier's MATH-style normalisation), and
 * for numbers and fractions their value, so "0.50", "1/2" and "\frac{1}{2}" agree. An empty
 * normalised answer counts as no answer (answersEqual never matches one either). Values are
 * compared exactly, not within answersEqual's 1e-6: grouping needs a key, and the answers of one
 * prompt's samples that differ in the 7th digit are rare enough not to matter.
 */
export function canonicalAnswer(answer: string | null): string | null {
  if (answer === null) return null;
  const normalized = normalizeAnswer(answer);
  if (normalized === '') return null;
  const value = parseNumericAnswer(normalized);
  return value === null ? normalized : String(value === 0 ? 0 : value); // -0 and 0 are one answer
}

function checkCandidates(candidates: readonly SelectionCandidate[]): void {
  if (!Array.isArray(candidates) || candidates.length === 0) throw new InvalidArgumentError('candidates', 'a non-empty array of candidates', describe(candidates));
  candidates.forEach((c, i) => {
    if (c === null || typeof c !== 'object') throw new InvalidArgumentError(`candidates[${i}]`, '{ answer, selfCertainty, logprob }', describe(c));
    if (c.answer !== null && typeof c.answer !== 'string') throw new InvalidArgumentError(`candidates[${i}].answer`, 'a string or null', describe(c.answer));
    if (typeof c.selfCertainty !== 'number' || !Number.isFinite(c.selfCertainty)) throw new InvalidArgumentError(`candidates[${i}].selfCertainty`, 'a finite number', describe(c.selfCertainty));
    if (typeof c.logprob !== 'number' || !Number.isFinite(c.logprob)) throw new InvalidArgumentError(`candidates[${i}].logprob`, 'a finite number', describe(c.logprob));
  });
}

/** Index of the largest score, the first on ties; −Infinity scores lose to any other. */
function argmax(scores: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < scores.length; i++) if (scores[i]! > scores[best]!) best = i;
  return best;
}

/**
 * Highest `value` among candidates with an answer, first on ties. When none has one, the highest
 * among all: the reference code scores them all −1e9 and returns the first; the best-scored is a
 * better guess at no cost.
 */
function byValue(candidates: readonly SelectionCandidate[], keys: readonly (string | null)[], value: (c: SelectionCandidate) => number): Selection {
  const anyAnswer = keys.some((k) => k !== null);
  const scores = candidates.map((c, i) => (anyAnswer && keys[i] === null ? -Infinity : value(c)));
  const index = argmax(scores);
  return { index, answer: candidates[index]!.answer, scores };
}

/**
 * Sums per answer a candidate weight (1 for majority, Borda votes for borda), in candidate order.
 * The answer with the largest total wins; ties go to the higher summed self-certainty, then to
 * the answer seen first (so Borda with p = 0 is exactly 'majority'; the reference code breaks
 * Borda ties by first appearance only). The chosen candidate is the winning answer's most
 * self-certain one (the first on ties), the one a user would read.
 */
function byVote(candidates: readonly SelectionCandidate[], keys: readonly (string | null)[], weights: readonly number[]): Selection {
  const totals = new Map<string, { votes: number; certainty: number; best: number }>();
  keys.forEach((key, i) => {
    if (key === null) return;
    const c = candidates[i]!;
    const entry = totals.get(key);
    if (entry === undefined) {
      totals.set(key, { votes: weights[i]!, certainty: c.selfCertainty, best: i });
      return;
    }
    entry.votes += weights[i]!;
    entry.certainty += c.selfCertainty;
    if (c.selfCertainty > candidates[entry.best]!.selfCertainty) entry.best = i;
  });
  const scores = keys.map((key) => (key === null ? -Infinity : totals.get(key)!.votes));
  let winner: { votes: number; certainty: number; best: number } | undefined;
  for (const entry of totals.values()) { // Map iteration is insertion order: first seen first
    if (winner === undefined || entry.votes > winner.votes || (entry.votes === winner.votes && entry.certainty > winner.certainty)) winner = entry;
  }
  // No answers: nothing to vote on; the most self-certain candidate stands in, answer null.
  const index = winner?.best ?? argmax(candidates.map((c) => c.selfCertainty));
  return { index, answer: winner === undefined ? null : candidates[index]!.answer, scores };
}

/** Borda votes per candidate: ranks by self-certainty, descending, ties in candidate order. */
function bordaWeights(candidates: readonly SelectionCandidate[], power: number): number[] {
  const n = candidates.length;
  const order = candidates.map((_, i) => i).sort((a, b) => candidates[b]!.selfCertainty - candidates[a]!.selfCertainty || a - b);
  const weights = new Array<number>(n);
  order.forEach((candidate, rankIndex) => {
    weights[candidate] = (n - rankIndex) ** power; // rank r = rankIndex + 1 gets (N − r + 1)^p
  });
  return weights;
}

/** Chooses one of a prompt's N candidates by `rule` (see the file comment). */
export function selectBest(candidates: readonly SelectionCandidate[], rule: SelectionRule, options: SelectionOptions = {}): Selection {
  checkCandidates(candidates);
  const keys = candidates.map((c) => canonicalAnswer(c.answer));
  switch (rule) {
    case 'self-certainty':
      return byValue(candidates, keys, (c) => c.selfCertainty);
    case 'logprob':
      return byValue(candidates, keys, (c) => c.logprob);
    case 'majority':
      return byVote(candidates, keys, candidates.map(() => 1));
    case 'borda': {
      const power = options.bordaPower ?? DEFAULT_BORDA_POWER;
      if (typeof power !== 'number' || !Number.isFinite(power) || power < 0) throw new InvalidArgumentError('bordaPower', 'a finite number ≥ 0', describe(power));
      return byVote(candidates, keys, bordaWeights(candidates, power));
    }
    default:
      throw new InvalidArgumentError('rule', `one of ${SELECTION_RULES.join(', ')}`, describe(rule));
  }
}
