/**
 * JSON lines in, outcomes out: the unit of work that `score-completions` runs locally and that a
 * fleet worker runs for a job. Each line is parsed and checked on its own, so one bad line is
 * reported with its number while the others are scored; blank lines are not records and are
 * passed over. The line number (1-based) is the id of an item without one.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import { resultJson, type ScoreOptions, type Scorer } from './engine.js';
import type { ScoreItem } from './items.js';

/** One input line: its number in the file (1-based) and its text. */
export interface InputLine {
  line: number;
  text: string;
}

/** A line's output record (the result's JSON), or why it was not scored. */
export type LineOutcome = { line: number; record: Record<string, unknown> } | { line: number; error: string };

/** Parses, checks and scores lines; outcomes in input order, one per non-blank line. */
export async function scoreLines(scorer: Scorer, lines: readonly InputLine[], options: ScoreOptions = {}): Promise<LineOutcome[]> {
  // Per non-blank line: the index of its item, or its error.
  const parsed: { line: number; item?: number; error?: string }[] = [];
  const items: ScoreItem[] = [];
  for (const { line, text } of lines) {
    if (text.trim() === '') continue;
    const where = `line ${line}`;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      parsed.push({ line, error: `${where}: expected a JSON object, got ${describe(text)} (${(err as Error).message})` });
      continue;
    }
    try {
      items.push(scorer.parse(value, where, line));
      parsed.push({ line, item: items.length - 1 });
    } catch (err) {
      if (!(err instanceof InvalidArgumentError)) throw err;
      parsed.push({ line, error: err.message });
    }
  }
  const results = await scorer.score(items, options);
  return parsed.map(({ line, item, error }) => (item === undefined ? { line, error: error! } : { line, record: resultJson(results[item]!) }));
}

/**
 * Where chunks of input lines get scored: in this process (localChunkScorer), or by a fleet of
 * workers through a queue (src/fleet). The file pipeline keeps `concurrency` chunks in flight and
 * writes their outcomes in input order.
 */
export interface ChunkScorer {
  readonly concurrency: number;
  scoreChunk(lines: readonly InputLine[]): Promise<LineOutcome[]>;
}

/** Scores chunks with a Scorer of this process: two in flight, so one is parsed and tokenised while the other runs on the GPU. */
export function localChunkScorer(scorer: Scorer, options: ScoreOptions = {}): ChunkScorer {
  return { concurrency: 2, scoreChunk: (lines) => scoreLines(scorer, lines, options) };
}
