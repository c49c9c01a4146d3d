/**
 * Failures that are not the project's typed errors still end as one line: a system error on a
 * path (here: `logits --out` naming an existing file) is bad input, exit 2; anything else is an
 * internal error, exit 1, its stack only with INTUITOR_DEBUG=1.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeFailure } from '../../src/cli/index.js';
import { FileFormatError, GpuError, InvalidArgumentError } from '../../src/errors.js';
import { writeNpy } from '../../src/io/npy.js';
import { FIXTURES, describeGpu } from '../helpers.js';
import { cli } from './run-cli.js';

const model = join(FIXTURES, 'tiny-qwen2');

/** The error a real failing call throws (not a hand-made imitation). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

describe('describeFailure', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'intuitor-errors-'));
    writeFileSync(join(dir, 'file'), 'x');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('typed errors keep their message: bad input exits 2, a GPU failure 1', () => {
    expect(describeFailure(new InvalidArgumentError('--n', 'a positive integer', '"0"'))).toEqual({ message: '--n: expected a positive integer, got "0"', exitCode: 2 });
    expect(describeFailure(new FileFormatError('a.npy', 'NPY', 'garbage')).exitCode).toBe(2);
    expect(describeFailure(new GpuError('linear', 'out-of-memory', 'too big'))).toEqual({ message: 'linear: GPU out-of-memory error: too big', exitCode: 1 });
  });

  test.each([
    // code, the failing call, the words the line must carry
    ['EEXIST', (d: string) => mkdirSync(join(d, 'file')), /\/file: cannot create the folder: file already exists \(EEXIST\)$/],
    ['ENOTDIR', (d: string) => mkdirSync(join(d, 'file', 'sub'), { recursive: true }), /\/file\/sub: cannot create the folder: not a directory \(ENOTDIR\)$/],
    ['EISDIR', (d: string) => writeFileSync(d, 'x'), /-\w+: cannot open: illegal operation on a directory \(EISDIR\)$/],
    ['ENOENT', (d: string) => readFileSync(join(d, 'missing')), /\/missing: cannot open: no such file or directory \(ENOENT\)$/],
  ])('a system error on a path (%s) is one line naming the path, exit 2', (code, call, words) => {
    const err = thrown(() => call(dir));
    expect((err as { code?: string }).code).toBe(code);
    const failure = describeFailure(err);
    expect(failure.exitCode).toBe(2);
    expect(failure.message).toMatch(words);
    expect(failure.message).not.toMatch(/\n|    at /);
    expect(failure.stack).toBeUndefined();
  });

  test('anything else is an internal error, exit 1, the stack only when debugging', () => {
    const err = new TypeError('Cannot read properties of undefined');
    expect(describeFailure(err)).toEqual({ message: 'internal error: Cannot read properties of undefined (set INTUITOR_DEBUG=1 for the stack)', exitCode: 1 });
    expect(describeFailure(err, true)).toEqual({ message: 'internal error: Cannot read properties of undefined', exitCode: 1, stack: err.stack });
    expect(describeFailure('a thrown string')).toEqual({ message: 'internal error: a thrown string (set INTUITOR_DEBUG=1 for the stack)', exitCode: 1 });
    // A system error without a path (a socket, a child process) is not bad input.
    expect(describeFailure(Object.assign(new Error('write EPIPE'), { code: 'EPIPE', errno: -32, syscall: 'write' })).exitCode).toBe(1);
  });
});

describeGpu('intuitor logits --out naming an existing file', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'intuitor-errors-cli-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('exits 2 with one line naming the path, no stack, and leaves the file alone', async () => {
    const ids = join(dir, 'ids.npy');
    await writeNpy(ids, { dtype: 'i32', shape: [1, 3], data: new Int32Array([5, 6, 7]) });
    const out = join(dir, 'taken');
    writeFileSync(out, 'keep me');
    const r = await cli(['logits', '--model', model, '--ids', ids, '--out', out], undefined, undefined, { INTUITOR_DEBUG: '' });
    expect(r.status).toBe(2);
    expect(r.messages).toEqual([`intuitor: error: ${out}: cannot create the folder: file already exists (EEXIST)`]);
    expect(r.stdout).toBe('');
    expect(readFileSync(out, 'utf8')).toBe('keep me');
    expect(readdirSync(dir).sort()).toEqual(['ids.npy', 'taken']);
  });
});
