/**
 * Work decomposition shared by the token-statistics kernels (WebGPU) and described in
 * kernels/token_stats_common.wgsl: rows are cut into chunks (so a few rows with a huge vocabulary
 * still fill the GPU), chunks are work items, and consecutive items are grouped into dispatch
 * windows that each fit one storage-buffer binding.
 */

/** Aim for at least this many workgroups per forward/backward (a few per SM on a large GPU). */
export const TARGET_WORKGROUPS = 2048;
/**
 * No chunk shorter than this (elements): two 16-byte f32 loads per thread of a 256-thread
 * workgroup. Small chunks put more loads in flight when rows are few (N = 8): the whole batch
 * is then requested at once instead of a few kilobytes per SM at a time.
 */
export const MIN_CHUNK = 2048;
/** Binding offsets must be multiples of this (WebGPU's minStorageBufferOffsetAlignment ≤ 256). */
export const OFFSET_ALIGNMENT = 256;
/** Window capacity is counted in 4-byte elements: the gradient (f32) shares the logits' windows. */
const WINDOW_BYTES_PER_ELEMENT = 4;

export interface Window {
  firstItem: number;
  itemCount: number;
  /** First element (flat index over N·V) of the window; a multiple of 64. */
  firstElement: number;
  /** Elements the window spans, from firstElement to the end of its last item. */
  elementCount: number;
  /** Window element index where item `firstItem` starts. */
  firstItemOffset: number;
}

export interface Plan {
  rows: number;
  vocab: number;
  chunkLen: number;
  chunksPerRow: number;
  items: number;
  windows: Window[];
}

export function planItems(rows: number, vocab: number, bytesPerElement: number, maxBindingBytes: number,
  targetWorkgroups = TARGET_WORKGROUPS, minChunk = MIN_CHUNK): Plan {
  const windowElements = Math.floor((maxBindingBytes - OFFSET_ALIGNMENT) / WINDOW_BYTES_PER_ELEMENT);
  const alignElements = OFFSET_ALIGNMENT / bytesPerElement;
  const desiredChunks = Math.max(1, Math.ceil(targetWorkgroups / Math.max(rows, 1)));
  let chunkLen = Math.max(minChunk, Math.ceil(Math.ceil(vocab / desiredChunks) / 8) * 8);
  chunkLen = Math.min(chunkLen, Math.floor((windowElements - alignElements) / 8) * 8);
  if (chunkLen >= vocab) chunkLen = vocab;
  const chunksPerRow = Math.ceil(vocab / chunkLen);
  const items = rows * chunksPerRow;
  const itemStart = (g: number): number => Math.floor(g / chunksPerRow) * vocab + (g % chunksPerRow) * chunkLen;
  const itemEnd = (g: number): number => Math.floor(g / chunksPerRow) * vocab + Math.min((g % chunksPerRow + 1) * chunkLen, vocab);

  const windows: Window[] = [];
  let g0 = 0;
  while (g0 < items) {
    const start = itemStart(g0);
    const firstElement = start - (start % alignElements);
    // Largest g1 with items [g0, g1) inside the window: binary search on the item end.
    let lo = g0 + 1;
    let hi = items;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (itemEnd(mid - 1) - firstElement <= windowElements) lo = mid;
      else hi = mid - 1;
    }
    windows.push({ firstItem: g0, itemCount: lo - g0, firstElement, elementCount: itemEnd(lo - 1) - firstElement, firstItemOffset: start - firstElement });
    g0 = lo;
  }
  return { rows, vocab, chunkLen, chunksPerRow, items, windows };
}

/** Workgroup grid for `count` workgroups: x ≤ maxPerDimension, y as needed. */
export function grid(count: number, maxPerDimension: number): [number, number] {
  const x = Math.max(1, Math.min(count, maxPerDimension));
  return [x, Math.max(1, Math.ceil(count / x))];
}
