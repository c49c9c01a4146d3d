// linear.wgsl: y = x · Wᵀ + b (PyTorch / Hugging Face nn.Linear), f32 accumulation.
//
// Shapes (row-major, any sizes; edges are masked): x (M, K) f32, W (N, K) as nn.Linear stores it,
// optional bias b (N), y (M, N) f32. W and b are f32, f16 or bf16 (W_DTYPE, B_DTYPE override
// constants); 16-bit values are packed two per u32 word as in a safetensors file (element 2j in
// the low half), so when K is odd a row of W starts in the high half of a word: elements are
// then addressed individually (word e >> 1, half e & 1). Decoding is exact integer arithmetic
// (bf16 = bits << 16; f16 rebuilt field by field, subnormals included).
//
// linear_main: grid (ceil(N / 64), ceil(M / TILE_M), splits) of TILE_M threads (8 × TILE_M / 8).
//   A workgroup computes one TILE_M × 64 tile of x · Wᵀ (tile_product, kernels/linear_tile.wgsl) over the K range
//   [z · kPerSplit, min(K, (z + 1) · kPerSplit)) of its grid z. TILE_M is 64, or 32 when M ≤ 32
//   (decoding: the whole batch in one tile row, so W is read exactly once). Each step stages a
//   DEPTH-deep slab of x and of W in workgroup memory as vec4s of 4 consecutive rows (rows padded
//   by one vec4 against bank conflicts); each thread accumulates an 8 × 8 block of the tile in
//   f32 registers, as rows {4ty..4ty+3, TILE_M/2+4ty..} × columns {4tx..4tx+3, 32+4tx..} (four
//   16-byte workgroup reads per 64 fma, each conflict-free), and loads the next slab into
//   registers while it multiplies the current one. Global reads fetch 4 consecutive elements of
//   a row: one 16-byte load (x, f32 W) or 8-byte load (16-bit W) from the `…Quads` / `wPairs`
//   view of the same buffer when K is a multiple of 4 (K_ALIGNED; else those views are
//   placeholders), else one element at a time.
//   With splits = 1 the tile plus the bias goes to `product` = y. With several splits (src/ops/
//   linear.ts, linearPlan: when the tiles alone leave the GPU idle and K is long) `product` is a
//   scratch buffer of splits · M · N values, range z writes its partial tile (no bias) at
//   z · M · N, and
// linear_reduce: ceil(M · N / 256) workgroups of 256 threads, one element each, sets
//   y = (partial_0 + partial_1 + … in range order) + b.
// linear_rows_main (m = ROWS_M ≤ 8, an override: decoding a small batch, where a 32-row tile
//   would be mostly padding): ceil(N / (256 / ROWS_LANES)) workgroups of 256 threads, ROWS_LANES
//   (an override, 4 … 32: about 8 quads of k each) per column of y. Lane l reads quads l,
//   l + ROWS_LANES, … of its column's W row (32 lanes: 512 consecutive bytes of f32 W) and dots
//   each with the same quad of every row of x (ROWS_M accumulators in registers), so W is read
//   once and no FMA is spent on padding; a tree in workgroup memory adds the lanes, and lanes
//   write the column's m values of y (+ bias). k is never split.
// Row windows (src/ops/split.ts): W may be rows [column, column + N) of a larger weight, bound on
//   its own; y is then columns [column, column + N) of an (M, yStride) output and the bias is the
//   whole weight's, read at column + j. Partials stay (M, N) per range. The caller plans splits
//   from the whole output, so every element is summed as in an unsplit run.
// With ACCUMULATE, y already holds a residual r and gets r + (x · Wᵀ + b): the tile kernel
// (splits = 1) or the reduction (splits > 1) reads each element of y before writing it, which saves
// a transformer layer's separate residual adds.
// Every sum has a fixed order (k ascending inside a range, ranges ascending, bias, then the
// residual), so the result depends only on the shape, never on scheduling: no atomics. Shapes
// travel in the uniform; overrides only pick code.
// Reference: referenceLinear in src/ops/linear.ts (float64 over the decoded values).

struct Params {
  m: u32,
  n: u32,
  k: u32,
  kPerSplit: u32,   // a multiple of DEPTH; ≥ K when there is one range
  splits: u32,
  yStride: u32,     // y's row length: N, or the whole output's when W is one row window of it
  column: u32,      // y's (and the bias's) column of W's row 0: 0, or the window's first row
  _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> xQuads: array<vec4<f32>>;   // x when K_ALIGNED
@group(0) @binding(3) var<storage, read> w: array<u32>;              // f32 bits, or packed 16-bit pairs
@group(0) @binding(4) var<storage, read> wQuads: array<vec4<u32>>;   // f32 W when K_ALIGNED
@group(0) @binding(5) var<storage, read> wPairs: array<vec2<u32>>;   // 16-bit W when K_ALIGNED
@group(0) @binding(6) var<storage, read> bias: array<u32>;           // like w; a placeholder when B_DTYPE = 3
@group(0) @binding(7) var<storage, read_write> product: array<f32>;  // y, or the partials of several splits
@group(0) @binding(8) var<storage, read> partials: array<f32>;
@group(0) @binding(9) var<storage, read_write> y: array<f32>;

override B_DTYPE: u32 = 3u;   // as W_DTYPE, or 3 = no bias (also for linear_main when it writes partials)
override ACCUMULATE: bool = false;   // y += x · Wᵀ + b (linear_main only when it writes y itself)

const REDUCE_WG: u32 = 256u;
const ROWS_MAX: u32 = 8u;                          // linear_rows_main: rows of x at most (src/ops/linear.ts ROWS_MAX)
override ROWS_M: u32 = 1u;                         // linear_rows_main: rows of x, 1 … ROWS_MAX
override ROWS_LANES: u32 = 32u;                    // linear_rows_main: lanes per column, 4 … 32
override ROWS_COLUMNS: u32 = 256u / ROWS_LANES;    // linear_rows_main: columns of y per workgroup

var<workgroup> laneSums: array<array<f32, ROWS_MAX>, 256>;    // linear_rows_main: [thread][row of x]

//!include linear_tile.wgsl

fn bias_at(e: u32) -> f32 {
  if (B_DTYPE == 3u) {
    return 0.0;
  }
  return bitcast<f32>(packed_bits(bias[packed_word(e, B_DTYPE)], e, B_DTYPE));
}

@compute @workgroup_size(8, TILE_M / 8)
fn linear_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row0 = wid.y * TILE_M;
  let col0 = wid.x * TILE_N;
  let kBegin = wid.z * params.kPerSplit;
  let kEnd = min(params.k, kBegin + params.kPerSplit);
  let acc = tile_product(row0, col0, kBegin, kEnd, lid);

  let base = wid.z * params.m * params.n;
  var b: array<vec4<f32>, 2>;
  for (var h = 0u; h < 2u; h++) {
    for (var c = 0u; c < 4u; c++) {
      let col = col0 + 32u * h + 4u * lid.x + c;
      if (col < params.n) {
        b[h][c] = bias_at(params.column + col);
      }
    }
  }
  for (var i = 0u; i < 8u; i++) {
    let r = row0 + select(TILE_M / 2u + 4u * lid.y + i - 4u, 4u * lid.y + i, i < 4u);
    if (r >= params.m) {
      continue;
    }
    for (var h = 0u; h < 2u; h++) {
      for (var c = 0u; c < 4u; c++) {
        let col = col0 + 32u * h + 4u * lid.x + c;
        if (col < params.n) {
          let at = select(base + r * params.n + col, r * params.yStride + params.column + col, params.splits == 1u);
          let value = acc[2u * i + h][c] + b[h][c];
          if (ACCUMULATE) {
            product[at] = product[at] + value;
          } else {
            product[at] = value;
          }
        }
      }
    }
  }
}

@compute @workgroup_size(REDUCE_WG)
fn linear_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let e = wid.x * REDUCE_WG + lid;
  let count = params.m * params.n;
  if (e >= count) {
    return;
  }
  var s = partials[e];
  for (var split = 1u; split < params.splits; split++) {
    s += partials[split * count + e];
  }
  let col = params.column + e % params.n;
  let value = s + bias_at(col);
  let at = (e / params.n) * params.yStride + col;
  if (ACCUMULATE) {
    y[at] = y[at] + value;
  } else {
    y[at] = value;
  }
}

@compute @workgroup_size(256)
fn linear_rows_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let column = wid.x * ROWS_COLUMNS + lid / ROWS_LANES;
  let lane = lid % ROWS_LANES;
  var acc: array<f32, ROWS_MAX>;
  // w_quad and x_quad give zeros past N and past K.
  for (var k = 4u * lane; k < params.k; k += 4u * ROWS_LANES) {
    let wq = w_quad(column, k, params.k);
    for (var r = 0u; r < ROWS_M; r++) {
      acc[r] += dot(x_quad(r, k, params.k), wq);
    }
  }
  laneSums[lid] = acc;
  workgroupBarrier();
  for (var stride = ROWS_LANES / 2u; stride > 0u; stride >>= 1u) {
    if (lane < stride) {
      for (var r = 0u; r < ROWS_M; r++) {
        laneSums[lid][r] += laneSums[lid + stride][r];
      }
    }
    workgroupBarrier();
  }
  // Lane l writes rows l, l + ROWS_LANES, … (4 lanes may serve 8 rows).
  for (var r = lane; r < ROWS_M && column < params.n; r += ROWS_LANES) {
    let at = r * params.yStride + params.column + column;
    let value = laneSums[lid - lane][r] + bias_at(params.column + column);
    if (ACCUMULATE) {
      product[at] = product[at] + value;
    } else {
      product[at] = value;
    }
  }
}
