// linear_tile.wgsl: the 64-column matmul tile of kernels/linear.wgsl's linear_main, shared with
// the kernels that consume such a tile in registers instead of storing it (kernels/lm_head_stats.wgsl).
//
// tile_product(row0, col0, kBegin, kEnd, lid) returns, for a workgroup of (8, TILE_M / 8) threads,
// this thread's 8 × 8 block of the TILE_M × 64 tile x[row0.., kBegin..kEnd] · W[col0.., kBegin..kEnd]ᵀ:
// acc[2i + h] holds row i of the thread (i < 4: 4·lid.y + i; else TILE_M/2 + 4·lid.y + i − 4),
// columns 32h + 4·lid.x + 0..3. Rows past params.m and W rows past params.n read as zeros.
// How: each step stages a DEPTH-deep slab of x and of W in workgroup memory as vec4s of 4
// consecutive rows (rows padded by one vec4 against bank conflicts); four 16-byte workgroup reads
// per 64 fma, each conflict-free; the next slab is loaded into registers while the current one is
// multiplied. Global reads fetch 4 consecutive elements of a row: one 16-byte load (x, f32 W) or
// 8-byte load (16-bit W) from the `…Quads` / `wPairs` view of the same buffer when K is a multiple
// of 4 (K_ALIGNED; else those views are placeholders), else one element at a time.
//
// The includer declares: `params` with fields m, n, k (rows of x, rows of W, K); the bindings
// x: array<f32>, xQuads: array<vec4<f32>>, w: array<u32> (f32 bits, or 16-bit values packed two
// per word), wQuads: array<vec4<u32>>, wPairs: array<vec2<u32>>.

override W_DTYPE: u32 = 0u;   // 0 = f32, 1 = f16, 2 = bf16
override K_ALIGNED: bool = false;
override TILE_M: u32 = 64u;   // 64 or 32 (the linear op); 16 or 8 too (lm_head_stats.wgsl, a few rows)

const TILE_N: u32 = 64u;
const DEPTH: u32 = 16u;
override X_STRIDE: u32 = TILE_M / 4u + 1u;   // vec4s per slab row of x: TILE_M / 4 quads of rows and a pad
const W_STRIDE: u32 = TILE_N / 4u + 1u;
override W_QUADS_PER_THREAD: u32 = TILE_N * DEPTH / 4u / TILE_M;   // 4, 8, 16 or 32 for TILE_M = 64 … 8
const MAX_W_QUADS: u32 = 32u;   // wNext's length (a function-scope array needs a constant one)

var<workgroup> tileX: array<vec4<f32>, DEPTH * X_STRIDE>;   // [k][quad of x rows]
var<workgroup> tileW: array<vec4<f32>, DEPTH * W_STRIDE>;   // [k][quad of W rows = columns of y]

//!include packed16.wgsl

fn weight_at(e: u32) -> f32 {
  return bitcast<f32>(packed_bits(w[packed_word(e, W_DTYPE)], e, W_DTYPE));
}

// x[row, col..col+3], zeros past M or past kEnd.
fn x_quad(row: u32, col: u32, kEnd: u32) -> vec4<f32> {
  var v = vec4(0.0);
  if (row < params.m && col < kEnd) {
    let e = row * params.k + col;
    if (K_ALIGNED) {
      v = xQuads[e / 4u];
    } else {
      for (var c = 0u; c < 4u && col + c < kEnd; c++) {
        v[c] = x[e + c];
      }
    }
  }
  return v;
}

// W[row, col..col+3] decoded, zeros past N or past kEnd.
fn w_quad(row: u32, col: u32, kEnd: u32) -> vec4<f32> {
  var v = vec4(0.0);
  if (row < params.n && col < kEnd) {
    let e = row * params.k + col;
    if (K_ALIGNED && W_DTYPE == 0u) {
      v = bitcast<vec4<f32>>(wQuads[e / 4u]);
    } else if (K_ALIGNED) {
      // e is a multiple of 4: elements e, e+1 are the halves of one word, e+2, e+3 of the next.
      let p = wPairs[e / 4u];
      v = bitcast<vec4<f32>>(vec4(packed_bits(p.x, 0u, W_DTYPE), packed_bits(p.x, 1u, W_DTYPE),
                                  packed_bits(p.y, 0u, W_DTYPE), packed_bits(p.y, 1u, W_DTYPE)));
    } else {
      for (var c = 0u; c < 4u && col + c < kEnd; c++) {
        v[c] = weight_at(e + c);
      }
    }
  }
  return v;
}

fn tile_product(row0: u32, col0: u32, kBegin: u32, kEnd: u32, lid: vec3<u32>) -> array<vec4<f32>, 16> {
  let thread = lid.y * 8u + lid.x;
  // Slabs: 4 threads per row, each loading one quad of DEPTH consecutive k; x has TILE_M rows
  // (4 quads per thread), W 64 (W_QUADS_PER_THREAD).
  var xNext: array<vec4<f32>, 4>;
  var wNext: array<vec4<f32>, MAX_W_QUADS>;
  for (var j = 0u; j < 4u; j++) {
    let q = thread + TILE_M * j;
    xNext[j] = x_quad(row0 + q / 4u, kBegin + 4u * (q % 4u), kEnd);
  }
  for (var j = 0u; j < W_QUADS_PER_THREAD; j++) {
    let q = thread + TILE_M * j;
    wNext[j] = w_quad(col0 + q / 4u, kBegin + 4u * (q % 4u), kEnd);
  }
  var acc: array<vec4<f32>, 16>;

  for (var k0 = kBegin; k0 < kEnd; k0 += DEPTH) {
    // Transposed stores: slab row d holds k0 + d of 4 consecutive rows per vec4.
    for (var j = 0u; j < 4u; j++) {
      let q = thread + TILE_M * j;
      let r = q / 4u;
      for (var c = 0u; c < 4u; c++) {
        tileX[(4u * (q % 4u) + c) * X_STRIDE + r / 4u][r % 4u] = xNext[j][c];
      }
    }
    for (var j = 0u; j < W_QUADS_PER_THREAD; j++) {
      let q = thread + TILE_M * j;
      let r = q / 4u;
      for (var c = 0u; c < 4u; c++) {
        tileW[(4u * (q % 4u) + c) * W_STRIDE + r / 4u][r % 4u] = wNext[j][c];
      }
    }
    workgroupBarrier();
    // The next slab's loads are issued before the math, so they arrive while it runs.
    let kNext = k0 + DEPTH;
    if (kNext < kEnd) {
      for (var j = 0u; j < 4u; j++) {
        let q = thread + TILE_M * j;
        xNext[j] = x_quad(row0 + q / 4u, kNext + 4u * (q % 4u), kEnd);
      }
      for (var j = 0u; j < W_QUADS_PER_THREAD; j++) {
        let q = thread + TILE_M * j;
        wNext[j] = w_quad(col0 + q / 4u, kNext + 4u * (q % 4u), kEnd);
      }
    }
    for (var d = 0u; d < DEPTH; d++) {
      let a0 = tileX[d * X_STRIDE + lid.y];
      let a1 = tileX[d * X_STRIDE + lid.y + TILE_M / 8u];
      let b0 = tileW[d * W_STRIDE + lid.x];
      let b1 = tileW[d * W_STRIDE + lid.x + 8u];
      for (var i = 0u; i < 4u; i++) {
        acc[2u * i] = fma(vec4(a0[i]), b0, acc[2u * i]);
        acc[2u * i + 1u] = fma(vec4(a0[i]), b1, acc[2u * i + 1u]);
        acc[8u + 2u * i] = fma(vec4(a1[i]), b0, acc[8u + 2u * i]);
        acc[9u + 2u * i] = fma(vec4(a1[i]), b1, acc[9u + 2u * i]);
      }
    }
    workgroupBarrier();
  }

  return acc;
}
