/**
 * A rule-based answer verifier for free-form (math) completions: pull the final answer out of a
 * completion, normalise it, and compare it with a reference numerically where both are numbers
 * (relative tolerance 1e-6) or as normalised strings otherwise.
 *
 * Normalisation follows the spirit of the MATH benchmark's `_strip_string` (Hendrycks et al.,
 * 2021, which INTUITOR's and most RLVR math graders reuse): math delimiters, \left/\right, spacing
 * commands, \text{} wrappers, degrees and percent signs, trailing periods and a leading short
 * "x =" go; \dfrac and \tfrac become \frac. A percent sign is dropped, not applied: "50\%" equals
 * "50", as in MATH's grader, not "0.5".
 */

/** The argument of the last \boxed{...} (or \fbox{...}), braces balanced; null if there is none or it never closes. */
export function lastBoxed(text: string): string | null {
  const pattern = /\\(?:boxed|fbox)\s*\{/g;
  let start = -1;
  for (let m = pattern.exec(text); m !== null; m = pattern.exec(text)) start = m.index + m[0].length;
  if (start < 0) return null;
  let depth = 1;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (c === '\\' && i + 1 < text.length) {
      i++; // an escaped brace \{ does not nest
      continue;
    }
    if (c === '{') depth++;
    else if (c === '}' && --depth === 0) return text.slice(start, i);
  }
  return null;
}

const NUMBER_PATTERN = /-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*\/\s*-?\d+(?:\.\d+)?)?|-?\.\d+/g;

/** The statement after the last "answer is" / "answer:" up to the end of its sentence or line. */
function statedAnswer(text: string): string | null {
  const pattern = /answer\s*(?:is|:)\s*:?\s*/gi;
  let start = -1;
  for (let m = pattern.exec(text); m !== null; m = pattern.exec(text)) start = m.index + m[0].length;
  if (start < 0) return null;
  let rest = text.slice(start).split('\n', 1)[0]!;
  // A sentence ends at a period followed by a space or the end, so decimals like 3.5 survive.
  const end = rest.search(/\.(?=\s|$)/);
  if (end >= 0) rest = rest.slice(0, end);
  // So does a clause that explains it: "5, because ...", "5 since ...".
  const clause = rest.search(/[,;]?\s+(?:because|since|as|so|which|and|but|given|when|where)\b/i);
  if (clause > 0) rest = rest.slice(0, clause);
  rest = rest.replace(/\*\*/g, '').trim();
  return rest === '' ? null : rest;
}

/**
 * The completion's final answer: the last \boxed{...} (nested braces kept), else the text after
 * the last "answer is" / "Answer:", else the last number (integers, decimals, 1,000-style
 * groups, fractions a/b). Null when none of these is present.
 */
export function extractAnswer(text: string): string | null {
  if (typeof text !== 'string') return null;
  const boxed = lastBoxed(text);
  if (boxed !== null) return boxed.trim();
  const stated = statedAnswer(text);
  if (stated !== null) return stated;
  const numbers = text.match(NUMBER_PATTERN);
  return numbers ? numbers[numbers.length - 1]!.replace(/\s+/g, '') : null;
}

/** Replaces \cmd{arg} by arg for the given commands, innermost first. */
function unwrap(text: string, commands: string[]): string {
  const pattern = new RegExp(`\\\\(?:${commands.join('|')})\\s*\\{([^{}]*)\\}`, 'g');
  let previous;
  do {
    previous = text;
    text = text.replace(pattern, '$1');
  } while (text !== previous);
  return text;
}

/** A canonical string form of an answer (see the file comment); compare with answersEqual. */
export function normalizeAnswer(answer: string): string {
  let s = String(answer).trim();
  const boxed = lastBoxed(s);
  if (boxed !== null) s = boxed;
  s = s
    .replace(/[\s.]+$/, '')
    .replace(/\u2212/g, '-')
    .replace(/^\$+|\$+$/g, '')
    .replace(/^\\\(|\\\)$/g, '')
    .replace(/^\\\[|\\\]$/g, '')
    .replace(/\\(?:left|right)\b/g, '')
    .replace(/\\[,;:!>]|\\ |~/g, ' ')
    .replace(/\\(?:dfrac|tfrac)/g, '\\frac')
    .replace(/\^\s*\{?\\circ\}?|°/g, '')
    .replace(/\\?%/g, '')
    .replace(/\\\$/g, '');
  // Units after a number: "5\text{ cm}" → "5".
  s = s.trim().replace(/^(.*[\d}])\s*\\(?:text|mbox|mathrm)\s*\{[^{}]*\}$/, '$1');
  s = unwrap(s, ['text', 'textbf', 'mathrm', 'mathbf', 'displaystyle']).replace(/\\displaystyle/g, '');
  s = s.trim().replace(/\.+$/, '').trim();
  // A short variable assignment ("x = 5", "k=3") keeps only its value.
  s = s.replace(/^[a-zA-Z]\s*=\s*/, '');
  // \frac12 and \frac1{2}: single-character arguments without braces.
  s = s.replace(/\\frac\s*(\d)\s*(\d)/g, '\\frac{$1}{$2}').replace(/\\frac\s*(\d)\s*\{/g, '\\frac{$1}{');
  if (/^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$/.test(s)) s = s.replace(/,/g, '');
  s = s.replace(/\s+/g, '');
  // Braces around a whole answer: {5} → 5.
  while (/^\{[^{}]*\}$/.test(s)) s = s.slice(1, -1);
  return s;
}

const DECIMAL = String.raw`\d+(?:\.\d*)?|\.\d+`;
const PLAIN_NUMBER = new RegExp(`^[-+]?(?:${DECIMAL})(?:[eE][-+]?\\d+)?$`);
const SLASH_FRACTION = new RegExp(`^([-+]?(?:${DECIMAL}))/([-+]?(?:${DECIMAL}))$`);
const LATEX_FRACTION = new RegExp(`^([-+]?)\\\\frac\\{([-+]?(?:${DECIMAL}))\\}\\{([-+]?(?:${DECIMAL}))\\}$`);

/** The numeric value of a normalised answer, or null when it is not a plain number or fraction. */
export function parseNumericAnswer(normalized: string): number | null {
  if (PLAIN_NUMBER.test(normalized)) return Number(normalized);
  let m = SLASH_FRACTION.exec(normalized);
  if (m) {
    const value = Number(m[1]) / Number(m[2]);
    return Number.isFinite(value) ? value : null;
  }
  m = LATEX_FRACTION.exec(normalized);
  if (m) {
    const value = Number(m[2]) / Number(m[3]);
    return Number.isFinite(value) ? (m[1] === '-' ? -value : value) : null;
  }
  return null;
}

/** Relative tolerance of numeric comparison. */
export const NUMERIC_RTOL = 1e-6;

/**
 * Whether two answers agree: numerically (|a − b| ≤ 1e-6·max(|a|, |b|)) when both normalise to
 * numbers or fractions, else as equal normalised strings (case-sensitive, spaces ignored).
 */
export function answersEqual(a: string, b: string): boolean {
  if (typeof a !== 'string' || typeof b !== 'string') return false;
  const na = normalizeAnswer(a);
  const nb = normalizeAnswer(b);
  const x = parseNumericAnswer(na);
  const y = parseNumericAnswer(nb);
  if (x !== null && y !== null) return x === y || Math.abs(x - y) <= NUMERIC_RTOL * Math.max(Math.abs(x), Math.abs(y));
  return na !== '' && na === nb;
}
