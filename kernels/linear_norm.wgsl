// linear_norm.wgsl: projections of an RMSNorm'd input in one dispatch, the norm computed inside:
//   y_p = rmsnorm(x) · W_pᵀ + b_p  for parts p < PARTS ≤ 3 (q, k and v of an attention block), or
//   with GLU: y = silu(rmsnorm(x) · W_0ᵀ) ⊙ (rmsnorm(x) · W_1ᵀ)  (gate and up of the MLP: SwiGLU),
// where rmsnorm(x) = x / sqrt(mean(x²) + eps) · g (Llama / Qwen2 RMSNorm, weight g).
//
// Shapes (row-major): x (M, K) f32 with M = ROWS_M ≤ 8 (an override: decoding a small batch), g (K),
// W_p (N_p, K) as nn.Linear stores it, b_p (N_p) or none, y_p (M, yStride_p) f32 of which columns
// [column_p, column_p + N_p) are written (a part may be one row window of a larger weight,
// src/ops/split.ts: the bias is then the whole weight's, read at column_p + j). g, W_p and b_p are
// f32, f16 or bf16 (N_DTYPE, W<p>_DTYPE, B<p>_DTYPE overrides; B = 3: no bias), 16-bit values
// packed two per u32 word as in a safetensors file (K odd: rows start mid-word). x and W are viewed
// in whole 16-byte words (GpuContext.createBuffer pads buffers to 16 bytes): one 16-byte load
// per quad of x or of f32 W when K is a multiple of 4 (K_ALIGNED), half of one for 16-bit W, else
// element by element.
// Geometry: workgroups of 256 threads, LANES (4 … 32, an override) per column of y, 256 / LANES
// columns a workgroup; part p owns workgroups [groupEnd_{p-1}, groupEnd_p) of grid x (with GLU one
// part: column j reads row j of W_0 and of W_1). Lane l reads quads l, l + LANES, … of k: of its
// column's W row(s), of g, and of every row of x (ROWS_M accumulators). Its lanes thus see all of
// x's row together, so the sum of squares the norm needs comes with the loads the projection makes
// anyway: each lane adds x² of its quads, and the same tree in workgroup memory that adds the
// lanes' dot products adds those (one column's lanes: every column reads the same x).
// The norm is folded in: y = (Σ_k x_k g_k W_jk) · s + b with s = inverseSqrt(mean(x²) + eps),
// the unfused path's Σ_k ((x_k s) g_k) W_jk with s moved out of the sum (float32 rounding apart).
// Every sum has a fixed order, so results depend on the shape only.
// Reference: referenceLinearNorm in src/ops/linear-norm.ts (float64: referenceRmsNorm, then
// referenceLinear, then referenceSwiglu with GLU).

struct Params {
  m: u32,
  k: u32,
  parts: u32,
  eps: f32,
  // Per part: (groupEnd, n, column, yStride).
  part: array<vec4<u32>, 3>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> g: array<u32>;           // f32 bits, or packed 16-bit pairs
@group(0) @binding(3) var<storage, read> w0: array<vec4<u32>>;    // f32 bits, or packed 16-bit pairs
@group(0) @binding(4) var<storage, read> w1: array<vec4<u32>>;    // placeholders past PARTS
@group(0) @binding(5) var<storage, read> w2: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read> b0: array<u32>;          // placeholders without a bias
@group(0) @binding(7) var<storage, read> b1: array<u32>;
@group(0) @binding(8) var<storage, read> b2: array<u32>;
@group(0) @binding(9) var<storage, read_write> y0: array<f32>;
@group(0) @binding(10) var<storage, read_write> y1: array<f32>;   // placeholders past PARTS, and with GLU
@group(0) @binding(11) var<storage, read_write> y2: array<f32>;

override ROWS_M: u32 = 1u;          // rows of x, 1 … ROWS_MAX
override LANES: u32 = 32u;          // lanes per column, 4 … 32
override COLUMNS: u32 = 256u / LANES;
override K_ALIGNED: bool = false;
override GLU: bool = false;
override N_DTYPE: u32 = 0u;         // 0 = f32, 1 = f16, 2 = bf16
override W0_DTYPE: u32 = 0u;
override W1_DTYPE: u32 = 0u;
override W2_DTYPE: u32 = 0u;
override B0_DTYPE: u32 = 3u;        // as W, or 3 = no bias
override B1_DTYPE: u32 = 3u;
override B2_DTYPE: u32 = 3u;

const ROWS_MAX: u32 = 8u;           // src/ops/linear-norm.ts ROWS_MAX
const WG: u32 = 256u;

var<workgroup> laneSums: array<array<f32, ROWS_MAX>, WG>;   // [thread][row of x]
var<workgroup> squareSums: array<array<f32, ROWS_MAX>, 32>;  // [lane of column 0][row of x]

//!include packed16.wgsl

fn w_dtype(p: u32) -> u32 {
  return select(select(W2_DTYPE, W1_DTYPE, p == 1u), W0_DTYPE, p == 0u);
}

fn w_words(p: u32, i: u32) -> vec4<u32> {
  if (p == 0u) {
    return w0[i];
  }
  if (p == 1u) {
    return w1[i];
  }
  return w2[i];
}

fn w_word(p: u32, i: u32) -> u32 {
  if (p == 0u) {
    return w0[i >> 2u][i & 3u];
  }
  if (p == 1u) {
    return w1[i >> 2u][i & 3u];
  }
  return w2[i >> 2u][i & 3u];
}

// W_p[row, col..col+3] decoded, zeros past K.
fn w_quad(p: u32, row: u32, col: u32) -> vec4<f32> {
  let dtype = w_dtype(p);
  let e = row * params.k + col;
  if (K_ALIGNED && dtype == 0u) {
    return bitcast<vec4<f32>>(w_words(p, e >> 2u));
  }
  if (K_ALIGNED) {
    // e is a multiple of 4: its 4 halves are words e/2 and e/2 + 1, one half of a 16-byte word.
    let q = w_words(p, e >> 3u);
    let pair = select(q.xy, q.zw, ((e >> 2u) & 1u) == 1u);
    return bitcast<vec4<f32>>(vec4(packed_bits(pair.x, 0u, dtype), packed_bits(pair.x, 1u, dtype),
                                   packed_bits(pair.y, 0u, dtype), packed_bits(pair.y, 1u, dtype)));
  }
  var v = vec4(0.0);
  for (var c = 0u; c < 4u && col + c < params.k; c++) {
    v[c] = bitcast<f32>(packed_bits(w_word(p, packed_word(e + c, dtype)), e + c, dtype));
  }
  return v;
}

// x[row, col..col+3], zeros past K.
fn x_quad(row: u32, col: u32) -> vec4<f32> {
  let e = row * params.k + col;
  if (K_ALIGNED) {
    return x[e >> 2u];
  }
  var v = vec4(0.0);
  for (var c = 0u; c < 4u && col + c < params.k; c++) {
    v[c] = x[(e + c) >> 2u][(e + c) & 3u];
  }
  return v;
}

// g[col..col+3] decoded, zeros past K.
fn g_quad(col: u32) -> vec4<f32> {
  var v = vec4(0.0);
  for (var c = 0u; c < 4u && col + c < params.k; c++) {
    v[c] = bitcast<f32>(packed_bits(g[packed_word(col + c, N_DTYPE)], col + c, N_DTYPE));
  }
  return v;
}

fn bias_at(p: u32, e: u32) -> f32 {
  let dtype = select(select(B2_DTYPE, B1_DTYPE, p == 1u), B0_DTYPE, p == 0u);
  if (dtype == 3u) {
    return 0.0;
  }
  var word: u32;
  if (p == 0u) {
    word = b0[packed_word(e, dtype)];
  } else if (p == 1u) {
    word = b1[packed_word(e, dtype)];
  } else {
    word = b2[packed_word(e, dtype)];
  }
  return bitcast<f32>(packed_bits(word, e, dtype));
}

fn write_y(p: u32, at: u32, value: f32) {
  if (p == 0u) {
    y0[at] = value;
  } else if (p == 1u) {
    y1[at] = value;
  } else {
    y2[at] = value;
  }
}

fn silu(v: f32) -> f32 {
  let e = exp(-abs(v));
  return select(v * e, v, v >= 0.0) / (1.0 + e);
}

// Adds the lanes of every column (and, when `squares`, column 0's squares) in laneSums by a tree.
fn reduce_lanes(lid: u32, lane: u32, squares: bool) {
  workgroupBarrier();
  for (var stride = LANES / 2u; stride > 0u; stride >>= 1u) {
    if (lane < stride) {
      for (var r = 0u; r < ROWS_M; r++) {
        laneSums[lid][r] += laneSums[lid + stride][r];
      }
      if (squares && lid < LANES) {
        for (var r = 0u; r < ROWS_M; r++) {
          squareSums[lid][r] += squareSums[lid + stride][r];
        }
      }
    }
    workgroupBarrier();
  }
}

@compute @workgroup_size(WG)
fn linear_norm_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  var p = 0u;
  while (p + 1u < params.parts && wid.x >= params.part[p].x) {
    p++;
  }
  let first = select(0u, params.part[max(p, 1u) - 1u].x, p > 0u);
  let part = params.part[p];
  let column = (wid.x - first) * COLUMNS + lid / LANES;
  let lane = lid % LANES;
  let live = column < part.y;
  var acc: array<f32, ROWS_MAX>;
  var accUp: array<f32, ROWS_MAX>;
  var squares: array<f32, ROWS_MAX>;
  for (var k = 4u * lane; k < params.k; k += 4u * LANES) {
    let gq = g_quad(k);
    var wq = vec4(0.0);
    var uq = vec4(0.0);
    if (live) {
      wq = w_quad(p, column, k);
      if (GLU) {
        uq = w_quad(1u, column, k);
      }
    }
    for (var r = 0u; r < ROWS_M; r++) {
      let xq = x_quad(r, k);
      squares[r] += dot(xq, xq);
      let xg = xq * gq;
      acc[r] += dot(xg, wq);
      if (GLU) {
        accUp[r] += dot(xg, uq);
      }
    }
  }
  laneSums[lid] = acc;
  if (lid < LANES) {
    squareSums[lid] = squares;
  }
  reduce_lanes(lid, lane, true);
  // Lane l finishes rows l and l + LANES (4 lanes may serve 8 rows).
  var done: array<f32, 2>;
  for (var j = 0u; j < 2u; j++) {
    let r = lane + j * LANES;
    if (r < ROWS_M) {
      done[j] = laneSums[lid - lane][r] * inverseSqrt(squareSums[0][r] / f32(params.k) + params.eps);
    }
  }
  if (GLU) {
    workgroupBarrier();
    laneSums[lid] = accUp;
    reduce_lanes(lid, lane, false);
  }
  for (var j = 0u; j < 2u; j++) {
    let r = lane + j * LANES;
    if (r < ROWS_M && live) {
      let at = r * part.w + part.z + column;
      if (GLU) {
        let up = laneSums[lid - lane][r] * inverseSqrt(squareSums[0][r] / f32(params.k) + params.eps);
        write_y(0u, at, silu(done[j]) * up);
      } else {
        write_y(p, at, done[j] + bias_at(p, part.z + column));
      }
    }
  }
}
