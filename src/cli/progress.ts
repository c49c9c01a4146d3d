/**
 * A progress bar for training runs (cli-progress) on a terminal; elsewhere (CI, pipes) a plain
 * line about every 5% of the run, so logs stay readable.
 */
import cliProgress from 'cli-progress';

export interface Progress {
  update(step: number, fields: Record<string, string>): void;
  stop(): void;
}

export function createProgress(label: string, total: number, start: number): Progress {
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar({
      stream: process.stderr,
      format: `${label} [{bar}] {value}/{total} | {fields}`,
      hideCursor: true,
    }, cliProgress.Presets.shades_classic);
    bar.start(total, start, { fields: '' });
    return {
      update: (step, fields) => bar.update(step, { fields: Object.entries(fields).map(([k, v]) => `${k} ${v}`).join(' | ') }),
      stop: () => bar.stop(),
    };
  }
  const every = Math.max(1, Math.round(total / 20));
  return {
    update(step, fields) {
      if (step % every === 0 || step === total) process.stderr.write(`${label} ${step}/${total} ${Object.entries(fields).map(([k, v]) => `${k} ${v}`).join(' ')}\n`);
    },
    stop() {},
  };
}
