// embedding.wgsl: out[t] = table[ids[t]], a row gather from an embedding table.
//
// Shapes (row-major): ids (T) u32, table (V, H) (or its window of rows) f32, f16 or bf16 (T_DTYPE override constant;
// 16-bit values packed two per u32 word, so when H is odd a row starts mid-word: elements are
// addressed individually), out (T, H) f32. An id ≥ V writes a row of NaN (the host API refuses
// such ids before they reach the GPU; a GPU-side id buffer is not checked elsewhere).
// Values move as bits: f32 rows are copied bit for bit, bf16 widened (bits << 16), f16 rebuilt
// field by field (exact, subnormals and specials included), so no float arithmetic touches them.
// The table may come in row windows (src/ops/split.ts: one larger than a storage binding): one
// dispatch per window, binding only rows [firstRow, firstRow + windowRows); a token whose id is
// in another window is left for that window's dispatch, and ids ≥ V go to the last window.
// Grid: one workgroup of 256 threads per token, (groupsX, ceil(T / groupsX)) workgroups so that
// T may exceed the 65,535 limit of one dimension; threads stride over the row.
// Reference: referenceEmbedding in src/ops/embedding.ts.

struct Params {
  tokens: u32,
  h: u32,
  vocab: u32,
  groupsX: u32,
  firstRow: u32,     // this window's rows of the table: [firstRow, firstRow + windowRows)
  windowRows: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;   // f32 bits, or packed 16-bit pairs
@group(0) @binding(3) var<storage, read_write> out: array<u32>;   // f32 bits

override T_DTYPE: u32 = 0u;   // 0 = f32, 1 = f16, 2 = bf16

const WG: u32 = 256u;
const NAN_BITS: u32 = 0x7fc00000u;

//!include packed16.wgsl

fn element_bits(e: u32) -> u32 {
  return packed_bits(table[packed_word(e, T_DTYPE)], e, T_DTYPE);
}

@compute @workgroup_size(WG)
fn embedding_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = wid.x + wid.y * params.groupsX;
  if (t >= params.tokens) {
    return;
  }
  let id = ids[t];
  let valid = id < params.vocab;
  let windowEnd = params.firstRow + params.windowRows;
  if (id < params.firstRow || (valid && id >= windowEnd) || (!valid && windowEnd != params.vocab)) {
    return;
  }
  let src = select(0u, (id - params.firstRow) * params.h, valid);
  let dst = t * params.h;
  for (var i = lid; i < params.h; i += WG) {
    var bits = NAN_BITS;
    if (valid) {
      bits = element_bits(src + i);
    }
    out[dst + i] = bits;
  }
}
