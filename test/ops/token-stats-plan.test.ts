/** The work decomposition behind the WebGPU token-statistics kernels (src/ops/token-stats/plan.ts). */
import { MIN_CHUNK, OFFSET_ALIGNMENT, grid, planItems } from '../../src/ops/token-stats/plan.js';

const CASES: [number, number, number, number, string][] = [
  [1, 1, 4, 1 << 27, 'one element'],
  [2048, 151936, 4, 2 ** 31 - 4, 'Qwen2.5 batch on an H200: one chunk per row, one window'],
  [8, 151936, 2, 2 ** 31 - 4, 'few rows: rows split into chunks'],
  [256, 151936, 4, 1 << 27, 'lavapipe: 148 MiB over a 128 MiB binding, several windows'],
  [3, 1000003, 2, 64 * 1024, 'rows much longer than a window: chunks bounded by the window'],
];

describe('planItems', () => {
  test.each(CASES)('(%i, %i) bpe %i, binding %i: %s', (rows, vocab, bpe, binding) => {
    const plan = planItems(rows, vocab, bpe, binding);
    expect(plan.chunkLen).toBeGreaterThanOrEqual(Math.min(vocab, MIN_CHUNK, Math.floor((binding - OFFSET_ALIGNMENT) / 4) - 128));
    expect(plan.chunksPerRow).toBe(Math.ceil(vocab / plan.chunkLen));
    let next = 0;
    for (const w of plan.windows) {
      expect(w.firstItem).toBe(next); // windows tile the items in order, with no gap or overlap
      next += w.itemCount;
      expect((w.firstElement * bpe) % OFFSET_ALIGNMENT).toBe(0);
      expect(w.elementCount * 4).toBeLessThanOrEqual(binding - OFFSET_ALIGNMENT);
      const g = w.firstItem;
      expect(w.firstElement + w.firstItemOffset).toBe(Math.floor(g / plan.chunksPerRow) * vocab + (g % plan.chunksPerRow) * plan.chunkLen);
    }
    expect(next).toBe(rows * plan.chunksPerRow);
  });

  test('grid folds item counts past 65,535 into a second dimension', () => {
    expect(grid(10, 65535)).toEqual([10, 1]);
    expect(grid(200000, 65535)).toEqual([65535, 4]);
  });
});
