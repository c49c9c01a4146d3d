/**
 * A progress bar (cli-progress) on a terminal; elsewhere (CI, pipes) a plain line about every 5%
 * of the run, so logs stay readable. Training runs count steps (`value/total`); a file run counts
 * bytes and shows a percentage with an ETA.
 */
import cliProgress from 'cli-progress';

export interface Progress {
  update(step: number, fields: Record<string, string>): void;
  stop(): void;
}

export interface ProgressOptions {
  /** Show a percentage and an ETA instead of value/total (for totals that mean nothing to read, like bytes). */
  percent?: boolean;
}

export function createProgress(label: string, total: number, start: number, options: ProgressOptions = {}): Progress {
  const join = (fields: Record<string, string>, separator: string) => Object.entries(fields).map(([k, v]) => `${k} ${v}`).join(separator);
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar({
      stream: process.stderr,
      format: options.percent ? `${label} [{bar}] {percentage}% | ETA {eta_formatted} | {fields}` : `${label} [{bar}] {value}/{total} | {fields}`,
      hideCursor: true,
    }, cliProgress.Presets.shades_classic);
    bar.start(total, start, { fields: '' });
    return {
      update: (step, fields) => bar.update(step, { fields: join(fields, ' | ') }),
      stop: () => bar.stop(),
    };
  }
  if (options.percent) {
    let shown = Math.floor((20 * start) / Math.max(total, 1));
    return {
      update(value, fields) {
        const twentieths = Math.floor((20 * value) / Math.max(total, 1));
        if (twentieths === shown) return;
        shown = twentieths;
        process.stderr.write(`${label} ${total > 0 ? ((100 * value) / total).toFixed(0) : 100}% ${join(fields, ' ')}\n`);
      },
      stop() {},
    };
  }
  const every = Math.max(1, Math.round(total / 20));
  return {
    update(step, fields) {
      if (step % every === 0 || step === total) process.stderr.write(`${label} ${step}/${total} ${join(fields, ' ')}\n`);
    },
    stop() {},
  };
}
