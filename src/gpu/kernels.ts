/**
 * Loads WGSL from kernels/*.wgsl at run time. A line `//!include NAME.wgsl` is replaced by that
 * file (once per module), so kernels share decode helpers without pasting them into TS strings.
 * With `subgroups`, an include NAME.wgsl that has a sibling NAME.subgroups.wgsl takes that one
 * instead, and the module gains `enable subgroups;`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KERNELS_DIR } from '../paths.js';
import { InvalidArgumentError } from '../errors.js';

const cache = new Map<string, string>();

export interface KernelVariant {
  subgroups: boolean;
}

export function loadKernel(name: string, variant: KernelVariant = { subgroups: false }): string {
  const key = `${name}${variant.subgroups ? '+subgroups' : ''}`;
  const cached = cache.get(key);
  if (cached !== undefined) return cached;
  const included = new Set<string>();
  let usesSubgroups = false;
  const expand = (file: string): string => {
    const path = join(KERNELS_DIR, file);
    if (!existsSync(path)) throw new InvalidArgumentError('kernel', `a file in ${KERNELS_DIR}`, JSON.stringify(file));
    return readFileSync(path, 'utf8').replace(/^\/\/!include (\S+)\s*$/gm, (_line, dep: string) => {
      if (included.has(dep)) return '';
      included.add(dep);
      const special = dep.replace(/\.wgsl$/, '.subgroups.wgsl');
      if (variant.subgroups && existsSync(join(KERNELS_DIR, special))) {
        usesSubgroups = true;
        return expand(special);
      }
      return expand(dep);
    });
  };
  const body = expand(name.endsWith('.wgsl') ? name : `${name}.wgsl`);
  const source = usesSubgroups ? `enable subgroups;\n${body}` : body;
  cache.set(key, source);
  return source;
}
