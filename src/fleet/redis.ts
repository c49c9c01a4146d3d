/**
 * The fleet's Redis connection: `redis://[user:password@]host[:port][/db]` or `rediss://` (TLS),
 * turned into ioredis options that BullMQ uses for each of its connections. Credentials never
 * leave this module in a printable form: every URL shown is redacted, and every Redis error is
 * passed through `redact` before it reaches a log or an exception.
 */
import { isIP } from 'node:net';
import { InvalidArgumentError } from '../errors.js';

/** What BullMQ gets: ioredis options (it makes its own connections from them). */
export interface RedisConnection {
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
  tls?: { servername?: string };
  /** BullMQ workers block on Redis; commands wait through a reconnect instead of failing. */
  maxRetriesPerRequest: null;
  retryStrategy: (attempt: number) => number;
  /** Printable form of the URL, the password replaced by "***". */
  display: string;
}

/** Reconnect after 0.1 s, 0.2 s, ... up to 2 s between tries, for ever: a restarted Redis is picked up within 2 s. */
const retryDelay = (attempt: number): number => Math.min(100 * attempt, 2000);

/** Every URL in the text with its password (and any user info beyond the name) replaced by "***". */
export function redactUrl(url: string): string {
  return url.replace(/([a-z][a-z0-9+.-]*:\/\/)([^@/?#\s]*)@/gi, (_, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    return `${scheme}${colon < 0 ? '***' : `${userinfo.slice(0, colon)}:***`}@`;
  });
}

/** Parses a --queue URL; errors name `flag` and show the URL redacted. */
export function parseRedisUrl(url: string, flag = '--queue'): RedisConnection {
  const shown = redactUrl(url);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Not shown: where a password sits in a malformed URL is anyone's guess.
    throw new InvalidArgumentError(flag, 'a Redis URL, redis://[user:password@]host[:port][/db] or rediss://... for TLS', `a string that is not a URL (${url.length} characters, not shown)`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new InvalidArgumentError(flag, 'a URL starting redis:// or rediss:// (TLS)', JSON.stringify(shown));
  }
  if (parsed.hostname === '') throw new InvalidArgumentError(flag, 'a Redis URL with a host', JSON.stringify(shown));
  const dbText = parsed.pathname.replace(/^\//, '');
  if (!/^\d*$/.test(dbText)) throw new InvalidArgumentError(flag, 'a database number after the host (redis://host:port/0)', JSON.stringify(shown));
  if (parsed.search !== '' || parsed.hash !== '') throw new InvalidArgumentError(flag, 'a Redis URL without query or fragment', JSON.stringify(shown));
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  const username = decodeURIComponent(parsed.username);
  const password = decodeURIComponent(parsed.password);
  return {
    host,
    port: parsed.port === '' ? 6379 : Number(parsed.port),
    db: dbText === '' ? 0 : Number(dbText),
    ...(username !== '' && { username }),
    ...(password !== '' && { password }),
    // SNI names a host, never an address (RFC 6066; Node warns about it).
    ...(parsed.protocol === 'rediss:' && { tls: isIP(host) === 0 ? { servername: host } : {} }),
    maxRetriesPerRequest: null,
    retryStrategy: retryDelay,
    display: shown,
  };
}

/** The ioredis options of a connection (without the printable URL). */
export function ioredisOptions(connection: RedisConnection): Omit<RedisConnection, 'display'> {
  const { display: _shown, ...options } = connection;
  return options;
}

/** `text` with the connection's password (raw and URL-encoded) replaced by "***". */
export function redact(text: string, connection: RedisConnection): string {
  let out = redactUrl(text);
  const password = connection.password;
  if (password !== undefined && password !== '') {
    for (const form of new Set([password, encodeURIComponent(password)])) out = out.split(form).join('***');
  }
  return out;
}

/**
 * An error listener for BullMQ and ioredis objects: each distinct (redacted) message at most once
 * a minute, so a Redis restart is a line or two, not one per reconnect attempt.
 */
export function reportErrorsOnce(log: (line: string) => void, connection: RedisConnection, who: string): (err: Error) => void {
  const said = new Map<string, number>();
  return (err) => {
    const message = redact(err.message, connection);
    const now = Date.now();
    if ((said.get(message) ?? 0) > now - 60_000) return;
    said.set(message, now);
    log(`${who}: redis ${connection.display}: ${message} (retrying)`);
  };
}
