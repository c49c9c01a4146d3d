/**
 * Loads a Qwen2 / Llama checkpoint in the Hugging Face layout onto the GPU: `model.safetensors`,
 * or the shards that `model.safetensors.index.json` lists.
 *
 * - Every file's header is read and checked first: each parameter the architecture needs must be
 *   present with the shape the config implies, nothing it does not use may be there (an attention
 *   bias on a Llama without `attention_bias`, an o_proj bias on a Qwen2, a layer past
 *   `num_hidden_layers`, ...), and every dtype must be F32, BF16 or F16. Only then is anything
 *   uploaded, so a bad checkpoint costs no GPU memory.
 * - Attention biases follow transformers: Qwen2 always has q/k/v biases and never an o_proj one;
 *   a Llama with `attention_bias` has all four (LlamaAttention builds q/k/v/o_proj with
 *   `bias=config.attention_bias`), a Llama without it none.
 * - Tensors are then read one at a time (never a whole file) and uploaded to one buffer each,
 *   labelled with the Hugging Face name; one larger than a storage binding (maxWindowBytes) goes
 *   into row windows, a buffer each, labelled name[first:end]. 16-bit weights stay 16-bit on the
 *   GPU (raw bit patterns, two per 32-bit word) unless `dtype: 'f32'` asks for them to be decoded
 *   on the host.
 * - With tied embeddings `lmHead` is `embed` (the same buffer). A tied checkpoint may still carry
 *   `lm_head.weight`; it must then equal the embedding, and it is not uploaded a second time.
 * - `rotary_emb.inv_freq` buffers, which some older Llama checkpoints carry, are skipped: RoPE is
 *   computed from the config (see ropeInverseFrequencies).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { f16BitsToFloat } from '../dtype.js';
import { FileFormatError, GpuError, InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { openSafetensors, type SafetensorsFile } from '../io/safetensors.js';
import { bytesOf, type HostTensor } from '../io/tensor.js';
import { rowsPerWindow, type RowWindow } from '../ops/split.js';
import type { ModelConfig } from './config.js';

export type WeightDType = 'f32' | 'bf16' | 'f16';

export interface GpuTensor {
  /** The Hugging Face parameter name (also the buffers' label). */
  name: string;
  dtype: WeightDType;
  shape: number[];
  /**
   * Where the rows live (src/ops/split.ts): one window holding the whole tensor when it fits one
   * storage binding, else consecutive windows of whole rows, each within one. Buffers are
   * STORAGE | COPY_SRC | COPY_DST, padded to a multiple of 16 bytes.
   */
  windows: RowWindow[];
  /** The buffer of a tensor in one window; for a split tensor it throws, naming the tensor and the limit (an op that would read it whole). */
  readonly buffer: GPUBuffer;
  /** Bytes of the elements: numel × 4 for f32, numel × 2 for bf16/f16 (buffers may be padded). */
  bytes: number;
}

export interface LayerWeights {
  inputNorm: GpuTensor;
  q: GpuTensor;
  k: GpuTensor;
  v: GpuTensor;
  qBias: GpuTensor | null;
  kBias: GpuTensor | null;
  vBias: GpuTensor | null;
  o: GpuTensor;
  /** Only on a Llama with `attention_bias` (see hasOutputProjectionBias). */
  oBias: GpuTensor | null;
  postNorm: GpuTensor;
  gate: GpuTensor;
  up: GpuTensor;
  down: GpuTensor;
}

export interface ModelWeights {
  embed: GpuTensor;
  layers: LayerWeights[];
  finalNorm: GpuTensor;
  /** The output projection; the very same object as `embed` when the embeddings are tied. */
  lmHead: GpuTensor;
  tied: boolean;
  /** GPU bytes the weight buffers take (their padded sizes, each buffer once). */
  bytes: number;
  /** Destroys every buffer (once; later calls do nothing). */
  destroy(): void;
}

export interface LoadWeightsOptions {
  /** 'as-stored' (default) keeps F32/BF16/F16 as they are; 'f32' decodes 16-bit weights to f32 on load. */
  dtype?: 'as-stored' | 'f32';
  /**
   * Tensors larger than this many bytes go into row windows of at most this size. Default, and
   * most: the context's maxBindingBytes (within the device's maxBufferSize). Tests force small
   * windows with it.
   */
  maxWindowBytes?: number;
}

const SINGLE_FILE = 'model.safetensors';
const INDEX_FILE = 'model.safetensors.index.json';
const EMBED = 'model.embed_tokens.weight';
const FINAL_NORM = 'model.norm.weight';
const LM_HEAD = 'lm_head.weight';
/** Non-parameter buffers some checkpoints carry and the loader ignores. */
const IGNORED = /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/;
/** How many names an error lists before it says how many there are in all. */
const LISTED = 10;
/** Let the queue drain its staging copies after this many bytes, so host memory stays bounded. */
const DRAIN_BYTES = 256 * 1024 * 1024;

const WEIGHT_DTYPES: ReadonlySet<string> = new Set<WeightDType>(['f32', 'bf16', 'f16']);

const layerPrefix = (i: number) => `model.layers.${i}`;

/** Whether o_proj carries a bias: Llama's follows `attention_bias` like q/k/v; Qwen2's o_proj never has one. */
export function hasOutputProjectionBias(config: Pick<ModelConfig, 'architecture' | 'attentionBias'>): boolean {
  return config.architecture === 'llama' && config.attentionBias;
}

/** The parameters a config implies, in load order: Hugging Face name → shape. */
export function expectedParameters(config: ModelConfig): Map<string, number[]> {
  const { hiddenSize: h, intermediateSize: inter, vocabSize: vocab, numHeads, numKeyValueHeads, headDim } = config;
  const qDim = numHeads * headDim;
  const kvDim = numKeyValueHeads * headDim;
  const params = new Map<string, number[]>();
  params.set(EMBED, [vocab, h]);
  for (let i = 0; i < config.numLayers; i++) {
    const p = layerPrefix(i);
    params.set(`${p}.input_layernorm.weight`, [h]);
    params.set(`${p}.self_attn.q_proj.weight`, [qDim, h]);
    params.set(`${p}.self_attn.k_proj.weight`, [kvDim, h]);
    params.set(`${p}.self_attn.v_proj.weight`, [kvDim, h]);
    if (config.attentionBias) {
      params.set(`${p}.self_attn.q_proj.bias`, [qDim]);
      params.set(`${p}.self_attn.k_proj.bias`, [kvDim]);
      params.set(`${p}.self_attn.v_proj.bias`, [kvDim]);
    }
    params.set(`${p}.self_attn.o_proj.weight`, [h, qDim]);
    if (hasOutputProjectionBias(config)) params.set(`${p}.self_attn.o_proj.bias`, [h]);
    params.set(`${p}.post_attention_layernorm.weight`, [h]);
    params.set(`${p}.mlp.gate_proj.weight`, [inter, h]);
    params.set(`${p}.mlp.up_proj.weight`, [inter, h]);
    params.set(`${p}.mlp.down_proj.weight`, [h, inter]);
  }
  params.set(FINAL_NORM, [h]);
  if (!config.tieWordEmbeddings) params.set(LM_HEAD, [vocab, h]);
  return params;
}

/** Where the checkpoint's tensors are: which file holds each name, and which file to blame for the set. */
interface Checkpoint {
  /** The file named by errors about the set of parameters (the single file, or the index). */
  source: string;
  /** name → shard path. */
  locations: Map<string, string>;
  files: Map<string, SafetensorsFile>;
}

/**
 * Loads the weights of the checkpoint in `dir` (a model folder; a `.safetensors` file or a
 * `.safetensors.index.json` may be named directly) for `config`.
 */
export async function loadWeights(ctx: GpuContext, dir: string, config: ModelConfig, options: LoadWeightsOptions = {}): Promise<ModelWeights> {
  if (typeof dir !== 'string' || dir.length === 0) throw new InvalidArgumentError('dir', 'a model folder path', describe(dir));
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError('options', 'an object', describe(options));
  const mode = options.dtype ?? 'as-stored';
  if (mode !== 'as-stored' && mode !== 'f32') throw new InvalidArgumentError('options.dtype', "'as-stored' or 'f32'", describe(options.dtype));
  const windowLimit = Math.min(ctx.maxBindingBytes, ctx.device.limits.maxBufferSize);
  const maxWindowBytes = options.maxWindowBytes ?? windowLimit;
  if (!Number.isSafeInteger(maxWindowBytes) || maxWindowBytes < 16 || maxWindowBytes > windowLimit) {
    throw new InvalidArgumentError('options.maxWindowBytes', `an integer in [16, ${windowLimit}] (the context's maxBindingBytes, within maxBufferSize)`, describe(options.maxWindowBytes));
  }

  const checkpoint = await openCheckpoint(dir);
  try {
    const expected = expectedParameters(config);
    checkParameterSet(checkpoint, expected, config);
    const tiedCopy = config.tieWordEmbeddings && checkpoint.locations.has(LM_HEAD);
    if (tiedCopy) expected.set(LM_HEAD, [config.vocabSize, config.hiddenSize]);
    for (const [name, shape] of expected) checkEntry(checkpoint, name, shape);
    if (tiedCopy) {
      checkTiedCopy(checkpoint);
      expected.delete(LM_HEAD);
    }
    return await upload(ctx, checkpoint, expected, config, mode, maxWindowBytes);
  } finally {
    for (const file of checkpoint.files.values()) file.close();
  }
}

async function openCheckpoint(dir: string): Promise<Checkpoint> {
  let stats;
  try {
    stats = statSync(dir);
  } catch {
    throw new FileFormatError(dir, `a model folder holding ${SINGLE_FILE} or ${INDEX_FILE}`, 'nothing: no such file or folder');
  }
  let single: string | null = null;
  let index: string | null = null;
  if (stats.isDirectory()) {
    if (existsSync(join(dir, SINGLE_FILE))) single = join(dir, SINGLE_FILE);
    else if (existsSync(join(dir, INDEX_FILE))) index = join(dir, INDEX_FILE);
    else {
      const other = ['pytorch_model.bin', 'pytorch_model.bin.index.json', 'model.pt', 'consolidated.00.pth'].filter((f) => existsSync(join(dir, f)));
      const found = other.length > 0 ? `only ${other.join(', ')} (convert the checkpoint to safetensors)` : 'neither';
      throw new FileFormatError(dir, `a model folder holding ${SINGLE_FILE} or ${INDEX_FILE}`, found);
    }
  } else if (dir.endsWith('.json')) {
    index = dir;
  } else {
    single = dir;
  }

  const files = new Map<string, SafetensorsFile>();
  const locations = new Map<string, string>();
  try {
    if (single !== null) {
      const file = await openSafetensors(single);
      files.set(single, file);
      for (const name of file.entries.keys()) locations.set(name, single);
      return { source: single, locations, files };
    }
    const indexPath = index!;
    const weightMap = readIndex(indexPath);
    const base = dirname(indexPath);
    for (const [name, shard] of weightMap) {
      const path = join(base, shard);
      if (!files.has(path)) {
        if (!existsSync(path)) {
          throw new FileFormatError(indexPath, `shard ${JSON.stringify(shard)} (holding ${JSON.stringify(name)}) beside the index`, `nothing: ${path} does not exist`);
        }
        files.set(path, await openSafetensors(path));
      }
      const file = files.get(path)!;
      if (!file.entries.has(name)) {
        throw new FileFormatError(path, `tensor ${JSON.stringify(name)} (${basename(indexPath)} maps it to this shard)`, 'a shard without it');
      }
      locations.set(name, path);
    }
    // A tensor a shard holds but the index does not list still counts: it is checked like the rest.
    for (const [path, file] of files) {
      for (const name of file.entries.keys()) {
        const listed = locations.get(name);
        if (listed === undefined) locations.set(name, path);
        else if (listed !== path && !weightMap.has(name)) {
          throw new FileFormatError(path, `each tensor in one shard`, `${JSON.stringify(name)} in both ${listed} and ${path}`);
        }
      }
    }
    return { source: indexPath, locations, files };
  } catch (error) {
    for (const file of files.values()) file.close();
    throw error;
  }
}

function readIndex(path: string): Map<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new FileFormatError(path, 'a safetensors index', 'nothing: the file does not exist');
    throw new FileFormatError(path, 'a JSON safetensors index', (error as Error).message);
  }
  const weightMap = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof json !== 'object' || json === null || typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new FileFormatError(path, 'a JSON object with "weight_map": {tensor name: shard file}', describe(weightMap ?? json));
  }
  const map = new Map<string, string>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string' || shard.length === 0 || isAbsolute(shard) || shard.split(/[\\/]/).includes('..')) {
      throw new FileFormatError(path, `a shard file name beside the index for ${JSON.stringify(name)}`, describe(shard));
    }
    map.set(name, shard);
  }
  if (map.size === 0) throw new FileFormatError(path, 'a "weight_map" listing the tensors', 'an empty map');
  return map;
}

function list(names: string[]): string {
  const shown = names.slice(0, LISTED).map((n) => JSON.stringify(n));
  if (names.length > LISTED) shown.push(`... (${names.length} in all)`);
  return shown.join(', ');
}

/** Why the architecture has no use for `name`, where a reason is easy to tell. */
function unusedReason(name: string, config: ModelConfig): string {
  if (/\.self_attn\.[qkvo]_proj\.bias$/.test(name) && !config.attentionBias) return ' (the config has no attention bias: "attention_bias" is false)';
  if (/\.self_attn\.o_proj\.bias$/.test(name) && config.architecture === 'qwen2') return ' (Qwen2 has q/k/v biases but no o_proj bias)';
  if (/\.mlp\.\w+\.bias$/.test(name)) return ' (MLP biases are not supported: "mlp_bias" is false)';
  const layer = /^model\.layers\.(\d+)\./.exec(name);
  if (layer && Number(layer[1]) >= config.numLayers) return ` (the config has "num_hidden_layers": ${config.numLayers})`;
  return '';
}

function checkParameterSet(checkpoint: Checkpoint, expected: Map<string, number[]>, config: ModelConfig): void {
  const missing = [...expected.keys()].filter((name) => !checkpoint.locations.has(name));
  if (missing.length > 0) {
    const tiedHint = missing.includes(LM_HEAD) ? ' ("tie_word_embeddings" is false, so lm_head.weight is needed)' : '';
    throw new FileFormatError(
      checkpoint.source,
      `every parameter of the ${config.architecture} config${tiedHint}`,
      `a checkpoint missing ${missing.length}: ${list(missing)}`,
    );
  }
  const extra = [...checkpoint.locations.keys()].filter(
    (name) => !expected.has(name) && !IGNORED.test(name) && !(name === LM_HEAD && config.tieWordEmbeddings),
  );
  if (extra.length > 0) {
    throw new FileFormatError(
      checkpoint.source,
      `only parameters the ${config.architecture} config uses`,
      `${extra.length} it does not use: ${extra.map((name) => `${JSON.stringify(name)}${unusedReason(name, config)}`).slice(0, LISTED).join(', ')}${extra.length > LISTED ? ` ... (${extra.length} in all)` : ''}`,
    );
  }
}

function checkEntry(checkpoint: Checkpoint, name: string, shape: number[]): void {
  const path = checkpoint.locations.get(name)!;
  const entry = checkpoint.files.get(path)!.entries.get(name)!;
  if (entry.shape.length !== shape.length || entry.shape.some((d, i) => d !== shape[i])) {
    throw new FileFormatError(path, `tensor ${JSON.stringify(name)} of shape [${shape.join(', ')}]`, `shape [${entry.shape.join(', ')}]`);
  }
  if (!WEIGHT_DTYPES.has(entry.dtype)) {
    throw new FileFormatError(path, `tensor ${JSON.stringify(name)} in F32, BF16 or F16`, entry.dtype.toUpperCase());
  }
}

function readTensor(checkpoint: Checkpoint, name: string): HostTensor {
  return checkpoint.files.get(checkpoint.locations.get(name)!)!.tensor(name);
}

/** A tied checkpoint's lm_head.weight must be a copy of the embedding (bit for bit, or value for value across dtypes). */
function checkTiedCopy(checkpoint: Checkpoint): void {
  const head = readTensor(checkpoint, LM_HEAD);
  const embed = readTensor(checkpoint, EMBED);
  const sameDType = head.dtype === embed.dtype;
  const a = bytesOf(sameDType ? head.data : toF32(head).data);
  const b = bytesOf(sameDType ? embed.data : toF32(embed).data);
  if (Buffer.compare(a, b) !== 0) {
    throw new FileFormatError(
      checkpoint.locations.get(LM_HEAD)!,
      `"${LM_HEAD}" equal to "${EMBED}" ("tie_word_embeddings" is true), or absent`,
      'a different tensor',
    );
  }
}

let f16Table: Float32Array | null = null;

/** Decodes a bf16/f16 tensor to f32 (bf16: bits << 16; f16 through a 65536-entry table). */
function toF32(tensor: HostTensor): HostTensor {
  if (tensor.dtype === 'f32') return tensor;
  const bits = tensor.data as Uint16Array;
  const out = new Float32Array(bits.length);
  if (tensor.dtype === 'bf16') {
    const words = new Uint32Array(out.buffer);
    for (let i = 0; i < bits.length; i++) words[i] = bits[i]! << 16;
  } else {
    if (f16Table === null) {
      f16Table = new Float32Array(65536);
      for (let b = 0; b < 65536; b++) f16Table[b] = f16BitsToFloat(b);
    }
    const table = f16Table;
    for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]!]!;
  }
  return { dtype: 'f32', shape: tensor.shape, data: out };
}

/** A loaded tensor over its windows; `buffer` is there only when there is one window. */
function gpuTensor(name: string, dtype: WeightDType, shape: number[], bytes: number, windows: RowWindow[], maxWindowBytes: number): GpuTensor {
  return {
    name, dtype, shape, bytes, windows,
    get buffer(): GPUBuffer {
      if (windows.length === 1) return windows[0]!.buffer;
      throw new InvalidArgumentError(name, `a tensor within one storage binding (${maxWindowBytes} bytes) for an op that reads it whole`,
        `${bytes} bytes in ${windows.length} row windows (a smaller model, or a device with a larger maxStorageBufferBindingSize, would fit)`);
    },
  };
}

/** Rows [first, first + count) of a (rows, …) host tensor, as a view. */
function hostRows(host: HostTensor, first: number, count: number): HostTensor {
  const perRow = host.data.length / host.shape[0]!;
  return { dtype: host.dtype, shape: [count, ...host.shape.slice(1)], data: host.data.subarray(first * perRow, (first + count) * perRow) as HostTensor['data'] };
}

/**
 * Uploads tensor by tensor (host memory holds one tensor, plus one window when decoding to f32);
 * a tensor over `maxWindowBytes` goes up in row windows, one buffer each.
 */
async function upload(
  ctx: GpuContext,
  checkpoint: Checkpoint,
  expected: Map<string, number[]>,
  config: ModelConfig,
  mode: 'as-stored' | 'f32',
  maxWindowBytes: number,
): Promise<ModelWeights> {
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const tensors = new Map<string, GpuTensor>();
  const buffers: GPUBuffer[] = [];
  let destroyed = false;
  const destroy = (): void => {
    if (destroyed) return;
    destroyed = true;
    for (const b of buffers) b.destroy();
  };
  let gpuBytes = 0;
  let sinceDrain = 0;
  let current = '';
  try {
    for (const name of expected.keys()) {
      current = name;
      const stored = readTensor(checkpoint, name);
      const dtype = (mode === 'f32' ? 'f32' : stored.dtype) as WeightDType;
      const rows = stored.shape.length >= 2 ? stored.shape[0]! : 1;
      const elementBytes = dtype === 'f32' ? 4 : 2;
      const bytes = stored.data.length * elementBytes;
      const rowBytes = bytes / rows;
      // Odd-length 16-bit rows end mid-word: windows of an even row count each start on a word.
      const perWindow = bytes <= maxWindowBytes ? rows : rowsPerWindow(rowBytes, maxWindowBytes, rowBytes % 4 === 0 ? 1 : 2);
      if (perWindow === 0) {
        throw new InvalidArgumentError(name, `rows of at most ${maxWindowBytes} bytes (one storage binding)`, `rows of ${rowBytes} bytes (${dtype}; a smaller model would fit)`);
      }
      const windows: RowWindow[] = [];
      for (let firstRow = 0; firstRow < rows; firstRow += perWindow) {
        const count = Math.min(perWindow, rows - firstRow);
        const part = perWindow === rows ? stored : hostRows(stored, firstRow, count);
        const data = bytesOf((mode === 'f32' ? toF32(part) : part).data);
        const label = perWindow === rows ? name : `${name}[${firstRow}:${firstRow + count}]`;
        const buffer = await ctx.scoped(`loadWeights(${label})`, () => {
          const b = ctx.createBuffer(label, data.byteLength, usage);
          try {
            ctx.writeBuffer(b, 0, data);
          } catch (error) {
            b.destroy();
            throw error;
          }
          return b;
        });
        buffers.push(buffer);
        windows.push({ buffer, firstRow, rows: count });
        gpuBytes += buffer.size;
        sinceDrain += data.byteLength;
        if (sinceDrain >= DRAIN_BYTES) {
          sinceDrain = 0;
          ctx.device.queue.submit([]);
          await ctx.sync('loadWeights');
        }
      }
      tensors.set(name, gpuTensor(name, dtype, [...stored.shape], bytes, windows, maxWindowBytes));
    }
    await ctx.sync('loadWeights');
  } catch (error) {
    destroy();
    if (error instanceof GpuError && error.kind === 'out-of-memory') {
      const needed = [...expected.keys()].reduce((sum, name) => {
        const entry = checkpoint.files.get(checkpoint.locations.get(name)!)!.entries.get(name)!;
        const elements = entry.shape.reduce((a, b) => a * b, 1);
        return sum + Math.ceil((mode === 'f32' ? elements * 4 : entry.byteLength) / 16) * 16;
      }, 0);
      const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
      const upcast = mode === 'f32' && [...expected.keys()].some((name) => checkpoint.files.get(checkpoint.locations.get(name)!)!.entries.get(name)!.dtype !== 'f32');
      const fits = upcast ? 'keep 16-bit weights 16-bit (--weights as-stored, half the size) or use a smaller model' : 'use a smaller model';
      throw new GpuError('loadWeights', 'out-of-memory',
        `the weights need ${mib(needed)} of GPU memory; the device ran out after ${mib(gpuBytes)}, at ${current}: ${fits} (${error.message})`);
    }
    throw error;
  }

  const get = (name: string): GpuTensor => tensors.get(name)!;
  const optional = (name: string): GpuTensor | null => tensors.get(name) ?? null;
  const layers: LayerWeights[] = [];
  for (let i = 0; i < config.numLayers; i++) {
    const p = layerPrefix(i);
    layers.push({
      inputNorm: get(`${p}.input_layernorm.weight`),
      q: get(`${p}.self_attn.q_proj.weight`),
      k: get(`${p}.self_attn.k_proj.weight`),
      v: get(`${p}.self_attn.v_proj.weight`),
      qBias: optional(`${p}.self_attn.q_proj.bias`),
      kBias: optional(`${p}.self_attn.k_proj.bias`),
      vBias: optional(`${p}.self_attn.v_proj.bias`),
      o: get(`${p}.self_attn.o_proj.weight`),
      oBias: optional(`${p}.self_attn.o_proj.bias`),
      postNorm: get(`${p}.post_attention_layernorm.weight`),
      gate: get(`${p}.mlp.gate_proj.weight`),
      up: get(`${p}.mlp.up_proj.weight`),
      down: get(`${p}.mlp.down_proj.weight`),
    });
  }
  const embed = get(EMBED);
  return {
    embed,
    layers,
    finalNorm: get(FINAL_NORM),
    lmHead: config.tieWordEmbeddings ? embed : get(LM_HEAD),
    tied: config.tieWordEmbeddings,
    bytes: gpuBytes,
    destroy,
  };
}
