// rmsnorm.wgsl: y = x / sqrt(mean(x²) + eps) · w over the last axis (Llama / Qwen2 RMSNorm).
//
// Shapes (row-major): x (R, H) f32, w (H) f32, f16 or bf16 (W_DTYPE override constant; 16-bit
// values packed two per u32 word, decoded exactly), y (R, H) f32. y must not alias x.
// Grid: workgroups of 256 threads, each on ROWS_PER_WG = 256 / LANES rows with LANES threads per
// row (an override: 32, or more for long rows, so that a lane sums at most 64 columns; hidden
// 896: 32 lanes, 8 rows), (groupsX, ceil(ceil(R / ROWS_PER_WG) / groupsX)) workgroups so that R
// may exceed one grid dimension. Lane l sums x² over columns l, l + LANES, … of its row in f32
// (fma; the lanes read consecutive words), a tree in workgroup memory adds the lane sums of every
// row at once (5 barriers for 8 rows), and each lane then writes its columns of y as
// (x · inverseSqrt(mean + eps)) · w, the order Hugging Face multiplies in.
// Reference: referenceRmsNorm in src/ops/rmsnorm.ts (float64).

struct Params {
  rows: u32,
  h: u32,
  groupsX: u32,
  eps: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;   // f32 bits, or packed 16-bit pairs
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

override W_DTYPE: u32 = 0u;   // 0 = f32, 1 = f16, 2 = bf16

const WG: u32 = 256u;
override LANES: u32 = 32u;   // 32 … 256, a power of two (src/ops/rmsnorm.ts rmsNormLanes)
override ROWS_PER_WG: u32 = WG / LANES;

var<workgroup> partial: array<f32, WG>;

//!include packed16.wgsl

fn weight_at(e: u32) -> f32 {
  return bitcast<f32>(packed_bits(w[packed_word(e, W_DTYPE)], e, W_DTYPE));
}

@compute @workgroup_size(WG)
fn rmsnorm_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let lane = lid % LANES;
  let row = (wid.x + wid.y * params.groupsX) * ROWS_PER_WG + lid / LANES;
  // Rows past R still take part in the barriers, with no columns.
  let h = select(0u, params.h, row < params.rows);
  let base = row * params.h;
  var s = 0.0;
  for (var i = lane; i < h; i += LANES) {
    let v = x[base + i];
    s = fma(v, v, s);
  }
  partial[lid] = s;
  workgroupBarrier();
  for (var stride = LANES / 2u; stride > 0u; stride >>= 1u) {
    if (lane < stride) {
      partial[lid] += partial[lid + stride];
    }
    workgroupBarrier();
  }
  let scale = inverseSqrt(partial[lid - lane] / f32(params.h) + params.eps);
  for (var i = lane; i < h; i += LANES) {
    y[base + i] = (x[base + i] * scale) * weight_at(i);
  }
}
