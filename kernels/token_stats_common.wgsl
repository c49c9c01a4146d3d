// token_stats_common.wgsl: shared pieces of the token-statistics kernels (included by
// token_stats_forward.wgsl and token_stats_backward.wgsl through `//!include`).
//
// Logits are read from a window of the (N, V) row-major logits buffer, bound twice: as
// array<vec4<u32>> for the aligned body of each work item (one 16-byte load = 4 f32 or 8
// f16/bf16 elements, a "unit") and as array<u32> for the few unaligned head/tail elements.
// 16-bit values are decoded from packed words: WGSL has no bf16 and NVIDIA adapters expose no
// shader-f16. Special values are classified from bit patterns, never with float compares: WGSL
// implementations may assume floats are finite.
//
// Work items: row r of V elements is cut into CHUNKS_PER_ROW chunks of CHUNK_LEN elements;
// item g = r * chunksPerRow + k. One workgroup handles one item. A dispatch covers the items
// [firstItem, firstItem + itemCount) whose elements all lie inside its bound window.

//!include token_stats_online.wgsl

override DTYPE: u32 = 0u;      // 0 = f32, 1 = f16, 2 = bf16
override WG: u32 = 256u;       // threads per workgroup
const DTYPE_F32: u32 = 0u;
const DTYPE_F16: u32 = 1u;
const DTYPE_BF16: u32 = 2u;
override UNIT: u32 = select(8u, 4u, DTYPE == DTYPE_F32);      // elements per 16-byte load
override GROUPS: u32 = select(2u, 1u, DTYPE == DTYPE_F32);    // 4-element groups per load

struct Params {
  vocab: u32,
  chunkLen: u32,
  chunksPerRow: u32,
  firstItem: u32,
  itemCount: u32,
  firstItemOffset: u32,   // window element index where item `firstItem` starts
  groupsX: u32,           // workgroups along x (a dispatch is 2-D past 65,535 items)
  flags: u32,             // bit 0: ids given; bit 1: gLogprob given; bit 2: gSelfCertainty given
  invTemperature: f32,
}

// Four consecutive elements in memory order, unscaled, with their class.
struct Group {
  z: vec4<f32>,
  special: vec4<bool>,   // NaN, +inf or -inf
  negInf: vec4<bool>,    // -inf: masked vocabulary entry
}

struct Item {
  index: u32,     // global item g
  row: u32,
  chunk: u32,
  start: u32,     // window element index of the item's first element
  len: u32,
  colStart: u32,  // column (index within the row) of the item's first element
}

fn item_of(wid: vec3<u32>) -> Item {
  var it: Item;
  it.index = params.firstItem + wid.x + wid.y * params.groupsX;
  it.row = it.index / params.chunksPerRow;
  it.chunk = it.index % params.chunksPerRow;
  let row0 = params.firstItem / params.chunksPerRow;
  let chunk0 = params.firstItem % params.chunksPerRow;
  it.colStart = it.chunk * params.chunkLen;
  it.start = params.firstItemOffset + (it.row - row0) * params.vocab + it.colStart - chunk0 * params.chunkLen;
  it.len = min(params.chunkLen, params.vocab - it.colStart);
  return it;
}

fn in_dispatch(wid: vec3<u32>) -> bool {
  return wid.x + wid.y * params.groupsX < params.itemCount;
}

fn group_from_bits(bits: vec4<u32>) -> Group {
  var g: Group;
  g.z = bitcast<vec4<f32>>(bits);
  g.special = (bits & vec4(0x7f800000u)) == vec4(0x7f800000u);
  g.negInf = bits == vec4(NEG_INF_BITS);
  return g;
}

fn group_from_halves(w0: u32, w1: u32) -> Group {
  if (DTYPE == DTYPE_BF16) {
    return group_from_bits(vec4(w0 << 16u, w0 & 0xffff0000u, w1 << 16u, w1 & 0xffff0000u));
  }
  var g: Group;
  let h = vec4(w0 & 0xffffu, w0 >> 16u, w1 & 0xffffu, w1 >> 16u);
  g.z = vec4(unpack2x16float(w0), unpack2x16float(w1));
  g.special = (h & vec4(0x7c00u)) == vec4(0x7c00u);
  g.negInf = h == vec4(0xfc00u);
  return g;
}

// The four values of group `half` (0 or 1) of a 16-byte load, without classification: the hot
// loops check a group's sum instead (inf/NaN anywhere makes the sum's exponent all ones) and
// only classify groups that fail the check.
fn unit_values(v: vec4<u32>, half: u32) -> vec4<f32> {
  if (DTYPE == DTYPE_F32) {
    return bitcast<vec4<f32>>(v);
  }
  let w = select(v.xy, v.zw, half == 1u);
  if (DTYPE == DTYPE_BF16) {
    return bitcast<vec4<f32>>(vec4(w.x << 16u, w.x & 0xffff0000u, w.y << 16u, w.y & 0xffff0000u));
  }
  return vec4(unpack2x16float(w.x), unpack2x16float(w.y));
}

// True when a group may hold NaN or ±inf (or finite values whose sum overflows): classify it.
fn needs_classification(groupSum: f32) -> bool {
  return is_special(bitcast<u32>(groupSum));
}

// Group `half` (0 or 1) of a 16-byte load, classified from bit patterns.
fn unit_group(v: vec4<u32>, half: u32) -> Group {
  if (DTYPE == DTYPE_F32) {
    return group_from_bits(v);
  }
  let w = select(v.xy, v.zw, half == 1u);
  return group_from_halves(w.x, w.y);
}

// Raw bits of one element, widened to f32 bits (f16 is converted; its specials are mapped to
// the f32 patterns so one classification serves all dtypes).
fn element_bits(e: u32) -> u32 {
  if (DTYPE == DTYPE_F32) {
    return logitsWords[e];
  }
  let h = (logitsWords[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu;
  if (DTYPE == DTYPE_BF16) {
    return h << 16u;
  }
  if ((h & 0x7c00u) == 0x7c00u) {
    return select(NAN_BITS, ((h & 0x8000u) << 16u) | 0x7f800000u, (h & 0x3ffu) == 0u);
  }
  return bitcast<u32>(unpack2x16float(h).x);
}

// The item's elements split into an unaligned head [start, bodyStart), whole units
// [bodyStart, bodyEnd) and an unaligned tail [bodyEnd, start + len).
struct Span {
  bodyStart: u32,
  bodyEnd: u32,
  end: u32,
}

fn span_of(it: Item) -> Span {
  var sp: Span;
  sp.end = it.start + it.len;
  sp.bodyStart = min((it.start + UNIT - 1u) / UNIT * UNIT, sp.end);
  sp.bodyEnd = max(sp.end / UNIT * UNIT, sp.bodyStart);
  return sp;
}

// Element handled by thread `lid` outside the body (head first, then tail), or `sp.end`.
fn edge_element(it: Item, sp: Span, lid: u32) -> u32 {
  let headLen = sp.bodyStart - it.start;
  if (lid < headLen) {
    return it.start + lid;
  }
  let t = sp.bodyEnd + (lid - headLen);
  return select(sp.end, t, t < sp.end);
}
