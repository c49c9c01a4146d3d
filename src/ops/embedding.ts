/**
 * Token embedding lookup, out[t] = table[ids[t]], on WebGPU (kernels/embedding.wgsl), with a
 * float64 reference. The table (vocab, hidden) is f32, f16 or bf16 (16-bit values packed two per
 * 32-bit word, as in a safetensors file); out is f32 and exact (16-bit values widen losslessly).
 * Host ids are validated; on the GPU an id ≥ vocab writes a row of NaN.
 */
import { BYTES_PER_ELEMENT, checkHostArray, elementReader, parseDType, type DType, type HostArray } from '../dtype.js';
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { grid } from './token-stats/plan.js';
import { DispatchList, bindingOf, runOnHost } from './bindings.js';
import { windowsOf, type RowWindow } from './split.js';

export interface EmbeddingShape {
  tokens: number;
  vocab: number;
  hidden: number;
  /** Storage of the table. Default 'f32'. */
  dtype?: DType;
}

const DTYPE_CODE: Record<DType, number> = { f32: 0, f16: 1, bf16: 2 };

function checkShape(shape: EmbeddingShape): { tokens: number; vocab: number; hidden: number; dtype: DType } {
  if (shape === null || typeof shape !== 'object') throw new InvalidArgumentError('shape', 'an object { tokens, vocab, hidden }', describe(shape));
  for (const key of ['tokens', 'vocab', 'hidden'] as const) {
    const v = shape[key];
    if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(key, 'a positive integer', describe(v));
  }
  if (shape.vocab > 0xffffffff) throw new InvalidArgumentError('vocab', 'at most 2^32 − 1', describe(shape.vocab));
  return { tokens: shape.tokens, vocab: shape.vocab, hidden: shape.hidden, dtype: parseDType(shape.dtype ?? 'f32', 'dtype') };
}

/** Host ids as a Uint32Array, each an integer in [0, vocab). */
function checkIds(ids: unknown, vocab: number): Uint32Array {
  const ok = ids instanceof Uint32Array || ids instanceof Int32Array || Array.isArray(ids);
  if (!ok || ids.length === 0) throw new InvalidArgumentError('ids', 'a non-empty Uint32Array, Int32Array or number[]', describe(ids));
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t];
    if (!Number.isInteger(id) || id! < 0 || id! >= vocab) throw new InvalidArgumentError(`ids[${t}]`, `an integer in [0, ${vocab})`, describe(id));
  }
  return Uint32Array.from(ids as ArrayLike<number>);
}

/**
 * The reference: out (tokens, hidden) = rows of the table (vocab, hidden) of `dtype`, decoded to
 * float64; an id outside [0, vocab) gives a row of NaN, as the kernel does.
 */
export function referenceEmbedding(ids: ArrayLike<number>, table: HostArray, { vocab, hidden, dtype = 'f32' }: Omit<EmbeddingShape, 'tokens'>): Float64Array {
  const read = elementReader(dtype, table);
  const out = new Float64Array(ids.length * hidden);
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t]!;
    const valid = Number.isInteger(id) && id >= 0 && id < vocab;
    for (let i = 0; i < hidden; i++) out[t * hidden + i] = valid ? read(id * hidden + i) : NaN;
  }
  return out;
}

export interface PreparedEmbedding {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

/**
 * Records the lookup over GPU buffers into a caller's pass: ids (tokens u32), table
 * (vocab·hidden of dtype, 16-bit packed; or row windows of it, src/ops/split.ts, a dispatch
 * each), out (tokens·hidden f32). Ids are not checked here: an id ≥ vocab writes NaN.
 */
export async function prepareEmbedding(ctx: GpuContext, shape: EmbeddingShape, ids: GPUBuffer, table: GPUBuffer | readonly RowWindow[], out: GPUBuffer): Promise<PreparedEmbedding> {
  const { tokens, vocab, hidden, dtype } = checkShape(shape);
  const windows = windowsOf('table', table, vocab);
  const idsBinding = bindingOf(ctx, 'ids', ids, tokens * 4);
  const tableBindings = windows.map((w) => bindingOf(ctx, windows.length === 1 ? 'table' : `table[${w.firstRow}:${w.firstRow + w.rows}]`, w.buffer, w.rows * hidden * BYTES_PER_ELEMENT[dtype]));
  const outBinding = bindingOf(ctx, 'out', out, tokens * hidden * 4);
  const [groupsX, groupsY] = grid(tokens, ctx.limits.maxComputeWorkgroupsPerDimension);
  const pipeline = await ctx.pipeline('embedding', 'embedding_main', { T_DTYPE: DTYPE_CODE[dtype] });
  return ctx.scoped('embedding:prepare', () => {
    const label = `embedding ${tokens} of ${vocab}x${hidden} ${dtype}`;
    const uniforms = windows.map((w) => ctx.uniform('embedding:params', new Uint32Array([tokens, hidden, vocab, groupsX, w.firstRow, w.rows, 0, 0]).buffer));
    const dispatches = new DispatchList(ctx, label, uniforms[0]!, uniforms);
    windows.forEach((w, i) => dispatches.add(pipeline, `rows ${w.firstRow}:${w.firstRow + w.rows}`, [[1, idsBinding], [2, tableBindings[i]!], [3, outBinding]], [groupsX, groupsY, 1], uniforms[i]));
    return dispatches.prepared();
  });
}

/**
 * The lookup for host arrays: ids (integers in [0, vocab); tokens = ids.length), table a
 * Float32Array for f32 or a Uint16Array of f16/bf16 bits. Returns (tokens·hidden) float32.
 * `poison` fills the output with NaN first.
 */
export async function embedding(ctx: GpuContext, ids: Uint32Array | Int32Array | readonly number[], table: HostArray,
  shape: Omit<EmbeddingShape, 'tokens'>, options: { poison?: boolean } = {}): Promise<Float32Array> {
  const { vocab, hidden, dtype } = checkShape({ ...shape, tokens: 1 });
  const hostIds = checkIds(ids, vocab);
  const tokens = hostIds.length;
  checkHostArray('table', dtype, table);
  if (table.length !== vocab * hidden) throw new InvalidArgumentError('table', `${vocab * hidden} elements (vocab·hidden)`, describe(table));
  return runOnHost(ctx, 'embedding', { ids: hostIds, table }, tokens * hidden, options.poison ?? false,
    (bufs, out) => prepareEmbedding(ctx, { tokens, vocab, hidden, dtype }, bufs.ids!, bufs.table!, out));
}
