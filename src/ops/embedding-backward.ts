/**
 * The backward of the embedding lookup (src/ops/embedding.ts): dWeight[ids[t]] += dy[t] for every
 * token, on WebGPU (kernels/embedding_backward.wgsl), with a float64 reference. dWeight (vocab,
 * hidden) is f32 and accumulated into (a parameter gradient; a tied embedding adds the LM head's
 * part too). Deterministic: the tokens are sorted stably by id on the GPU and each id's rows
 * summed in an order fixed by the shape, so repeated ids never race; the work is
 * O(tokens·hidden + tokens²) and rows of ids that do not occur are never touched.
 */
import { InvalidArgumentError, describe } from '../errors.js';
import type { GpuContext } from '../gpu/context.js';
import { grid } from './token-stats/plan.js';
import { bindingOf, boundDispatch } from './bindings.js';
import { windowsOf, type RowWindow } from './split.js';

export interface EmbeddingBackwardShape {
  tokens: number;
  vocab: number;
  hidden: number;
}

export interface EmbeddingBackwardBuffers {
  /** Token ids (tokens u32), as the forward took them; an id ≥ vocab adds nothing. */
  ids: GPUBuffer;
  /** Gradient of the forward's output (tokens·hidden f32). */
  dy: GPUBuffer;
  /**
   * Gradient of the table (vocab·hidden f32), added to; or its row windows (src/ops/split.ts), for
   * a table larger than one binding: the runs of each window's ids are summed by dispatches of
   * their own, in the order one buffer gets.
   */
  dWeight: GPUBuffer | readonly RowWindow[];
}

export interface PreparedEmbeddingBackward {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

/** Tokens per workgroup of the ranking dispatch (kernels/embedding_backward.wgsl RANK_TOKENS). */
const RANK_TOKENS = 32;
/** Sorted places per workgroup of the summing dispatches (kernels/embedding_backward.wgsl BLOCK). */
const BLOCK = 16;

function checkShape(shape: EmbeddingBackwardShape): EmbeddingBackwardShape {
  if (shape === null || typeof shape !== 'object') throw new InvalidArgumentError('shape', 'an object { tokens, vocab, hidden }', describe(shape));
  for (const key of ['tokens', 'vocab', 'hidden'] as const) {
    const v = shape[key];
    if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(key, 'a positive integer', describe(v));
  }
  if (shape.vocab * shape.hidden > 0xffffffff) throw new InvalidArgumentError('shape', 'vocab·hidden < 2^32', String(shape.vocab * shape.hidden));
  if (shape.tokens * shape.hidden > 0xffffffff) throw new InvalidArgumentError('shape', 'tokens·hidden < 2^32', String(shape.tokens * shape.hidden));
  return { tokens: shape.tokens, vocab: shape.vocab, hidden: shape.hidden };
}

/** The float64 reference: the gradient alone (vocab·hidden), rows of ids outside [0, vocab) dropped. */
export function referenceEmbeddingBackward(ids: ArrayLike<number>, dy: ArrayLike<number>, { vocab, hidden }: Omit<EmbeddingBackwardShape, 'tokens'>): Float64Array {
  const dWeight = new Float64Array(vocab * hidden);
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t]!;
    if (!(Number.isInteger(id) && id >= 0 && id < vocab)) continue;
    for (let i = 0; i < hidden; i++) dWeight[id * hidden + i]! += dy[t * hidden + i]!;
  }
  return dWeight;
}

/** Records dWeight += the scatter of dy's rows at ids over GPU buffers into a caller's pass (three dispatches; two more per further window). */
export async function prepareEmbeddingBackward(ctx: GpuContext, shape: EmbeddingBackwardShape, buffers: EmbeddingBackwardBuffers): Promise<PreparedEmbeddingBackward> {
  const { tokens, vocab, hidden } = checkShape(shape);
  if (buffers === null || typeof buffers !== 'object') throw new InvalidArgumentError('buffers', 'an object { ids, dy, dWeight }', describe(buffers));
  const ids = bindingOf(ctx, 'ids', buffers.ids, tokens * 4);
  const dy = bindingOf(ctx, 'dy', buffers.dy, tokens * hidden * 4);
  const windows = windowsOf('dWeight', buffers.dWeight, vocab);
  const dWeights = windows.map((w) => bindingOf(ctx, windows.length === 1 ? 'dWeight' : `dWeight[${w.firstRow}:${w.firstRow + w.rows}]`, w.buffer, w.rows * hidden * 4));
  const blocks = Math.ceil(tokens / BLOCK);
  const partialBytes = 2 * blocks * hidden * 4;
  if (partialBytes > ctx.maxBindingBytes) throw new InvalidArgumentError('shape', `2·ceil(tokens / ${BLOCK})·hidden·4 ≤ ${ctx.maxBindingBytes} bytes (partials)`, `${partialBytes} bytes`);
  const maxGroups = ctx.limits.maxComputeWorkgroupsPerDimension;
  const rankGrid = grid(Math.ceil(tokens / RANK_TOKENS), maxGroups);
  const blockGrid = grid(blocks, maxGroups);
  const [rankPipeline, blocksPipeline, combinePipeline] = await Promise.all([
    ctx.pipeline('embedding_backward', 'rank_main'),
    ctx.pipeline('embedding_backward', 'blocks_main'),
    ctx.pipeline('embedding_backward', 'combine_main'),
  ]);
  return ctx.scoped('embedding_backward:prepare', () => {
    const order = ctx.createBuffer('embedding_backward:order', tokens * 4, GPUBufferUsage.STORAGE);
    const partials = ctx.createBuffer('embedding_backward:partials', partialBytes, GPUBufferUsage.STORAGE);
    const uniform = (groupsX: number, w: RowWindow = windows[0]!): GPUBuffer =>
      ctx.uniform('embedding_backward:params', new Uint32Array([tokens, hidden, vocab, groupsX, blocks, w.firstRow, w.rows, 0]).buffer);
    const label = `embedding_backward ${tokens} of ${vocab}x${hidden}`;
    const orderBinding = { buffer: order, size: tokens * 4 };
    const partialsBinding = { buffer: partials, size: partialBytes };
    const steps = [boundDispatch(ctx, rankPipeline, `${label}:rank`, uniform(rankGrid[0]), [ids, orderBinding], rankGrid, [order, partials])];
    windows.forEach((w, i) => {
      const rows = windows.length === 1 ? '' : ` rows ${w.firstRow}:${w.firstRow + w.rows}`;
      steps.push(boundDispatch(ctx, blocksPipeline, `${label}:blocks${rows}`, uniform(blockGrid[0], w), [ids, orderBinding, partialsBinding, dWeights[i]!, dy], blockGrid));
      steps.push(boundDispatch(ctx, combinePipeline, `${label}:combine${rows}`, uniform(blockGrid[0], w), [ids, orderBinding, partialsBinding, dWeights[i]!], blockGrid));
    });
    return {
      encode(pass: GPUComputePassEncoder) {
        for (const step of steps) step.encode(pass);
      },
      destroy() {
        for (const step of steps) step.destroy();
      },
    };
  });
}

/**
 * The backward for host arrays: ids (integers in [0, vocab); tokens = ids.length), dy
 * (tokens·hidden Float32Array). Returns init + the gradient (vocab·hidden float32; init defaults
 * to zeros). shape.tokens, when given, must equal ids.length.
 */
export async function embeddingBackward(ctx: GpuContext, ids: Uint32Array | Int32Array | readonly number[], dy: Float32Array,
  shape: Omit<EmbeddingBackwardShape, 'tokens'> & { tokens?: number }, init?: Float32Array): Promise<Float32Array> {
  const okIds = ids instanceof Uint32Array || ids instanceof Int32Array || Array.isArray(ids);
  if (!okIds || ids.length === 0) throw new InvalidArgumentError('ids', 'a non-empty Uint32Array, Int32Array or number[]', describe(ids));
  const { tokens, vocab, hidden } = checkShape({ ...shape, tokens: shape?.tokens ?? ids.length });
  if (tokens !== ids.length) throw new InvalidArgumentError('tokens', `ids.length (${ids.length})`, describe(tokens));
  for (let t = 0; t < tokens; t++) {
    const id = ids[t];
    if (!Number.isInteger(id) || id! < 0 || id! >= vocab) throw new InvalidArgumentError(`ids[${t}]`, `an integer in [0, ${vocab})`, describe(id));
  }
  if (!(dy instanceof Float32Array) || dy.length !== tokens * hidden) throw new InvalidArgumentError('dy', `Float32Array of ${tokens * hidden} elements (tokens·hidden)`, describe(dy));
  if (init !== undefined && !(init instanceof Float32Array && init.length === vocab * hidden)) throw new InvalidArgumentError('init', `Float32Array of ${vocab * hidden} elements (vocab·hidden)`, describe(init));
  const owned: GPUBuffer[] = [];
  try {
    const keep = (buffer: GPUBuffer): GPUBuffer => {
      owned.push(buffer);
      return buffer;
    };
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;
    const buffers = {
      ids: keep(ctx.upload('embedding_backward:ids', Uint32Array.from(ids))),
      dy: keep(ctx.upload('embedding_backward:dy', dy)),
      // New buffers are zeroed.
      dWeight: keep(init ? ctx.upload('embedding_backward:dWeight', init, usage) : ctx.createBuffer('embedding_backward:dWeight', vocab * hidden * 4, usage)),
    };
    const prepared = await prepareEmbeddingBackward(ctx, { tokens, vocab, hidden }, buffers);
    try {
      await ctx.runPass('embedding_backward', (pass) => prepared.encode(pass));
    } finally {
      prepared.destroy();
    }
    return new Float32Array(await ctx.read('embedding_backward', buffers.dWeight, vocab * hidden * 4));
  } finally {
    for (const buffer of owned) buffer.destroy();
  }
}
