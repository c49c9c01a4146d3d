// attention_decode.wgsl: one new query per sequence against its key/value cache (decoding),
// flash-decoding style inside one workgroup (one online-softmax correction per key tile).
// Shapes (f32): q (B, Hq, D); kCache, vCache (B, maxLen, Hkv, D); lengths (B) u32 = keys to
// attend to (the new token's position + 1, clamped to maxLen); out (B, Hq, D); D ≤ 256.
//   out[b,h,:] = Σ_{s < lengths[b]} softmax_s(q·k_s / √D) v_s, with k/v head h / (Hq / Hkv);
//   an empty sequence (length 0) gets zeros.
// Grid: (Hq, B) workgroups of THREADS = 32 threads (one NVIDIA warp). q lands in workgroup memory
// (zero-padded vec4s). Keys go in tiles of 32; per tile:
//   1. scores: thread i computes key (tile start + i)'s score q·k · log2(e)/√D (base 2), a full dot
//      product over D (16-byte loads of its key row when D is a multiple of 4);
//   2. softmax: every thread takes the tile's max from workgroup memory (the same order, so the
//      same value everywhere), updates the running max m once, and writes its key's
//      p = exp2(score − m) (0 past the length);
//   3. p·V: thread i scales its accumulator by exp2(m_old − m) and adds p · v over the tile's keys
//      for its output columns d = i + 32·j, j < 8 (two vec4 registers: D ≤ 256); for each key the
//      32 threads read 32 consecutive floats of its value row (coalesced). The normaliser l is
//      summed the same way.
// At the end out = acc / l. Every sum has a fixed order: no atomics, no dependence on timing.
// Reference: referenceAttention on the cached rows, last query (src/ops/attention.ts, float64).

struct Params {
  heads: u32,     // Hq
  kvHeads: u32,   // Hkv
  headDim: u32,   // D
  maxLen: u32,
  qScale: f32,    // log2(e) / sqrt(D): scores come out in base 2
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kCache: array<f32>;
@group(0) @binding(3) var<storage, read> vCache: array<f32>;
@group(0) @binding(4) var<storage, read> lengths: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
// kCache again as vec4s: one 16-byte load per vec4 of a key row when D is a multiple of 4. V needs
// no such view: its loads are one float per thread over consecutive columns, coalesced already.
@group(0) @binding(6) var<storage, read> k4s: array<vec4<f32>>;

const THREADS: u32 = 32u;      // workgroup size = keys per tile
const MAX_DIM4: u32 = 64u;     // vec4s of the largest head (256)
const NEG: f32 = -3.0e38;      // "no score yet": finite, so exp2(NEG − m) = 0, never NaN

var<workgroup> tileQ: array<vec4<f32>, MAX_DIM4>;    // q, zeros past D
var<workgroup> tileScore: array<f32, THREADS>;       // key (tile start + i)'s score, NEG past the length
var<workgroup> tileP: array<f32, THREADS>;           // exp2(score − m), 0 past the length

// Elements at .. at + 3 of a key row with `valid` elements left (zeros past them); D is not a
// multiple of 4 here, so scalar loads.
fn kPart(at: u32, valid: u32) -> vec4<f32> {
  if (valid >= 4u) {
    return vec4<f32>(kCache[at], kCache[at + 1u], kCache[at + 2u], kCache[at + 3u]);
  }
  var r = vec4<f32>(0.0);
  if (valid > 0u) { r.x = kCache[at]; }
  if (valid > 1u) { r.y = kCache[at + 1u]; }
  if (valid > 2u) { r.z = kCache[at + 2u]; }
  return r;
}

// q·k for the key row starting at element kBase, over four interleaved partial sums.
fn dotKey(kBase: u32) -> f32 {
  let D = params.headDim;
  var s = vec4<f32>(0.0);
  if (D % 4u == 0u) {
    let k4Base = kBase / 4u;
    for (var c = 0u; c < D / 4u; c++) {
      s = fma(tileQ[c], k4s[k4Base + c], s);
    }
  } else {
    for (var d = 0u; d < D; d += 4u) {
      s = fma(tileQ[d / 4u], kPart(kBase + d, D - d), s);
    }
  }
  return (s.x + s.y) + (s.z + s.w);
}

// Columns c.x .. c.w of the value row starting at vBase; zeros for columns at or past D.
fn vCols(vBase: u32, c: vec4<u32>) -> vec4<f32> {
  let D = params.headDim;
  var r = vec4<f32>(0.0);
  if (c.x < D) { r.x = vCache[vBase + c.x]; }
  if (c.y < D) { r.y = vCache[vBase + c.y]; }
  if (c.z < D) { r.z = vCache[vBase + c.z]; }
  if (c.w < D) { r.w = vCache[vBase + c.w]; }
  return r;
}

fn storeCols(at: u32, c: vec4<u32>, x: vec4<f32>) {
  let D = params.headDim;
  if (c.x < D) { out[at + c.x] = x.x; }
  if (c.y < D) { out[at + c.y] = x.y; }
  if (c.z < D) { out[at + c.z] = x.z; }
  if (c.w < D) { out[at + c.w] = x.w; }
}

@compute @workgroup_size(32)
fn attention_decode_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let b = wid.y;
  let D = params.headDim;
  let kvh = h / (params.heads / params.kvHeads);
  let len = min(lengths[b], params.maxLen);
  let qBase = (b * params.heads + h) * D;
  let kvStep = params.kvHeads * D;                       // elements between keys in the caches
  let kvBase = b * params.maxLen * kvStep + kvh * D;     // key 0 of this sequence and head

  for (var c = lid; c < MAX_DIM4; c += THREADS) {
    var x = vec4<f32>(0.0);
    let d = 4u * c;
    if (d < D) { x.x = q[qBase + d]; }
    if (d + 1u < D) { x.y = q[qBase + d + 1u]; }
    if (d + 2u < D) { x.z = q[qBase + d + 2u]; }
    if (d + 3u < D) { x.w = q[qBase + d + 3u]; }
    tileQ[c] = x;
  }
  workgroupBarrier();

  // This thread's output columns: lid + 32·j, j < 4 (lo) and 4 ≤ j < 8 (hi, only for D > 128).
  let colsLo = vec4<u32>(lid, lid + 32u, lid + 64u, lid + 96u);
  let colsHi = colsLo + vec4<u32>(128u);
  let wide = D > 128u;
  var accLo = vec4<f32>(0.0);
  var accHi = vec4<f32>(0.0);
  var m = NEG;
  var l = 0.0;
  for (var first = 0u; first < len; first += THREADS) {
    let key = first + lid;
    let live = key < len;
    var score = NEG;
    if (live) {
      score = dotKey(kvBase + key * kvStep) * params.qScale;
    }
    tileScore[lid] = score;
    workgroupBarrier();

    var tileMax = NEG;
    for (var i = 0u; i < THREADS; i++) {
      tileMax = max(tileMax, tileScore[i]);
    }
    let mNew = max(m, tileMax);
    let correction = exp2(m - mNew);
    m = mNew;
    tileP[lid] = select(0.0, exp2(score - mNew), live);
    // Scores are all read before this barrier, so the next tile may overwrite them; tileP is read
    // until the next tile's first barrier, which every thread passes only when done with it.
    workgroupBarrier();

    let keys = min(THREADS, len - first);
    var tileL = 0.0;
    accLo *= correction;
    accHi *= correction;
    for (var i = 0u; i < keys; i++) {
      let p = tileP[i];
      tileL += p;
      let vBase = kvBase + (first + i) * kvStep;
      accLo = fma(vec4<f32>(p), vCols(vBase, colsLo), accLo);
      if (wide) {
        accHi = fma(vec4<f32>(p), vCols(vBase, colsHi), accHi);
      }
    }
    l = l * correction + tileL;
  }

  let some = l > 0.0;
  storeCols(qBase, colsLo, select(vec4<f32>(0.0), accLo / l, some));
  storeCols(qBase, colsHi, select(vec4<f32>(0.0), accHi / l, some));
}
