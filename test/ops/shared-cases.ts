/** Shape tables the forward and backward tests of the same op share (each row: the code path it hits). */

/** RoPE (kernels/rope.wgsl, both directions): tokens, heads, head dimension, the largest position. */
export type RopeCase = [tokens: number, heads: number, headDim: number, maxPosition: number, path: string];

export const ROPE_CASES: RopeCase[] = [
  [1, 1, 2, 7, 'one pair: D = 2, a single workgroup with 255 idle threads'],
  [3, 5, 6, 40, 'D/2 = 3: pairs of consecutive rows interleave within a workgroup'],
  [1, 14, 64, 9, 'one token (a decoding step) with Qwen2.5-0.5B query heads: 448 pairs, two workgroups'],
  [7, 3, 128, 131_071, 'positions up to 2^17: angles of 1.3·10^5 rad, the range reduction at work'],
  [37, 2, 64, 32_767, 'ragged: 37·2·32 = 2368 pairs, 9.25 workgroups'],
  [2, 1, 4098, 5000, 'a large row: D = 4098, 2049 pairs per row, odd'],
];

/** SwiGLU (kernels/swiglu.wgsl and swiglu_backward.wgsl): rows × intermediate. */
export type SwigluCase = [rows: number, intermediate: number, path: string];

export const SWIGLU_CASES: SwigluCase[] = [
  [1, 1, 'one element: 255 idle threads'],
  [3, 13, '39 elements, less than one workgroup'],
  [1, 4864, "one large row: Qwen2.5-0.5B's intermediate size, 19 workgroups"],
  [7, 301, '2107 elements: 8 workgroups and a ragged ninth'],
];

/** Gates that overflow a naive e^{−x}: ±1e30, ±1e4, ±88.8 (exp's f32 limit), ±100, ±0. */
export const SWIGLU_EXTREMES = [1e30, -1e30, 1e4, -1e4, 88.8, -88.8, 100, -100, 0, -0];
