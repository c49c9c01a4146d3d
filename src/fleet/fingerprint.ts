/**
 * A model folder's fingerprint: the sha256 of every file that decides a score (config.json, the
 * tokenizer's files, the safetensors weights the loader reads: model.safetensors, or the index
 * and its shards), and one digest over them. A producer stamps it on each job; a worker refuses
 * a job whose fingerprint is not its own, so a fleet never mixes scores of two models.
 *
 * Hashing streams each file (a 15 GB checkpoint in constant memory) and the result is cached per
 * file under $XDG_CACHE_HOME/intuitor/fingerprints (default ~/.cache), keyed by the file's real
 * path and checked against its size, modification time and inode, so a restart costs no re-read.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readFileSync, realpathSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { FileFormatError } from '../errors.js';

export interface ModelFingerprint {
  /** sha256 over the files' names and hashes, in name order. */
  digest: string;
  /** Each file's name in the folder and the sha256 of its bytes. */
  files: Record<string, string>;
}

const SINGLE_WEIGHTS = 'model.safetensors';
const WEIGHTS_INDEX = 'model.safetensors.index.json';
/** Files that change how text becomes token ids, when present. */
const OPTIONAL_FILES = ['tokenizer_config.json', 'chat_template.jinja'];

/** The files of `dir` that decide a score, by name. */
function scoringFiles(dir: string): string[] {
  const required = (name: string, what: string) => {
    if (!existsSync(join(dir, name))) throw new FileFormatError(join(dir, name), what, 'no such file');
    return name;
  };
  const files = [required('config.json', "the model's config.json"), required('tokenizer.json', 'a Hugging Face tokenizer.json'), ...OPTIONAL_FILES.filter((f) => existsSync(join(dir, f)))];
  if (existsSync(join(dir, SINGLE_WEIGHTS))) return [...files, SINGLE_WEIGHTS];
  const index = required(WEIGHTS_INDEX, `${SINGLE_WEIGHTS} or ${WEIGHTS_INDEX}`);
  let weightMap: unknown;
  try {
    weightMap = (JSON.parse(readFileSync(join(dir, index), 'utf8')) as { weight_map?: unknown }).weight_map;
  } catch (err) {
    throw new FileFormatError(join(dir, index), 'a JSON safetensors index', (err as Error).message);
  }
  if (typeof weightMap !== 'object' || weightMap === null) throw new FileFormatError(join(dir, index), 'a "weight_map" object', String(weightMap));
  const shards = [...new Set(Object.values(weightMap as Record<string, unknown>).map(String))];
  return [...files, index, ...shards.map((s) => required(s, `the shard ${JSON.stringify(s)} that ${WEIGHTS_INDEX} lists`))];
}

function cacheDir(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'intuitor', 'fingerprints');
}

interface CacheEntry {
  path: string;
  size: number;
  mtimeMs: number;
  ino: number;
  sha256: string;
}

async function fileSha256(path: string): Promise<string> {
  const real = realpathSync(path);
  const { size, mtimeMs, ino } = statSync(real);
  const entryPath = join(cacheDir(), `${createHash('sha256').update(real).digest('hex')}.json`);
  try {
    const cached = JSON.parse(readFileSync(entryPath, 'utf8')) as CacheEntry;
    if (cached.path === real && cached.size === size && cached.mtimeMs === mtimeMs && cached.ino === ino) return cached.sha256;
  } catch {
    // No entry yet, or an unreadable one: hash the file.
  }
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(real, { highWaterMark: 1 << 22 })) hash.update(chunk as Buffer);
  const sha256 = hash.digest('hex');
  try {
    mkdirSync(cacheDir(), { recursive: true });
    const tmp = `${entryPath}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ path: real, size, mtimeMs, ino, sha256 } satisfies CacheEntry));
    renameSync(tmp, entryPath);
  } catch {
    // A read-only home only costs a re-hash next time.
  }
  return sha256;
}

/** The fingerprint of a model folder (cached per file; see the module comment). */
export async function modelFingerprint(dir: string): Promise<ModelFingerprint> {
  const files: Record<string, string> = {};
  for (const name of scoringFiles(dir).sort()) files[name] = await fileSha256(join(dir, name));
  const digest = createHash('sha256').update(Object.entries(files).map(([name, sha]) => `${name} ${sha}\n`).join('')).digest('hex');
  return { digest, files };
}

/** Why two fingerprints differ, for both sides' errors: the files that differ or are in only one. */
export function fingerprintDifference(mine: ModelFingerprint, theirs: ModelFingerprint): string {
  const names = [...new Set([...Object.keys(mine.files), ...Object.keys(theirs.files)])].sort();
  const differing = names.filter((n) => mine.files[n] !== theirs.files[n]);
  return differing.map((n) => (mine.files[n] === undefined ? `${n} only in the job's model` : theirs.files[n] === undefined ? `${n} only in the worker's model` : `${n} differs`)).join(', ');
}
