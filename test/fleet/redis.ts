/**
 * The fleet suites' processes: a redis-server of their own on a free loopback port (never the
 * system service), and intuitor workers and producers as child processes, each stopped by its
 * pid. Everything started here is recorded and `stopAll` ends it (the suites call it in afterAll,
 * so a failing test leaves nothing running).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { ROOT } from '../cli/run-cli.js';

const BIN = join(ROOT, 'bin', 'intuitor.js');
const started = new Set<ChildProcess>();

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve(child.exitCode) : new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

export interface RedisServer {
  port: number;
  /** redis://[:password@]127.0.0.1:port */
  url: string;
  stop(): Promise<void>;
  /** Stops it and starts a fresh one (empty: no persistence) on the same port. */
  restart(): Promise<void>;
}

/** Starts `redis-server` in the foreground on a free loopback port, without persistence, optionally with a password. */
export async function startRedis(options: { password?: string } = {}): Promise<RedisServer> {
  const port = await freePort();
  let child: ChildProcess;
  const launch = async () => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...(options.password ? ['--requirepass', options.password] : [])];
    child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    started.add(child);
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server on port ${port} did not start:\n${output}`)), 10_000);
      child.stdout!.on('data', (d: Buffer) => {
        output += d.toString();
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited (${code}):\n${output}`));
      });
    });
  };
  const stop = async () => {
    child.kill('SIGTERM');
    await exited(child);
    started.delete(child);
  };
  await launch();
  return {
    port,
    url: `redis://${options.password ? `:${encodeURIComponent(options.password)}@` : ''}127.0.0.1:${port}`,
    stop,
    restart: async () => {
      await stop();
      await launch();
    },
  };
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
