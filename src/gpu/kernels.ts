/**
 * Loads WGSL from kernels/*.wgsl at run time. A line `//!include NAME.wgsl` is replaced by that
 * file (once per module), so kernels share decode helpers without pasting them into TS strings.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KERNELS_DIR } from '../paths.js';
import { InvalidArgumentError } from '../errors.js';

const cache = new Map<string, string>();

export function loadKernel(name: string): string {
  const cached = cache.get(name);
  if (cached !== undefined) return cached;
  const included = new Set<string>();
  const expand = (file: string): string => {
    const path = join(KERNELS_DIR, file);
    if (!existsSync(path)) throw new InvalidArgumentError('kernel', `a file in ${KERNELS_DIR}`, JSON.stringify(file));
    return readFileSync(path, 'utf8').replace(/^\/\/!include (\S+)\s*$/gm, (_line, dep: string) => {
      if (included.has(dep)) return '';
      included.add(dep);
      return expand(dep);
    });
  };
  const source = expand(name.endsWith('.wgsl') ? name : `${name}.wgsl`);
  cache.set(name, source);
  return source;
}
