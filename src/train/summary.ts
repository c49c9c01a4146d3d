/**
 * Generic tables for the end-of-run summary: Markdown (for README-style reports) and aligned plain
 * text (for the console). bench/schema.ts's markdownTable is fixed to benchmark rows; these take
 * any columns. Numbers are formatted alike in both: integers in full, others to `digits`
 * significant digits, exponents outside [1e-3, 1e6); null is an empty cell. Columns whose cells
 * are all numbers (or null) align right so digits line up, others left, unless `align` says.
 */
import { InvalidArgumentError, describe } from '../errors.js';

export type Cell = string | number | null;
export type Alignment = 'left' | 'right';

export interface TableOptions {
  /** Per-column alignment (default: right for all-number columns, else left). */
  align?: readonly Alignment[];
  /** Significant digits of non-integer numbers (default 4). */
  digits?: number;
  /** The text of a null cell (default ''). */
  empty?: string;
}

/** One cell as text (see the file comment). */
export function formatCell(value: Cell, digits = 4, empty = ''): string {
  if (value === null) return empty;
  if (typeof value === 'string') return value;
  if (!Number.isFinite(value) || Number.isInteger(value)) return String(value); // NaN, ±Infinity, integers as they are
  const abs = Math.abs(value);
  // Trailing zeros of the mantissa carry no information here: 0.5000 → 0.5.
  if (abs >= 1e6 || abs < 1e-3) return value.toExponential(digits - 1).replace(/\.?0+e/, 'e');
  const text = value.toPrecision(digits);
  // toPrecision switches to exponents once the integer part needs more than `digits`; whole units are precise enough there.
  if (text.includes('e')) return value.toFixed(0);
  return text.replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
}

interface Prepared {
  cells: string[][];
  align: Alignment[];
}

function prepare(columns: readonly string[], rows: readonly (readonly Cell[])[], options: TableOptions): Prepared {
  if (!Array.isArray(columns) || columns.length === 0 || columns.some((c) => typeof c !== 'string')) throw new InvalidArgumentError('columns', 'a non-empty array of column names', describe(columns));
  if (!Array.isArray(rows)) throw new InvalidArgumentError('rows', 'an array of rows', describe(rows));
  const digits = options.digits ?? 4;
  if (!Number.isSafeInteger(digits) || digits < 1 || digits > 21) throw new InvalidArgumentError('digits', 'an integer in [1, 21]', describe(digits));
  const empty = options.empty ?? '';
  if (typeof empty !== 'string') throw new InvalidArgumentError('empty', 'a string', describe(empty));
  rows.forEach((row, i) => {
    if (!Array.isArray(row) || row.length !== columns.length) throw new InvalidArgumentError(`rows[${i}]`, `an array of ${columns.length} cells (one per column)`, describe(row));
    row.forEach((cell, j) => {
      if (cell !== null && typeof cell !== 'string' && typeof cell !== 'number') throw new InvalidArgumentError(`rows[${i}][${j}]`, 'a string, number or null', describe(cell));
    });
  });
  if (options.align !== undefined && (!Array.isArray(options.align) || options.align.length !== columns.length || options.align.some((a) => a !== 'left' && a !== 'right'))) {
    throw new InvalidArgumentError('align', `an array of ${columns.length} 'left' | 'right'`, describe(options.align));
  }
  const align = options.align ? [...options.align] : columns.map((_, j) => {
    const numeric = rows.every((row) => row[j] === null || typeof row[j] === 'number') && rows.some((row) => typeof row[j] === 'number');
    return numeric ? 'right' as const : 'left' as const;
  });
  return { cells: rows.map((row) => row.map((cell: Cell) => formatCell(cell, digits, empty))), align };
}

/** A Markdown table; `|` in cells is escaped and line breaks become spaces. */
export function markdownTable(columns: readonly string[], rows: readonly (readonly Cell[])[], options: TableOptions = {}): string {
  const { cells, align } = prepare(columns, rows, options);
  const md = (text: string) => text.replace(/\r?\n|\r/g, ' ').replace(/\|/g, '\\|');
  const line = (row: readonly string[]) => `| ${row.map(md).join(' | ')} |`;
  return [line(columns), `| ${align.map((a) => (a === 'right' ? '---:' : '---')).join(' | ')} |`, ...cells.map(line)].join('\n');
}

/** Aligned plain text: the header, a rule of dashes, then the rows, columns two spaces apart. */
export function consoleTable(columns: readonly string[], rows: readonly (readonly Cell[])[], options: TableOptions = {}): string {
  const { cells, align } = prepare(columns, rows, options);
  const flat = (text: string) => text.replace(/\r?\n|\r/g, ' ');
  const all = [columns.map(flat), ...cells.map((row) => row.map(flat))];
  // Widths in code points, so "≥" or "×" count once (wide CJK glyphs would need a width table).
  const length = (text: string) => [...text].length;
  const widths = columns.map((_, j) => Math.max(...all.map((row) => length(row[j]!))));
  const pad = (text: string, j: number) => {
    const fill = ' '.repeat(widths[j]! - length(text));
    return align[j] === 'right' ? fill + text : text + fill;
  };
  const line = (row: readonly string[]) => row.map(pad).join('  ').trimEnd();
  return [line(all[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...all.slice(1).map(line)].join('\n');
}
