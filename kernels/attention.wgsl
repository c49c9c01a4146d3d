// attention.wgsl: causal multi-head attention with grouped key/value heads, flash-style
// (FlashAttention-2 on plain f32 SIMT: register tiles, one online-softmax correction per key tile).
//
// Shapes (f32, row-major): q (B, T, Hq, D), k and v (B, T, Hkv, D), out (B, T, Hq, D), lse (B, Hq, T);
// lengths (B) u32: sequence b holds tokens 0 .. lengths[b) − 1 (the rest is padding).
// Query head h reads key/value head h / (Hq / Hkv) (GQA). Query t attends to keys 0..t.
//   out[b,t,h,:] = Σ_s softmax_s(scale · q·k_s) v_s,  lse[b,h,t] = log Σ_s e^{scale · q·k_s}
// Padding queries (t ≥ length) get zeros and lse = 0.
//
// One pipeline per head-size class DIM_CLASS (override: 64, 128 or 256; D ≤ DIM_CLASS, zero-padded
// in workgroup memory), so every per-thread tile below has a constant size and lives in registers.
// A workgroup of THREADS threads owns BQ = 64 · THREADS / DIM_CLASS query ROWS (each thread ends
// with 8 rows × 8 output columns). Rows are (token, head) pairs of the P = params.packedHeads query
// heads h0 .. h0 + P − 1 that share one key/value head: packed row R is token R / P of head
// h0 + R % P. P = 1 is one head per workgroup; P = Hq / Hkv ("GQA packing") stages each K/V tile
// once for a whole GQA group and shrinks the causal diagonal a tile straddles to BQ / P tokens.
// Grid (ceil(P · T / BQ), Hq / P, B), or with TILE_MAJOR (Hq / P, B, ceil(P · T / BQ)); the last
// row tiles (the longest) first: workgroups start in grid order with x fastest, so only
// TILE_MAJOR starts the longest tiles of EVERY head and sequence first (else a late head's long
// tiles start in the last wave and leave most of the GPU idle at the end). A workgroup streams
// tiles of BK keys from key 0 to its last live row's token, so tiles wholly above the diagonal are
// never touched and no T×T matrix exists anywhere. Per key tile:
//   1. K (and V too where KV_TOGETHER) lands in workgroup memory as padded vec4 rows;
//   2. scores: thread (part, row group, key group) computes a 4-row × SCORE_KEYS-key register
//      tile of (q · scale · log2 e) · k over the head-size vec4s ≡ part (mod PARTS);
//   3. softmax: thread i < BQ owns row i: it adds the row's partial scores in part order and keeps
//      the running max m and sum l (base 2). One correction exp2(m_old − m_new) per row per tile;
//      p = exp2(s − m_new) (0 above the diagonal and for padding rows) replaces the scores.
//      V lands here (over K) unless KV_TOGETHER;
//   4. p·V: thread (row group, column group) holds an 8-row × 8-column accumulator (16 vec4),
//      scales it by its rows' corrections and adds p · V over the tile's keys.
// With PREFETCH (and D a multiple of 4; other D stage as without it), each thread's share of V is
// loaded from global memory into registers before step 2 and of the next tile's K before step 4,
// and only written to workgroup memory after the following barrier, so global latency hides
// behind the FMAs instead of stalling a barrier.
// At the end out = acc / l and lse = (m + log2 l) · ln 2.
// Configurations (src/ops/attention.ts picks them; every one ≤ 32 KiB of workgroup memory):
//   D ≤ 64  q64k16-classic: 64 threads, BQ 64, BK 16, P 1, K and V staged together (30.75 KiB);
//           q64k16-packed: the same with GQA packing and TILE_MAJOR;
//           q64k16: 64 threads, BQ 64, BK 16, GQA packing, TILE_MAJOR, PREFETCH (26.5 KiB);
//           q32k16: 32 threads (one NVIDIA warp: barriers never wait for another warp), BQ 32,
//                   BK 16, GQA packing, TILE_MAJOR, PREFETCH (15.4 KiB);
//           q32k32: 32 threads, BQ 32, BK 32, 4 × 8 score tiles (half the barriers and softmax
//                   passes per key), GQA packing, TILE_MAJOR (21.6 KiB);
//           q32k16-s8: q32k16 with 4 × 8 score tiles, PARTS 2 (17.9 KiB);
//           q32k8: q32k16 with BK 8, PARTS 2 (13.8 KiB);
//   D ≤ 128: 64 threads, BQ 32, BK 16, P 1, PARTS 2, K then V (29.9 KiB);
//   D ≤ 256: 64 threads, BQ 16, BK 8, P 1, PARTS 8, K then V (30.4 KiB).
// Rows are padded by one vec4 so that threads reading one column of consecutive rows hit different
// banks; threads of a warp reading the same element get a broadcast.
// Reference: referenceAttention in src/ops/attention.ts (float64).

struct Params {
  seqLen: u32,       // T
  heads: u32,        // Hq
  kvHeads: u32,      // Hkv
  headDim: u32,      // D
  qScale: f32,       // log2(e) / sqrt(D): scores come out in base 2
  packedHeads: u32,  // P: query heads per workgroup, 1 or Hq / Hkv
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> lengths: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;
// The same q, k, v buffers as vec4s: one 16-byte load per vec4 when D is a multiple of 4.
@group(0) @binding(7) var<storage, read> q4s: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> k4s: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> v4s: array<vec4<f32>>;

const LN2: f32 = 0.6931471805599453;
const NEG: f32 = -3.0e38;       // "no score yet": finite, so exp2(NEG − NEG) = 1, never NaN

override DIM_CLASS: u32 = 64u;
override THREADS: u32 = 64u;                              // workgroup size
override BK: u32 = select(16u, 8u, DIM_CLASS == 256u);    // keys per tile
override SCORE_KEYS: u32 = 4u;                            // keys of a thread's score tile: 4 or 8
override PREFETCH: bool = false;                          // K/V through registers, a phase ahead
override KV_TOGETHER: bool = false;                       // K and V staged at once (not with PREFETCH)
override TILE_MAJOR: bool = false;                        // row tiles along grid z (else x)
override DIM4: u32 = DIM_CLASS / 4u;                      // vec4s of a head row
override ROW: u32 = DIM4 + 1u;                            // padded row stride of Q, K, V (vec4)
override BQ: u32 = 16u * THREADS / DIM4;                  // rows per workgroup (8 × 8 outputs per thread)
override KG: u32 = BK / 4u;                               // key groups (keys g + KG·j, j < 4)
override RG: u32 = BQ / 4u;                               // score row groups (rows rg + RG·i)
override SKG: u32 = KG * 4u / SCORE_KEYS;                 // score threads along keys (groups kg, kg + SKG)
override PARTS: u32 = THREADS / (SKG * RG);               // threads sharing one score tile
override S_ROW: u32 = KG + 1u;                            // vec4 stride of a score row
override CG: u32 = DIM4 / 2u;                             // p·V column groups (vec4 columns cg, cg + CG)
override PV_RG: u32 = THREADS / CG;                       // p·V row groups (rows rg + PV_RG·i, i < 8)
override V_AT: u32 = select(0u, BK * ROW, KV_TOGETHER);   // where V's rows start in tileKV
override PF: u32 = BK * DIM4 / THREADS;                   // vec4s of one K or V tile per thread: 2, 4 or 8

var<workgroup> tileQ: array<vec4<f32>, BQ * ROW>;                               // q · qScale, row r at r · ROW
var<workgroup> tileKV: array<vec4<f32>, select(1u, 2u, KV_TOGETHER) * BK * ROW>; // key j at j · ROW, value j at V_AT + j · ROW
// Partial scores of (part, row r) at (part · BQ + r) · S_ROW + g, vec4 component j = key g + KG·j;
// the softmax leaves p there (part 0).
var<workgroup> tileS: array<vec4<f32>, PARTS * BQ * S_ROW>;
var<workgroup> rowScale: array<f32, BQ>;             // per row: correction, at the end 1 / l

// A thread's share of one K or V tile, in flight from global memory (PREFETCH): vec4 j is tile
// vec4 lid + THREADS · j; fields past PF stay unused.
struct Staged {
  x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
  x4: vec4<f32>, x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>,
}

// Elements at .. at + 3 of a row with `valid` elements left (zeros past them); `at` is a multiple
// of 4 when D is. One function per buffer: WGSL passes no storage pointers.
fn q4(at: u32, valid: u32) -> vec4<f32> {
  if (valid >= 4u) {
    if (params.headDim % 4u == 0u) { return q4s[at / 4u]; }
    return vec4<f32>(q[at], q[at + 1u], q[at + 2u], q[at + 3u]);
  }
  var r = vec4<f32>(0.0);
  if (valid > 0u) { r.x = q[at]; }
  if (valid > 1u) { r.y = q[at + 1u]; }
  if (valid > 2u) { r.z = q[at + 2u]; }
  return r;
}

fn k4(at: u32, valid: u32) -> vec4<f32> {
  if (valid >= 4u) {
    if (params.headDim % 4u == 0u) { return k4s[at / 4u]; }
    return vec4<f32>(k[at], k[at + 1u], k[at + 2u], k[at + 3u]);
  }
  var r = vec4<f32>(0.0);
  if (valid > 0u) { r.x = k[at]; }
  if (valid > 1u) { r.y = k[at + 1u]; }
  if (valid > 2u) { r.z = k[at + 2u]; }
  return r;
}

fn v4(at: u32, valid: u32) -> vec4<f32> {
  if (valid >= 4u) {
    if (params.headDim % 4u == 0u) { return v4s[at / 4u]; }
    return vec4<f32>(v[at], v[at + 1u], v[at + 2u], v[at + 3u]);
  }
  var r = vec4<f32>(0.0);
  if (valid > 0u) { r.x = v[at]; }
  if (valid > 1u) { r.y = v[at + 1u]; }
  if (valid > 2u) { r.z = v[at + 2u]; }
  return r;
}

fn store4(at: u32, valid: u32, x: vec4<f32>) {
  if (valid > 0u) { out[at] = x.x; }
  if (valid > 1u) { out[at + 1u] = x.y; }
  if (valid > 2u) { out[at + 2u] = x.z; }
  if (valid > 3u) { out[at + 3u] = x.w; }
}

// Elements left in a head row from element d on.
fn validFrom(d: u32) -> u32 {
  return select(0u, params.headDim - d, d < params.headDim);
}

// Offset in q and out of packed row R (token R / P of head h0 + R % P) from token 0 of head h0.
fn rowOffset(R: u32) -> u32 {
  let P = params.packedHeads;
  return ((R / P) * params.heads + R % P) * params.headDim;
}

// s + q·k over one vec4 of the head for four keys: component j of the result is key j's score.
fn score4(s: vec4<f32>, qx: vec4<f32>, kx: vec4<f32>, ky: vec4<f32>, kz: vec4<f32>, kw: vec4<f32>) -> vec4<f32> {
  return fma(vec4<f32>(qx.w), kw, fma(vec4<f32>(qx.z), kz, fma(vec4<f32>(qx.y), ky, fma(vec4<f32>(qx.x), kx, s))));
}

// acc + Σ_j p[j] · x_j: four keys' probabilities times their value vec4s.
fn pv4(acc: vec4<f32>, p: vec4<f32>, x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>) -> vec4<f32> {
  return fma(x3, vec4<f32>(p.w), fma(x2, vec4<f32>(p.z), fma(x1, vec4<f32>(p.y), fma(x0, vec4<f32>(p.x), acc))));
}

// Stages BK rows of k and/or v from key `first` on; rows at or past `len` are zeros (padding may
// hold anything).
fn stage(lid: u32, first: u32, len: u32, kvBase: u32, kvStep: u32, keys: bool, values: bool) {
  for (var i = lid; i < BK * DIM4; i += THREADS) {
    let key = i / DIM4;
    let d = 4u * (i % DIM4);
    let valid = select(0u, validFrom(d), first + key < len);
    let at = kvBase + (first + key) * kvStep + d;
    if (keys) { tileKV[key * ROW + d / 4u] = k4(at, valid); }
    if (values) { tileKV[V_AT + key * ROW + d / 4u] = v4(at, valid); }
  }
}

// Tile vec4 lid + THREADS · j of the K (or V) rows from key `first` on: zeros at or past `len`.
// D is a multiple of 4 here, so one 16-byte load; kept branch-free (PREFETCH inlines up to 24
// copies): the index is clamped into the buffer (rows past `len` may lie past it) and the value
// dropped when the row is not valid.
fn fetch1(values: bool, lid: u32, j: u32, first: u32, len: u32, kvBase: u32, kvStep: u32) -> vec4<f32> {
  let i = lid + THREADS * j;
  let key = first + i / DIM4;
  let d = 4u * (i % DIM4);
  let at = (kvBase + key * kvStep + d) / 4u;
  var x: vec4<f32>;
  if (values) { x = v4s[min(at, arrayLength(&v4s) - 1u)]; } else { x = k4s[min(at, arrayLength(&k4s) - 1u)]; }
  return select(vec4<f32>(0.0), x, key < len && d < params.headDim);
}

fn fetch(values: bool, lid: u32, first: u32, len: u32, kvBase: u32, kvStep: u32) -> Staged {
  var r: Staged;
  r.x0 = fetch1(values, lid, 0u, first, len, kvBase, kvStep);
  r.x1 = fetch1(values, lid, 1u, first, len, kvBase, kvStep);
  if (PF > 2u) {
    r.x2 = fetch1(values, lid, 2u, first, len, kvBase, kvStep);
    r.x3 = fetch1(values, lid, 3u, first, len, kvBase, kvStep);
  }
  if (PF > 4u) {
    r.x4 = fetch1(values, lid, 4u, first, len, kvBase, kvStep);
    r.x5 = fetch1(values, lid, 5u, first, len, kvBase, kvStep);
    r.x6 = fetch1(values, lid, 6u, first, len, kvBase, kvStep);
    r.x7 = fetch1(values, lid, 7u, first, len, kvBase, kvStep);
  }
  return r;
}

// Where tile vec4 lid + THREADS · j goes in tileKV.
fn slot(lid: u32, j: u32) -> u32 {
  let i = lid + THREADS * j;
  return (i / DIM4) * ROW + i % DIM4;
}

fn put(lid: u32, r: Staged) {
  tileKV[slot(lid, 0u)] = r.x0;
  tileKV[slot(lid, 1u)] = r.x1;
  if (PF > 2u) {
    tileKV[slot(lid, 2u)] = r.x2;
    tileKV[slot(lid, 3u)] = r.x3;
  }
  if (PF > 4u) {
    tileKV[slot(lid, 4u)] = r.x4;
    tileKV[slot(lid, 5u)] = r.x5;
    tileKV[slot(lid, 6u)] = r.x6;
    tileKV[slot(lid, 7u)] = r.x7;
  }
}

@compute @workgroup_size(THREADS)
fn attention_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  let T = params.seqLen;
  let D = params.headDim;
  let P = params.packedHeads;
  let tile = select(wid.x, wid.z, TILE_MAJOR);
  let tiles = select(groups.x, groups.z, TILE_MAJOR);
  let b = select(wid.z, wid.y, TILE_MAJOR);
  let h0 = select(wid.y, wid.x, TILE_MAJOR) * P;   // the workgroup's first query head
  let kvh = h0 / (params.heads / params.kvHeads);
  let len = min(lengths[b], T);
  let rows = P * T;                           // packed rows of the P heads
  let liveRows = P * len;                     // rows < liveRows are tokens < len
  let r0 = (tiles - 1u - tile) * BQ;          // the longest tiles first
  let kvStep = params.kvHeads * D;            // elements between tokens in k and v
  let qBase = b * T * params.heads * D + h0 * D;   // token 0 of head h0
  let kvBase = b * T * kvStep + kvh * D;

  for (var i = lid; i < BQ * DIM4; i += THREADS) {
    let row = i / DIM4;
    let d = 4u * (i % DIM4);
    let valid = select(0u, validFrom(d), r0 + row < liveRows);
    tileQ[row * ROW + d / 4u] = q4(qBase + rowOffset(r0 + row) + d, valid) * params.qScale;
  }

  // Score tile: rows sRow + RG·i, key groups sKey (and sKey + SKG), head vec4s part + PARTS·n.
  let sKey = lid % SKG;
  let sRow = (lid / SKG) % RG;
  let part = lid / (SKG * RG);
  // p·V tile: rows pvRow + PV_RG·i, vec4 columns col and col + CG.
  let col = lid % CG;
  let pvRow = lid / CG;
  // Softmax: this thread's row (lid < BQ), token R / P.
  let R = r0 + lid;
  let live = lid < BQ && R < liveRows;
  let visibleEnd = select(0u, R / P + 1u, live);  // keys < visibleEnd are attended to
  var m = NEG;
  var l = 0.0;

  var a00 = vec4<f32>(0.0); var a01 = vec4<f32>(0.0); var a10 = vec4<f32>(0.0); var a11 = vec4<f32>(0.0);
  var a20 = vec4<f32>(0.0); var a21 = vec4<f32>(0.0); var a30 = vec4<f32>(0.0); var a31 = vec4<f32>(0.0);
  var a40 = vec4<f32>(0.0); var a41 = vec4<f32>(0.0); var a50 = vec4<f32>(0.0); var a51 = vec4<f32>(0.0);
  var a60 = vec4<f32>(0.0); var a61 = vec4<f32>(0.0); var a70 = vec4<f32>(0.0); var a71 = vec4<f32>(0.0);

  // Keys the tile's last live row attends to (none when every row is padding).
  let keyEnd = select(0u, (min(r0 + BQ, liveRows) - 1u) / P + 1u, r0 < liveRows);
  // The prefetch loads whole vec4s; other head sizes stage as without it.
  let prefetch = PREFETCH && D % 4u == 0u;
  var staged: Staged;
  if (prefetch && keyEnd > 0u) { staged = fetch(false, lid, 0u, len, kvBase, kvStep); }
  for (var first = 0u; first < keyEnd; first += BK) {
    if (prefetch) {
      put(lid, staged);                                        // K
      staged = fetch(true, lid, first, len, kvBase, kvStep);   // V, in flight during the scores
    } else {
      stage(lid, first, len, kvBase, kvStep, true, KV_TOGETHER);
    }
    workgroupBarrier();

    {
      let q0 = sRow * ROW;
      let q1 = q0 + RG * ROW;
      let q2 = q1 + RG * ROW;
      let q3 = q2 + RG * ROW;
      let ka0 = sKey * ROW;         // key group sKey: keys sKey + KG·j
      let ka1 = ka0 + KG * ROW;
      let ka2 = ka1 + KG * ROW;
      let ka3 = ka2 + KG * ROW;
      let kb0 = ka0 + SKG * ROW;    // key group sKey + SKG (SCORE_KEYS = 8)
      let kb1 = kb0 + KG * ROW;
      let kb2 = kb1 + KG * ROW;
      let kb3 = kb2 + KG * ROW;
      var s0 = vec4<f32>(0.0);
      var s1 = vec4<f32>(0.0);
      var s2 = vec4<f32>(0.0);
      var s3 = vec4<f32>(0.0);
      var s4 = vec4<f32>(0.0);
      var s5 = vec4<f32>(0.0);
      var s6 = vec4<f32>(0.0);
      var s7 = vec4<f32>(0.0);
      for (var n = 0u; n < DIM4 / PARTS; n++) {
        let d = part + PARTS * n;
        let qa = tileQ[q0 + d];
        let qb = tileQ[q1 + d];
        let qc = tileQ[q2 + d];
        let qd = tileQ[q3 + d];
        let x0 = tileKV[ka0 + d];
        let x1 = tileKV[ka1 + d];
        let x2 = tileKV[ka2 + d];
        let x3 = tileKV[ka3 + d];
        let kx = vec4<f32>(x0.x, x1.x, x2.x, x3.x);
        let ky = vec4<f32>(x0.y, x1.y, x2.y, x3.y);
        let kz = vec4<f32>(x0.z, x1.z, x2.z, x3.z);
        let kw = vec4<f32>(x0.w, x1.w, x2.w, x3.w);
        s0 = score4(s0, qa, kx, ky, kz, kw);
        s1 = score4(s1, qb, kx, ky, kz, kw);
        s2 = score4(s2, qc, kx, ky, kz, kw);
        s3 = score4(s3, qd, kx, ky, kz, kw);
        if (SCORE_KEYS == 8u) {
          let y0 = tileKV[kb0 + d];
          let y1 = tileKV[kb1 + d];
          let y2 = tileKV[kb2 + d];
          let y3 = tileKV[kb3 + d];
          let jx = vec4<f32>(y0.x, y1.x, y2.x, y3.x);
          let jy = vec4<f32>(y0.y, y1.y, y2.y, y3.y);
          let jz = vec4<f32>(y0.z, y1.z, y2.z, y3.z);
          let jw = vec4<f32>(y0.w, y1.w, y2.w, y3.w);
          s4 = score4(s4, qa, jx, jy, jz, jw);
          s5 = score4(s5, qb, jx, jy, jz, jw);
          s6 = score4(s6, qc, jx, jy, jz, jw);
          s7 = score4(s7, qd, jx, jy, jz, jw);
        }
      }
      let at = (part * BQ + sRow) * S_ROW + sKey;
      tileS[at] = s0;
      tileS[at + RG * S_ROW] = s1;
      tileS[at + 2u * RG * S_ROW] = s2;
      tileS[at + 3u * RG * S_ROW] = s3;
      if (SCORE_KEYS == 8u) {
        tileS[at + SKG] = s4;
        tileS[at + SKG + RG * S_ROW] = s5;
        tileS[at + SKG + 2u * RG * S_ROW] = s6;
        tileS[at + SKG + 3u * RG * S_ROW] = s7;
      }
    }
    workgroupBarrier();

    if (prefetch) {
      put(lid, staged);   // V over K: every thread is past the scores
      if (first + BK < keyEnd) { staged = fetch(false, lid, first + BK, len, kvBase, kvStep); }   // next K, in flight during p·V
    } else if (!KV_TOGETHER) {
      stage(lid, first, len, kvBase, kvStep, false, true);   // V over K
    }
    if (lid < BQ) {
      var tileMax = NEG;
      for (var g = 0u; g < KG; g++) {
        var s = tileS[lid * S_ROW + g];
        for (var p = 1u; p < PARTS; p++) { s += tileS[(p * BQ + lid) * S_ROW + g]; }
        let keys = vec4<u32>(first + g) + KG * vec4<u32>(0u, 1u, 2u, 3u);
        s = select(vec4<f32>(NEG), s, keys < vec4<u32>(visibleEnd));
        tileS[lid * S_ROW + g] = s;
        tileMax = max(tileMax, max(max(s.x, s.y), max(s.z, s.w)));
      }
      let mNew = max(m, tileMax);
      var sum = 0.0;
      for (var g = 0u; g < KG; g++) {
        let keys = vec4<u32>(first + g) + KG * vec4<u32>(0u, 1u, 2u, 3u);
        let p = select(vec4<f32>(0.0), exp2(tileS[lid * S_ROW + g] - mNew), keys < vec4<u32>(visibleEnd));
        tileS[lid * S_ROW + g] = p;
        sum += (p.x + p.y) + (p.z + p.w);
      }
      let correction = exp2(m - mNew);
      l = fma(l, correction, sum);
      m = mNew;
      rowScale[lid] = correction;
    }
    workgroupBarrier();

    {
      let c0 = rowScale[pvRow];
      let c1 = rowScale[pvRow + PV_RG];
      let c2 = rowScale[pvRow + 2u * PV_RG];
      let c3 = rowScale[pvRow + 3u * PV_RG];
      let c4 = rowScale[pvRow + 4u * PV_RG];
      let c5 = rowScale[pvRow + 5u * PV_RG];
      let c6 = rowScale[pvRow + 6u * PV_RG];
      let c7 = rowScale[pvRow + 7u * PV_RG];
      a00 *= c0; a01 *= c0; a10 *= c1; a11 *= c1; a20 *= c2; a21 *= c2; a30 *= c3; a31 *= c3;
      a40 *= c4; a41 *= c4; a50 *= c5; a51 *= c5; a60 *= c6; a61 *= c6; a70 *= c7; a71 *= c7;
      for (var g = 0u; g < KG; g++) {
        let x = V_AT + g * ROW + col;   // value row g (component 0 of p), vec4 column col
        let x00 = tileKV[x];
        let x01 = tileKV[x + CG];
        let x10 = tileKV[x + KG * ROW];
        let x11 = tileKV[x + KG * ROW + CG];
        let x20 = tileKV[x + 2u * KG * ROW];
        let x21 = tileKV[x + 2u * KG * ROW + CG];
        let x30 = tileKV[x + 3u * KG * ROW];
        let x31 = tileKV[x + 3u * KG * ROW + CG];
        let p = pvRow * S_ROW + g;
        let p0 = tileS[p];
        let p1 = tileS[p + PV_RG * S_ROW];
        let p2 = tileS[p + 2u * PV_RG * S_ROW];
        let p3 = tileS[p + 3u * PV_RG * S_ROW];
        let p4 = tileS[p + 4u * PV_RG * S_ROW];
        let p5 = tileS[p + 5u * PV_RG * S_ROW];
        let p6 = tileS[p + 6u * PV_RG * S_ROW];
        let p7 = tileS[p + 7u * PV_RG * S_ROW];
        a00 = pv4(a00, p0, x00, x10, x20, x30); a01 = pv4(a01, p0, x01, x11, x21, x31);
        a10 = pv4(a10, p1, x00, x10, x20, x30); a11 = pv4(a11, p1, x01, x11, x21, x31);
        a20 = pv4(a20, p2, x00, x10, x20, x30); a21 = pv4(a21, p2, x01, x11, x21, x31);
        a30 = pv4(a30, p3, x00, x10, x20, x30); a31 = pv4(a31, p3, x01, x11, x21, x31);
        a40 = pv4(a40, p4, x00, x10, x20, x30); a41 = pv4(a41, p4, x01, x11, x21, x31);
        a50 = pv4(a50, p5, x00, x10, x20, x30); a51 = pv4(a51, p5, x01, x11, x21, x31);
        a60 = pv4(a60, p6, x00, x10, x20, x30); a61 = pv4(a61, p6, x01, x11, x21, x31);
        a70 = pv4(a70, p7, x00, x10, x20, x30); a71 = pv4(a71, p7, x01, x11, x21, x31);
      }
    }
    workgroupBarrier();
  }

  // out = acc / l: the accumulators go through tileQ (free once every thread is past the key loop,
  // which may have run zero times) so that the copy out runs along rows.
  workgroupBarrier();
  var r = pvRow * ROW + col;
  tileQ[r] = a00; tileQ[r + CG] = a01; r += PV_RG * ROW;
  tileQ[r] = a10; tileQ[r + CG] = a11; r += PV_RG * ROW;
  tileQ[r] = a20; tileQ[r + CG] = a21; r += PV_RG * ROW;
  tileQ[r] = a30; tileQ[r + CG] = a31; r += PV_RG * ROW;
  tileQ[r] = a40; tileQ[r + CG] = a41; r += PV_RG * ROW;
  tileQ[r] = a50; tileQ[r + CG] = a51; r += PV_RG * ROW;
  tileQ[r] = a60; tileQ[r + CG] = a61; r += PV_RG * ROW;
  tileQ[r] = a70; tileQ[r + CG] = a71;
  if (lid < BQ) {
    if (R < rows) { lse[(b * params.heads + h0 + R % P) * T + R / P] = select(0.0, (m + log2(l)) * LN2, live); }
    rowScale[lid] = select(0.0, 1.0 / l, live);
  }
  workgroupBarrier();
  for (var i = lid; i < BQ * DIM4; i += THREADS) {
    let row = i / DIM4;
    let d = 4u * (i % DIM4);
    if (r0 + row < rows) { store4(qBase + rowOffset(r0 + row) + d, validFrom(d), tileQ[row * ROW + d / 4u] * rowScale[row]); }
  }
}
