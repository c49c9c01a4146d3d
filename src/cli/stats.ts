/** `intuitor stats`: token statistics of a logits file, written as .npy files or printed as JSON. */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import { writeNpy } from '../io/npy.js';
import { BACKENDS, tokenStats, type Backend } from '../ops/token-stats.js';
import { numberOption, readIds, readLogits } from './inputs.js';

export interface StatsOptions {
  logits: string;
  ids?: string;
  temperature: string;
  backend: string;
  dtype?: string;
  tensor?: string;
  out?: string;
  json?: boolean;
}

/** JSON has no NaN or ±Infinity: they are written as strings. */
function jsonNumbers(values: Float32Array | null): (number | string)[] | null {
  return values ? Array.from(values, (v) => (Number.isFinite(v) ? v : String(v))) : null;
}

export async function statsCommand(options: StatsOptions): Promise<void> {
  if (!(BACKENDS as readonly string[]).includes(options.backend)) throw new InvalidArgumentError('--backend', BACKENDS.join(' | '), JSON.stringify(options.backend));
  const temperature = numberOption('--temperature', options.temperature, { above: 0 });
  if (!options.json && options.out === undefined) throw new InvalidArgumentError('--out', 'an output directory (or --json)', 'none');
  if (options.json && options.out !== undefined) throw new InvalidArgumentError('--json / --out', 'one of them (--json prints the statistics, --out writes them as files)', 'both');
  const logits = await readLogits(options.logits, { dtype: options.dtype, tensor: options.tensor });
  const rowShape = logits.shape.slice(0, -1);
  const ids = options.ids === undefined ? null : await readIds(options.ids, rowShape, logits.shape.at(-1)!);
  const stats = await tokenStats({ logits: logits.data, shape: logits.shape, dtype: logits.dtype, ids, temperature }, { backend: options.backend as Backend });

  if (options.json) {
    process.stdout.write(JSON.stringify({
      backend: stats.backend, dtype: logits.dtype, shape: rowShape, temperature,
      selfCertainty: jsonNumbers(stats.selfCertainty), entropy: jsonNumbers(stats.entropy),
      logsumexp: jsonNumbers(stats.logsumexp), logprob: jsonNumbers(stats.logprob),
    }) + '\n');
    return;
  }
  const out = options.out!;
  await mkdir(out, { recursive: true });
  const write = (name: string, data: Float32Array) => writeNpy(join(out, name), { dtype: 'f32', shape: rowShape, data });
  await write('self_certainty.npy', stats.selfCertainty);
  await write('entropy.npy', stats.entropy);
  await write('logsumexp.npy', stats.logsumexp);
  if (stats.logprob) await write('logprob.npy', stats.logprob);
  process.stderr.write(`intuitor stats: ${stats.backend}, ${rowShape.reduce((a, b) => a * b, 1)} rows of V=${logits.shape.at(-1)} (${logits.dtype}) → ${out}\n`);
}
