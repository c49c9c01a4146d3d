/**
 * Which folders `POST /reload` may load: only folders under --models-root. A request names a
 * folder relative to the root (or absolute, inside it). Refused (403): a `..` segment anywhere, a
 * path outside the root, and one that leads outside through a symbolic link (the real path, after
 * every link, must be under the real root). A path under the root that does not exist is 404.
 */
import { realpath, stat } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { IntuitorError } from '../errors.js';

/** A reload path refused (403) or not found under the root (404). */
export class ModelPathError extends IntuitorError {
  readonly status: 403 | 404;
  constructor(status: 403 | 404, requested: string, reason: string) {
    super(status === 403 ? 'PATH_FORBIDDEN' : 'PATH_NOT_FOUND', `model ${JSON.stringify(requested)}: ${reason}`);
    this.status = status;
  }
}

/** Whether `path` is `root` or below it (both absolute and normalised). */
function within(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/** The real path of the model folder `requested` names under `root`; ModelPathError otherwise. */
export async function resolveModelFolder(root: string, requested: string): Promise<string> {
  const forbidden = (reason: string) => new ModelPathError(403, requested, reason);
  if (requested.includes('\0')) throw forbidden('a path with a NUL byte');
  if (requested.split(/[\\/]/).includes('..')) throw forbidden('".." is not allowed; name a folder under the models root');
  const lexicalRoot = resolve(root);
  const lexical = resolve(lexicalRoot, requested);
  if (!within(lexicalRoot, lexical)) throw forbidden('outside the models root');
  const realRoot = await realpath(lexicalRoot);
  let real: string;
  try {
    real = await realpath(lexical);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ModelPathError(404, requested, 'no such folder under the models root');
    throw err;
  }
  if (!within(realRoot, real)) throw forbidden('leads outside the models root (through a symbolic link)');
  if (!(await stat(real)).isDirectory()) throw new ModelPathError(404, requested, 'not a folder');
  return real;
}
