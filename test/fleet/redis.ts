/**
 * The fleet suites' processes: a redis-server of their own on a free loopback port (never the
 * system service; bench/redis-server.ts), and intuitor workers and producers as child processes,
 * each stopped by its pid. Everything started here is recorded and `stopAll` ends it (the suites
 * call it in afterAll, so a failing test leaves nothing running).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { startRedisServer, type RedisServer, type RedisServerOptions } from '../../bench/redis-server.js';
import { ROOT } from '../cli/run-cli.js';

export type { RedisServer };

const BIN = join(ROOT, 'bin', 'intuitor.js');
const started = new Set<ChildProcess>();

/** A redis-server for one test, killed by stopAll if the test does not stop it. */
export async function startRedis(options: RedisServerOptions = {}): Promise<RedisServer> {
  const server = await startRedisServer(options);
  started.add(server.process());
  return { ...server, restart: async () => {
    await server.restart();
    started.add(server.process());
  } };
}

function exited(child: ChildProcess): Promise<number | null> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve(child.exitCode) : new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** A running `intuitor` child process: its output so far, and how to wait for it or stop it. */
export interface Intuitor {
  child: ChildProcess;
  output(): string;
  /** Resolves with the exit code (null when killed by a signal). */
  exit: Promise<number | null>;
  /** Resolves once the output (stdout + stderr) matches. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
}

export function intuitor(args: string[], env: Record<string, string> = {}): Intuitor {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  started.add(child);
  let output = '';
  const listeners = new Set<() => void>();
  const collect = (d: Buffer) => {
    output += d.toString();
    for (const check of listeners) check();
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exit = exited(child).then((code) => {
    started.delete(child);
    return code;
  });
  return {
    child,
    output: () => output,
    exit,
    waitFor: (pattern, timeoutMs = 60_000) => new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!pattern.test(output)) return;
        listeners.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        listeners.delete(check);
        reject(new Error(`intuitor ${args.join(' ')}: no ${pattern} within ${timeoutMs} ms; output:\n${output}`));
      }, timeoutMs);
      listeners.add(check);
      check();
    }),
  };
}

/** Kills (SIGKILL) every process these helpers started that is still running. */
export async function stopAll(): Promise<void> {
  const running = [...started];
  for (const child of running) child.kill('SIGKILL');
  await Promise.all(running.map(exited));
  started.clear();
}
