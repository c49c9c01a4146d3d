// embedding.wgsl: out[t] = table[ids[t]], a row gather from an embedding table.
//
// Shapes (row-major): ids (T) u32, table (V, H) f32, f16 or bf16 (T_DTYPE override constant;
// 16-bit values packed two per u32 word, so when H is odd a row starts mid-word: elements are
// addressed individually), out (T, H) f32. An id ≥ V writes a row of NaN (the host API refuses
// such ids before they reach the GPU; a GPU-side id buffer is not checked elsewhere).
// Values move as bits: f32 rows are copied bit for bit, bf16 widened (bits << 16), f16 rebuilt
// field by field (exact, subnormals and specials included), so no float arithmetic touches them.
// Grid: one workgroup of 256 threads per token, (groupsX, ceil(T / groupsX)) workgroups so that
// T may exceed the 65,535 limit of one dimension; threads stride over the row.
// Reference: referenceEmbedding in src/ops/embedding.ts.

struct Params {
  tokens: u32,
  h: u32,
  vocab: u32,
  groupsX: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;   // f32 bits, or packed 16-bit pairs
@group(0) @binding(3) var<storage, read_write> out: array<u32>;   // f32 bits

override T_DTYPE: u32 = 0u;   // 0 = f32, 1 = f16, 2 = bf16

const WG: u32 = 256u;
const NAN_BITS: u32 = 0x7fc00000u;

// f16 bits (low 16 bits of h) to f32 bits, exactly.
fn f16_to_f32_bits(h: u32) -> u32 {
  let sign = (h & 0x8000u) << 16u;
  let exponent = (h >> 10u) & 0x1fu;
  let mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) {
    return sign | 0x7f800000u | (mantissa << 13u);
  }
  if (exponent == 0u) {
    return sign | bitcast<u32>(f32(mantissa) * 5.9604644775390625e-8);   // mantissa · 2^-24
  }
  return sign | ((exponent + 112u) << 23u) | (mantissa << 13u);
}

fn element_bits(e: u32) -> u32 {
  if (T_DTYPE == 0u) {
    return table[e];
  }
  let h = (table[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu;
  if (T_DTYPE == 2u) {
    return h << 16u;
  }
  return f16_to_f32_bits(h);
}

@compute @workgroup_size(WG)
fn embedding_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x + wid.y * params.groupsX;
  if (t >= params.tokens) {
    return;
  }
  let id = ids[t];
  let valid = id < params.vocab;
  let src = select(0u, id * params.h, valid);
  let dst = t * params.h;
  for (var i = lid; i < params.h; i += WG) {
    var bits = NAN_BITS;
    if (valid) {
      bits = element_bits(src + i);
    }
    out[dst + i] = bits;
  }
}
