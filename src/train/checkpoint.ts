/**
 * Training checkpoints that survive a kill at any moment. A checkpoint is a folder
 * `<out>/checkpoint-<step>/` in the Hugging Face layout, so transformers (and loadWeights) can load
 * it as a model:
 *
 *   model.safetensors      the f32 weights under their Hugging Face names (metadata format "pt");
 *                          with tied embeddings lm_head.weight is left out, as transformers does
 *   config.json            the source model's, with torch_dtype (and dtype, where present) "float32"
 *   tokenizer files        copied from the source model folder where present (TOKENIZER_FILES)
 *   optimizer.safetensors  AdamW's moments: `<name>.exp_avg`, `<name>.exp_avg_sq` (f32, the parameter's shape)
 *   trainer_state.json     { format, version, step, trainer: the trainer's JSON (RNG state, data position, ...) }
 *
 * Atomicity: everything is written into `<out>/.checkpoint-<step>.tmp-<pid>-<random>/`, each file
 * flushed to disk, the folder flushed, then renamed to `checkpoint-<step>` (and the parent folder
 * flushed), and only then `<out>/latest.json` ({"step", "path"}) is replaced atomically. A reader
 * thus finds either the previous checkpoint or the new one, whole. Hidden `.checkpoint-*`
 * leftovers of an interrupted save are ignored by readers and removed by the next save. Old
 * checkpoints beyond `keep` are removed last, renamed to a hidden name first so that a kill
 * mid-removal leaves no half-deleted `checkpoint-<step>`.
 *
 * One save at a time per output folder: a save removes every leftover it finds.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join, resolve } from 'node:path';
import { FileFormatError, IntuitorError, InvalidArgumentError, describe } from '../errors.js';
import { openSafetensors, writeSafetensors } from '../io/safetensors.js';
import { checkHostTensor, fileAccessError, numel, writeFileAtomic, type HostTensor } from '../io/tensor.js';
import type { AdamWState } from '../optim/adamw.js';

/** Files copied from the source model folder when present. */
export const TOKENIZER_FILES = [
  'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json', 'generation_config.json',
  'vocab.json', 'merges.txt', 'tokenizer.model', 'chat_template.jinja',
] as const;

export const CHECKPOINT_FORMAT = 'intuitor-checkpoint';
export const CHECKPOINT_VERSION = 1;

const MODEL_FILE = 'model.safetensors';
const OPTIMIZER_FILE = 'optimizer.safetensors';
const CONFIG_FILE = 'config.json';
const STATE_FILE = 'trainer_state.json';
const LATEST_FILE = 'latest.json';
const LM_HEAD = 'lm_head.weight';
const EXP_AVG = '.exp_avg';
const EXP_AVG_SQ = '.exp_avg_sq';
const CHECKPOINT_NAME = /^checkpoint-(\d+)$/;
/** Leftovers of an interrupted save or prune, and of latest.json's atomic write. */
const LEFTOVER_NAME = /^(\.checkpoint-\d+\.(tmp|old)-|latest\.json\.tmp-)/;

export interface CheckpointContent {
  /** The number of optimiser updates taken; names the folder. */
  step: number;
  /** The Hugging Face model folder whose config.json and tokenizer files are copied. */
  sourceModelDir: string;
  /** f32 weights under Hugging Face names (lm_head.weight is skipped when tied). */
  tensors: Record<string, HostTensor>;
  /** AdamW's moments per parameter name (AdamW.state()), or null for none. */
  optimizer: AdamWState | null;
  /** The trainer's own JSON: RNG state, data position, ... Returned as is by loadCheckpoint. */
  trainerState: Record<string, unknown>;
}

export interface SaveCheckpointOptions {
  /** How many checkpoint folders to keep, the new one included: a positive integer or Infinity. Default 2. */
  keep?: number;
  /** Whether the embeddings are tied (lm_head.weight not written). Default: the config's tie_word_embeddings. */
  tied?: boolean;
}

export interface LoadedCheckpoint {
  step: number;
  tensors: Record<string, HostTensor>;
  optimizer: AdamWState | null;
  trainerState: Record<string, unknown>;
}

const savesInProgress = new Set<string>();

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !ArrayBuffer.isView(value);
}

/** fsync of a folder, so that the names created or renamed in it are on disk (not possible on Windows). */
async function syncFolder(path: string): Promise<void> {
  if (process.platform === 'win32') return;
  const handle = await fsp.open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function listNames(folder: string): Promise<string[]> {
  try {
    return await fsp.readdir(folder);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/** A fresh hidden name in `folder` for something that is about to be written or removed. */
function hiddenName(step: number, kind: 'tmp' | 'old'): string {
  return `.checkpoint-${step}.${kind}-${process.pid}-${randomBytes(6).toString('hex')}`;
}

async function readConfig(sourceModelDir: string): Promise<Record<string, unknown>> {
  const path = join(sourceModelDir, CONFIG_FILE);
  let text: string;
  try {
    text = await fsp.readFile(path, 'utf8');
  } catch (error) {
    throw fileAccessError(path, 'the config.json of the source model (sourceModelDir)', error);
  }
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (error) {
    throw new FileFormatError(path, 'JSON', (error as Error).message);
  }
  if (!isPlainObject(config)) throw new FileFormatError(path, 'a JSON object', describe(config));
  return config;
}

/** The tensors of optimizer.safetensors: each moment in its parameter's shape (or flat when the parameter is not saved). */
function optimizerTensors(optimizer: AdamWState, tensors: Record<string, HostTensor>): Record<string, HostTensor> {
  if (!isPlainObject(optimizer)) throw new InvalidArgumentError('optimizer', 'null or an object mapping parameter names to { m, v }', describe(optimizer));
  const out: Record<string, HostTensor> = {};
  for (const [name, moments] of Object.entries(optimizer)) {
    const at = `optimizer[${JSON.stringify(name)}]`;
    if (!isPlainObject(moments)) throw new InvalidArgumentError(at, 'an object { m, v }', describe(moments));
    const param = tensors[name];
    for (const [key, suffix] of [['m', EXP_AVG], ['v', EXP_AVG_SQ]] as const) {
      const data = moments[key];
      const expected = param ? numel(param.shape) : data?.length;
      if (!(data instanceof Float32Array) || data.length !== expected) {
        throw new InvalidArgumentError(`${at}.${key}`, `a Float32Array${param ? ` of ${expected} elements (the parameter's)` : ''}`, describe(data));
      }
      out[name + suffix] = { dtype: 'f32', shape: param ? [...param.shape] : [data.length], data };
    }
  }
  return out;
}

function checkContent(content: CheckpointContent, tied: boolean): { modelTensors: Record<string, HostTensor>; stateJson: string } {
  if (!isPlainObject(content)) throw new InvalidArgumentError('content', 'an object { step, sourceModelDir, tensors, optimizer, trainerState }', describe(content));
  const { step, tensors, trainerState } = content;
  if (!Number.isSafeInteger(step) || step < 0) throw new InvalidArgumentError('step', 'a non-negative integer', describe(step));
  if (!isPlainObject(tensors)) throw new InvalidArgumentError('tensors', 'an object mapping names to f32 HostTensors', describe(tensors));
  const modelTensors: Record<string, HostTensor> = {};
  for (const [name, tensor] of Object.entries(tensors)) {
    const at = `tensors[${JSON.stringify(name)}]`;
    checkHostTensor(at, tensor);
    if (tensor.dtype !== 'f32') throw new InvalidArgumentError(`${at}.dtype`, "'f32' (checkpoints hold the f32 master weights)", describe(tensor.dtype));
    if (!(tied && name === LM_HEAD)) modelTensors[name] = tensor;
  }
  if (!isPlainObject(trainerState)) throw new InvalidArgumentError('trainerState', 'a JSON object', describe(trainerState));
  let stateJson: string;
  try {
    stateJson = JSON.stringify({ format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION, step, trainer: trainerState }, null, 2);
  } catch (error) {
    throw new InvalidArgumentError('trainerState', 'a JSON-serialisable object', (error as Error).message);
  }
  return { modelTensors, stateJson };
}

function checkKeep(keep: unknown): number {
  if (keep === Infinity || (Number.isSafeInteger(keep) && (keep as number) >= 1)) return keep as number;
  throw new InvalidArgumentError('keep', 'a positive integer or Infinity', describe(keep));
}

/** Removes the hidden leftovers of interrupted saves and prunes. */
async function removeLeftovers(outDir: string): Promise<void> {
  for (const name of await listNames(outDir)) {
    if (LEFTOVER_NAME.test(name)) await fsp.rm(join(outDir, name), { recursive: true, force: true });
  }
}

/** Removes checkpoint folders beyond `keep`: the one just saved stays, then the highest steps. */
async function prune(outDir: string, keep: number, savedStep: number): Promise<void> {
  const steps = (await listNames(outDir)).map((name) => CHECKPOINT_NAME.exec(name)).filter((m) => m !== null).map((m) => Number(m[1]))
    .filter((step) => step !== savedStep).sort((a, b) => b - a);
  for (const step of steps.slice(keep - 1)) {
    const hidden = join(outDir, hiddenName(step, 'old'));
    await fsp.rename(join(outDir, `checkpoint-${step}`), hidden);
    await fsp.rm(hidden, { recursive: true, force: true });
  }
}

/**
 * Writes a checkpoint atomically (see the module comment) and returns its folder,
 * `<outDir>/checkpoint-<step>`. A folder of the same step is replaced.
 */
export async function saveCheckpoint(outDir: string, content: CheckpointContent, options: SaveCheckpointOptions = {}): Promise<string> {
  if (typeof outDir !== 'string' || outDir === '') throw new InvalidArgumentError('outDir', 'a folder path', describe(outDir));
  if (!isPlainObject(options)) throw new InvalidArgumentError('options', 'an object { keep?, tied? }', describe(options));
  const keep = checkKeep(options.keep ?? 2);
  if (!isPlainObject(content)) throw new InvalidArgumentError('content', 'an object { step, sourceModelDir, tensors, optimizer, trainerState }', describe(content));
  if (typeof content.sourceModelDir !== 'string' || content.sourceModelDir === '') throw new InvalidArgumentError('sourceModelDir', 'a folder path', describe(content.sourceModelDir));
  // The folder is claimed before the first await, so of two saves started together the first wins.
  const folder = resolve(outDir);
  if (savesInProgress.has(folder)) throw new IntuitorError('SAVE_IN_PROGRESS', `${folder}: another checkpoint is being saved there; await it first`);
  savesInProgress.add(folder);
  try {
    const config = await readConfig(content.sourceModelDir);
    const configTied = config.tie_word_embeddings === true;
    if (options.tied !== undefined && options.tied !== configTied) {
      throw new InvalidArgumentError('tied', `${configTied} or nothing (the source config.json's tie_word_embeddings is ${configTied})`, String(options.tied));
    }
    const { modelTensors, stateJson } = checkContent(content, configTied);
    const optimizer = content.optimizer === null ? null : optimizerTensors(content.optimizer, content.tensors);
    config.torch_dtype = 'float32';
    if ('dtype' in config) config.dtype = 'float32';

    await fsp.mkdir(folder, { recursive: true });
    await removeLeftovers(folder);
    const name = `checkpoint-${content.step}`;
    const temporary = join(folder, hiddenName(content.step, 'tmp'));
    const final = join(folder, name);
    await fsp.mkdir(temporary);
    try {
      await writeSafetensors(join(temporary, MODEL_FILE), modelTensors, { format: 'pt' });
      if (optimizer) await writeSafetensors(join(temporary, OPTIMIZER_FILE), optimizer, { format: 'pt' });
      await writeFileAtomic(join(temporary, CONFIG_FILE), [Buffer.from(`${JSON.stringify(config, null, 2)}\n`)]);
      for (const file of TOKENIZER_FILES) {
        let bytes: Buffer;
        try {
          bytes = await fsp.readFile(join(content.sourceModelDir, file));
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
          throw error;
        }
        await writeFileAtomic(join(temporary, file), [bytes]);
      }
      await writeFileAtomic(join(temporary, STATE_FILE), [Buffer.from(`${stateJson}\n`)]);
      await syncFolder(temporary);
      // rename() cannot replace a non-empty folder: move an older save of this step aside first.
      const replaced = join(folder, hiddenName(content.step, 'old'));
      const hadOld = await fsp.rename(final, replaced).then(() => true, (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return false;
        throw error;
      });
      await fsp.rename(temporary, final);
      await syncFolder(folder);
      if (hadOld) await fsp.rm(replaced, { recursive: true, force: true });
    } catch (error) {
      await fsp.rm(temporary, { recursive: true, force: true });
      throw error;
    }
    await writeFileAtomic(join(folder, LATEST_FILE), [Buffer.from(`${JSON.stringify({ step: content.step, path: name })}\n`)]);
    await syncFolder(folder);
    await prune(folder, keep, content.step);
    return final;
  } finally {
    savesInProgress.delete(folder);
  }
}

async function isComplete(folder: string): Promise<boolean> {
  for (const file of [MODEL_FILE, CONFIG_FILE, STATE_FILE]) {
    const stats = await fsp.stat(join(folder, file)).catch(() => null);
    if (!stats?.isFile()) return false;
  }
  return true;
}

/**
 * The folder of the newest checkpoint in outDir: the one latest.json names, or (when latest.json
 * is missing or names no complete folder) the complete `checkpoint-<N>` of the highest N; null
 * when there is none. Hidden leftovers are never returned.
 */
export async function latestCheckpoint(outDir: string): Promise<string | null> {
  if (typeof outDir !== 'string' || outDir === '') throw new InvalidArgumentError('outDir', 'a folder path', describe(outDir));
  const folder = resolve(outDir);
  const latest = await fsp.readFile(join(folder, LATEST_FILE), 'utf8').then((text) => JSON.parse(text) as unknown, () => null);
  if (isPlainObject(latest) && typeof latest.path === 'string' && CHECKPOINT_NAME.test(latest.path) && (await isComplete(join(folder, latest.path)))) {
    return join(folder, latest.path);
  }
  const steps = (await listNames(folder)).map((name) => CHECKPOINT_NAME.exec(name)).filter((m) => m !== null).map((m) => Number(m[1])).sort((a, b) => b - a);
  for (const step of steps) {
    const candidate = join(folder, `checkpoint-${step}`);
    if (await isComplete(candidate)) return candidate;
  }
  return null;
}

async function readState(dir: string): Promise<{ step: number; trainerState: Record<string, unknown> }> {
  const path = join(dir, STATE_FILE);
  const expected = `a ${CHECKPOINT_FORMAT} version ${CHECKPOINT_VERSION} trainer state { format, version, step, trainer }`;
  let state: unknown;
  try {
    state = JSON.parse(await fsp.readFile(path, 'utf8'));
  } catch (error) {
    if (error instanceof SyntaxError) throw new FileFormatError(path, expected, error.message);
    throw fileAccessError(path, `${expected} (is ${dir} a checkpoint folder?)`, error);
  }
  if (!isPlainObject(state) || state.format !== CHECKPOINT_FORMAT) throw new FileFormatError(path, expected, describe(state));
  if (state.version !== CHECKPOINT_VERSION) throw new FileFormatError(path, expected, `version ${describe(state.version)}`);
  if (!Number.isSafeInteger(state.step) || (state.step as number) < 0) throw new FileFormatError(path, 'a non-negative integer "step"', describe(state.step));
  if (!isPlainObject(state.trainer)) throw new FileFormatError(path, 'an object "trainer"', describe(state.trainer));
  return { step: state.step as number, trainerState: state.trainer };
}

async function readAllTensors(path: string): Promise<Record<string, HostTensor>> {
  const file = await openSafetensors(path);
  try {
    const tensors: Record<string, HostTensor> = {};
    for (const name of file.entries.keys()) tensors[name] = file.tensor(name);
    return tensors;
  } finally {
    file.close();
  }
}

async function readOptimizer(path: string): Promise<AdamWState | null> {
  const exists = await fsp.stat(path).then(() => true, () => false);
  if (!exists) return null;
  const tensors = await readAllTensors(path);
  const state: AdamWState = {};
  for (const name of Object.keys(tensors)) {
    const suffix = name.endsWith(EXP_AVG_SQ) ? EXP_AVG_SQ : name.endsWith(EXP_AVG) ? EXP_AVG : null;
    if (suffix === null) throw new FileFormatError(path, `tensor names ending in ${EXP_AVG} or ${EXP_AVG_SQ}`, JSON.stringify(name));
    const param = name.slice(0, -suffix.length);
    const m = tensors[param + EXP_AVG];
    const v = tensors[param + EXP_AVG_SQ];
    if (!m || !v) throw new FileFormatError(path, `both ${JSON.stringify(param + EXP_AVG)} and ${JSON.stringify(param + EXP_AVG_SQ)}`, `only ${JSON.stringify(name)}`);
    if (m.dtype !== 'f32' || v.dtype !== 'f32' || m.data.length !== v.data.length) {
      throw new FileFormatError(path, `F32 moments of equal size for ${JSON.stringify(param)}`, `${m.dtype} of ${m.data.length} and ${v.dtype} of ${v.data.length} elements`);
    }
    state[param] = { m: m.data as Float32Array, v: v.data as Float32Array };
  }
  return state;
}

/** Reads a checkpoint folder written by saveCheckpoint (e.g. latestCheckpoint's answer). */
export async function loadCheckpoint(dir: string): Promise<LoadedCheckpoint> {
  if (typeof dir !== 'string' || dir === '') throw new InvalidArgumentError('dir', 'a checkpoint folder path', describe(dir));
  const { step, trainerState } = await readState(dir);
  const tensors = await readAllTensors(join(dir, MODEL_FILE));
  const optimizer = await readOptimizer(join(dir, OPTIMIZER_FILE));
  return { step, tensors, optimizer, trainerState };
}
