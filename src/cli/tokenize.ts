/** `intuitor tokenize`: text → token ids with a model folder's tokenizer, or ids → text with --ids. */
import { InvalidArgumentError } from '../errors.js';
import { PolicyTokenizer } from '../model/tokenizer.js';

export interface TokenizeOptions {
  model: string;
  text?: string;
  ids?: string;
  json?: boolean;
}

export function tokenizeCommand(options: TokenizeOptions): void {
  if ((options.text === undefined) === (options.ids === undefined)) {
    throw new InvalidArgumentError('--text / --ids', 'exactly one of them', options.text === undefined ? 'neither' : 'both');
  }
  const tokenizer = PolicyTokenizer.load(options.model);
  if (options.text !== undefined) {
    const ids = tokenizer.encode(options.text, { source: '--text' });
    process.stdout.write(options.json ? `${JSON.stringify({ ids })}\n` : `${ids.join(' ')}\n`);
    return;
  }
  const parts = options.ids!.split(/[\s,]+/).filter(Boolean);
  const ids = parts.map(Number);
  const bad = parts.findIndex((p, i) => !/^\d+$/.test(p) || !Number.isSafeInteger(ids[i]));
  if (bad >= 0 || ids.length === 0) throw new InvalidArgumentError('--ids', 'non-negative integer token ids separated by commas or spaces', JSON.stringify(parts[bad] ?? options.ids));
  tokenizer.checkIds(ids, '--ids');
  const text = tokenizer.decode(ids);
  process.stdout.write(options.json ? `${JSON.stringify({ text })}\n` : `${text}\n`);
}
