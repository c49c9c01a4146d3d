// rmsnorm.wgsl: y = x / sqrt(mean(x²) + eps) · w over the last axis (Llama / Qwen2 RMSNorm).
//
// Shapes (row-major): x (R, H) f32, w (H) f32, f16 or bf16 (W_DTYPE override constant; 16-bit
// values packed two per u32 word, decoded exactly), y (R, H) f32. y must not alias x.
// Grid: one workgroup of 256 threads per row, (groupsX, ceil(R / groupsX)) workgroups so that R
// may exceed the 65,535 limit of one dimension. Each thread sums x² over a stride of the row in
// f32 (fma), a tree in workgroup memory adds the 256 partial sums, and every thread then writes
// its stride of y as (x · inverseSqrt(mean + eps)) · w, the order Hugging Face multiplies in.
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

var<workgroup> partial: array<f32, WG>;

//!include packed16.wgsl

fn weight_at(e: u32) -> f32 {
  return bitcast<f32>(packed_bits(w[packed_word(e, W_DTYPE)], e, W_DTYPE));
}

@compute @workgroup_size(WG)
fn rmsnorm_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * params.groupsX;
  if (row >= params.rows) {
    return;
  }
  let base = row * params.h;
  var s = 0.0;
  for (var i = lid; i < params.h; i += WG) {
    let v = x[base + i];
    s = fma(v, v, s);
  }
  partial[lid] = s;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lid < stride) {
      partial[lid] += partial[lid + stride];
    }
    workgroupBarrier();
  }
  let scale = inverseSqrt(partial[0] / f32(params.h) + params.eps);
  for (var i = lid; i < params.h; i += WG) {
    y[base + i] = (x[base + i] * scale) * weight_at(i);
  }
}
