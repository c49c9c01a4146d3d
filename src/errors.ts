/**
 * Typed errors raised at the TypeScript boundary. Every message names the argument, what was
 * expected and what came, so a user can fix the call without reading the source.
 */

/** Base class: `code` is stable for programs, `message` is for people. */
export class IntuitorError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A caller passed a value of the wrong type, shape, range or dtype. */
export class InvalidArgumentError extends IntuitorError {
  readonly argument: string;
  readonly expected: string;
  readonly received: string;
  constructor(argument: string, expected: string, received: string, options?: { code?: string; cause?: unknown }) {
    super(options?.code ?? 'INVALID_ARGUMENT', `${argument}: expected ${expected}, got ${received}`, options);
    this.argument = argument;
    this.expected = expected;
    this.received = received;
  }

  /** The same error naming the argument as the caller knows it (a CLI flag for a library option). */
  renamed(argument: string): InvalidArgumentError {
    const err = new InvalidArgumentError(argument, this.expected, this.received);
    err.stack = this.stack;
    return err;
  }
}

/** A file is missing, truncated or not in the format its name or flag promises. */
export class FileFormatError extends IntuitorError {
  readonly path: string;
  constructor(path: string, expected: string, received: string) {
    super('FILE_FORMAT', `${path}: expected ${expected}, got ${received}`);
    this.path = path;
  }
}

/** The requested backend cannot run here (no adapter, addon not built, ...). */
export class BackendUnavailableError extends IntuitorError {
  readonly backend: string;
  constructor(backend: string, reason: string) {
    super('BACKEND_UNAVAILABLE', `backend '${backend}' is unavailable: ${reason}`);
    this.backend = backend;
  }
}

/** Dawn reported a validation, out-of-memory or internal error for an op. */
export class GpuError extends IntuitorError {
  readonly op: string;
  readonly kind: 'validation' | 'out-of-memory' | 'internal' | 'device-lost';
  constructor(op: string, kind: GpuError['kind'], detail: string) {
    super(`GPU_${kind.toUpperCase().replace(/-/g, '_')}`, `${op}: GPU ${kind} error: ${detail}`);
    this.op = op;
    this.kind = kind;
  }
}

/** A scoring fleet's failure: a job a worker refused or that failed past its retries, or a queue out of reach. */
export class QueueError extends IntuitorError {
  constructor(message: string) {
    super('QUEUE', message);
  }
}

/** `value` if it is a positive safe integer; else an InvalidArgumentError naming `name`. */
export function positiveInteger(name: string, value: unknown): number {
  if (!Number.isSafeInteger(value) || (value as number) < 1) throw new InvalidArgumentError(name, 'a positive integer', describe(value));
  return value as number;
}

/** Describes a value briefly for an error message. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'number') return Number.isNaN(value) ? 'NaN' : String(value);
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? value.slice(0, 57) + '...' : value);
  if (Array.isArray(value)) return `array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) return `${value.constructor.name} of length ${(value as unknown as ArrayLike<unknown>).length}`;
  if (typeof value === 'object') return (value as object).constructor?.name ?? 'object';
  return typeof value;
}
