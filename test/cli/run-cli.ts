/** Runs the real `intuitor` CLI as a child process (at most MAX_CHILDREN at a time) for the CLI suites. */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'intuitor.js');
const MAX_CHILDREN = 2;

export interface CliResult {
  args: string[];
  /** Exit status; null when killed by a signal (e.g. the timeout). */
  status: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** stderr lines without blank lines. */
  messages: string[];
}

let running = 0;
const waiting: (() => void)[] = [];

/** Runs `fn` when fewer than MAX_CHILDREN children are running. */
async function slot<T>(fn: () => Promise<T>): Promise<T> {
  while (running >= MAX_CHILDREN) await new Promise<void>((wake) => waiting.push(wake));
  running++;
  try {
    return await fn();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

export function cli(args: string[], cwd = ROOT, timeoutMs = 60_000, env: Record<string, string> = {}): Promise<CliResult> {
  return slot(() => new Promise<CliResult>((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd, timeout: timeoutMs, maxBuffer: 64 << 20, env: { ...process.env, ...env } }, (error, stdout, stderr) => {
      const code = (error as { code?: unknown } | null)?.code;
      resolve({
        args,
        status: error === null ? 0 : typeof code === 'number' ? code : null,
        signal: (error as { signal?: string | null } | null)?.signal ?? null,
        stdout,
        stderr,
        messages: stderr.split('\n').filter((line) => line.trim() !== ''),
      });
    });
  }));
}

/** Fails with the child's command line and stderr when it did not exit 0. */
export function expectSuccess(r: CliResult): void {
  if (r.status !== 0) {
    throw new Error(`intuitor ${r.args.join(' ')}: exit ${r.status}${r.signal ? ` (${r.signal})` : ''}\nstderr:\n${r.stderr}`);
  }
  expect(r.messages.filter((line) => line.startsWith('intuitor: error'))).toEqual([]);
}
