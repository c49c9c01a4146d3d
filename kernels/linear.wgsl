// linear.wgsl: y = x · Wᵀ + b (PyTorch / Hugging Face nn.Linear), f32 accumulation.
//
// Shapes (row-major, any sizes; edges are masked): x (M, K) f32, W (N, K) as nn.Linear stores it,
// optional bias b (N), y (M, N) f32. W and b are f32, f16 or bf16 (W_DTYPE, B_DTYPE override
// constants); 16-bit values are packed two per u32 word as in a safetensors file (element 2j in
// the low half), so when K is odd a row of W starts in the high half of a word: elements are
// addressed individually (word e >> 1, half e & 1), never as pairs. Decoding is exact integer
// arithmetic (bf16 = bits << 16; f16 rebuilt field by field, subnormals included).
// Grid: (ceil(N / 64), ceil(M / 64)) workgroups of 16 × 16 threads. Each workgroup stages 64 × 16
// tiles of x and of W (K-major, like matmul.wgsl's tiles of A and B) in workgroup memory, decoded
// to f32 once per element; each thread accumulates a 4 × 4 block of y in f32 registers and adds
// the bias when it writes. Shapes travel in the uniform, so one pipeline per dtype pair serves
// every shape.
// Reference: referenceLinear in src/ops/linear.ts (float64 over the decoded values).

struct Params {
  m: u32,
  n: u32,
  k: u32,
  _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;      // f32 bits, or packed 16-bit pairs
@group(0) @binding(3) var<storage, read> bias: array<u32>;   // likewise; a placeholder when B_DTYPE = 3
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

override W_DTYPE: u32 = 0u;   // 0 = f32, 1 = f16, 2 = bf16
override B_DTYPE: u32 = 3u;   // as W_DTYPE, or 3 = no bias

const TILE: u32 = 64u;
const DEPTH: u32 = 16u;

var<workgroup> tileX: array<array<f32, TILE>, DEPTH>;   // [k][row of x]
var<workgroup> tileW: array<array<f32, TILE>, DEPTH>;   // [k][row of W = column of y]

//!include packed16.wgsl

fn weight_at(e: u32) -> f32 {
  return bitcast<f32>(packed_bits(w[packed_word(e, W_DTYPE)], e, W_DTYPE));
}

fn bias_at(e: u32) -> f32 {
  if (B_DTYPE == 3u) {
    return 0.0;
  }
  return bitcast<f32>(packed_bits(bias[packed_word(e, B_DTYPE)], e, B_DTYPE));
}

@compute @workgroup_size(16, 16)
fn linear_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row0 = wid.y * TILE;
  let col0 = wid.x * TILE;
  let thread = lid.y * 16u + lid.x;
  var acc: array<vec4<f32>, 4>;

  for (var k0 = 0u; k0 < params.k; k0 += DEPTH) {
    // 4 elements of each tile per thread; consecutive threads read consecutive k of one row.
    for (var j = 0u; j < 4u; j++) {
      let i = thread + 256u * j;
      let r = i / DEPTH;
      let kk = i % DEPTH;
      let kg = k0 + kk;
      var vx = 0.0;
      if (row0 + r < params.m && kg < params.k) {
        vx = x[(row0 + r) * params.k + kg];
      }
      tileX[kk][r] = vx;
      var vw = 0.0;
      if (col0 + r < params.n && kg < params.k) {
        vw = weight_at((col0 + r) * params.k + kg);
      }
      tileW[kk][r] = vw;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < DEPTH; kk++) {
      let wv = vec4(tileW[kk][lid.x * 4u], tileW[kk][lid.x * 4u + 1u], tileW[kk][lid.x * 4u + 2u], tileW[kk][lid.x * 4u + 3u]);
      for (var i = 0u; i < 4u; i++) {
        acc[i] = fma(vec4(tileX[kk][lid.y * 4u + i]), wv, acc[i]);
      }
    }
    workgroupBarrier();
  }

  for (var j = 0u; j < 4u; j++) {
    let col = col0 + lid.x * 4u + j;
    if (col >= params.n) {
      break;
    }
    let b = bias_at(col);
    for (var i = 0u; i < 4u; i++) {
      let r = row0 + lid.y * 4u + i;
      if (r < params.m) {
        y[r * params.n + col] = acc[i][j] + b;
      }
    }
  }
}
