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
// Grid (ceil(T / BQ), Hq, B) of 64-thread workgroups; a workgroup owns BQ = 4096 / DIM_CLASS
// queries (64, 32, 16) of one head, the last query tiles (the longest) first, and streams tiles of
// BK keys (16, 16, 8) from key 0 to its last live query, so tiles wholly above the diagonal are
// never touched and no T×T matrix exists anywhere. Per key tile:
//   1. stage K (and V too where both fit: DIM_CLASS 64) as padded vec4 rows in workgroup memory;
//   2. scores: thread (part, row group, key group) computes a 4-query × 4-key register tile of
//      (q · scale · log2 e) · k over the head-size vec4s ≡ part (mod PARTS = 1, 2, 8);
//   3. softmax: thread i < BQ owns query row i: it adds the row's partial scores in part order and
//      keeps the running max m and sum l (base 2). One correction exp2(m_old − m_new) per row per
//      tile; p = exp2(s − m_new) (0 above the diagonal and for padding queries) replaces the scores.
//      V is staged here where it did not fit in 1;
//   4. p·V: thread (row group, column group) holds an 8-query × 8-column accumulator (16 vec4),
//      scales it by its rows' corrections and adds p · V over the tile's keys.
// At the end out = acc / l and lse = (m + log2 l) · ln 2.
// Workgroup memory, sized per class (29.9–30.75 KiB, so 7 workgroups fit a 228 KiB SM): Q BQ × ROW
// vec4 (16.25–17 KiB), K and V 2 × 16 × 17 or one of them at a time, 16 × 33 or 8 × 65 vec4
// (8.1–8.5 KiB), scores PARTS × BQ × S_ROW vec4 (5–6 KiB), BQ row scales. Rows are padded by one
// vec4 so that threads reading one column of consecutive rows hit different banks; threads of a
// warp reading the same element get a broadcast.
// Reference: referenceAttention in src/ops/attention.ts (float64).

struct Params {
  seqLen: u32,       // T
  heads: u32,        // Hq
  kvHeads: u32,      // Hkv
  headDim: u32,      // D
  qScale: f32,       // log2(e) / sqrt(D): scores come out in base 2
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

const THREADS: u32 = 64u;
const LN2: f32 = 0.6931471805599453;
const NEG: f32 = -3.0e38;       // "no score yet": finite, so exp2(NEG − NEG) = 1, never NaN

override DIM_CLASS: u32 = 64u;
override DIM4: u32 = DIM_CLASS / 4u;                      // vec4s of a head row
override ROW: u32 = DIM4 + 1u;                            // padded row stride of Q, K, V (vec4)
override BQ: u32 = 4096u / DIM_CLASS;                     // queries per workgroup
override BK: u32 = select(16u, 8u, DIM_CLASS == 256u);    // keys per tile
override KG: u32 = BK / 4u;                               // score key groups (keys kg + KG·j)
override RG: u32 = BQ / 4u;                               // score row groups (rows rg + RG·i)
override PARTS: u32 = THREADS / (KG * RG);                // threads sharing one 4 × 4 score tile
override S_ROW: u32 = KG + 1u;                            // vec4 stride of a score row
override CG: u32 = DIM4 / 2u;                             // p·V column groups (vec4 columns cg, cg + CG)
override PV_RG: u32 = THREADS / CG;                       // p·V row groups (rows rg + PV_RG·i, i < 8)
override KV_TOGETHER: bool = DIM_CLASS == 64u;           // K and V staged at once (fits in 32 KiB only here)
override V_AT: u32 = select(0u, BK * ROW, KV_TOGETHER);   // where V's rows start in tileKV

var<workgroup> tileQ: array<vec4<f32>, BQ * ROW>;                               // q · qScale, row r at r · ROW
var<workgroup> tileKV: array<vec4<f32>, select(1u, 2u, KV_TOGETHER) * BK * ROW>; // key j at j · ROW, value j at V_AT + j · ROW
// Partial scores of (part, row r) at (part · BQ + r) · S_ROW + kg, vec4 component j = key kg + KG·j;
// the softmax leaves p there (part 0).
var<workgroup> tileS: array<vec4<f32>, PARTS * BQ * S_ROW>;
var<workgroup> rowScale: array<f32, BQ>;             // per query row: correction, at the end 1 / l

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

@compute @workgroup_size(THREADS)
fn attention_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  let T = params.seqLen;
  let D = params.headDim;
  let h = wid.y;
  let b = wid.z;
  let kvh = h / (params.heads / params.kvHeads);
  let len = min(lengths[b], T);
  let t0 = (groups.x - 1u - wid.x) * BQ;      // the longest tiles first
  let qStep = params.heads * D;               // elements between tokens in q and out
  let kvStep = params.kvHeads * D;
  let qBase = b * T * qStep + h * D;          // token 0 of head h
  let kvBase = b * T * kvStep + kvh * D;

  for (var i = lid; i < BQ * DIM4; i += THREADS) {
    let row = i / DIM4;
    let d = 4u * (i % DIM4);
    let valid = select(0u, validFrom(d), t0 + row < len);
    tileQ[row * ROW + d / 4u] = q4(qBase + (t0 + row) * qStep + d, valid) * params.qScale;
  }

  // Score tile: rows sRow + RG·i, keys sKey + KG·j, head vec4s part + PARTS·n.
  let sKey = lid % KG;
  let sRow = (lid / KG) % RG;
  let part = lid / (KG * RG);
  // p·V tile: rows pvRow + PV_RG·i, vec4 columns col and col + CG.
  let col = lid % CG;
  let pvRow = lid / CG;
  // Softmax: this thread's query row (lid < BQ).
  let t = t0 + lid;
  let live = lid < BQ && t < len;
  let visibleEnd = select(0u, t + 1u, live);  // keys < visibleEnd are attended to
  var m = NEG;
  var l = 0.0;

  var a00 = vec4<f32>(0.0); var a01 = vec4<f32>(0.0); var a10 = vec4<f32>(0.0); var a11 = vec4<f32>(0.0);
  var a20 = vec4<f32>(0.0); var a21 = vec4<f32>(0.0); var a30 = vec4<f32>(0.0); var a31 = vec4<f32>(0.0);
  var a40 = vec4<f32>(0.0); var a41 = vec4<f32>(0.0); var a50 = vec4<f32>(0.0); var a51 = vec4<f32>(0.0);
  var a60 = vec4<f32>(0.0); var a61 = vec4<f32>(0.0); var a70 = vec4<f32>(0.0); var a71 = vec4<f32>(0.0);

  // Keys the tile's last live query attends to (none when every query is padding).
  let keyEnd = select(0u, min(t0 + BQ, len), t0 < len);
  for (var first = 0u; first < keyEnd; first += BK) {
    stage(lid, first, len, kvBase, kvStep, true, KV_TOGETHER);
    workgroupBarrier();

    {
      let q0 = sRow * ROW;
      let q1 = q0 + RG * ROW;
      let q2 = q1 + RG * ROW;
      let q3 = q2 + RG * ROW;
      let k0 = sKey * ROW;
      let k1 = k0 + KG * ROW;
      let k2 = k1 + KG * ROW;
      let k3 = k2 + KG * ROW;
      var s0 = vec4<f32>(0.0);
      var s1 = vec4<f32>(0.0);
      var s2 = vec4<f32>(0.0);
      var s3 = vec4<f32>(0.0);
      for (var n = 0u; n < DIM4 / PARTS; n++) {
        let d = part + PARTS * n;
        let x0 = tileKV[k0 + d];
        let x1 = tileKV[k1 + d];
        let x2 = tileKV[k2 + d];
        let x3 = tileKV[k3 + d];
        let kx = vec4<f32>(x0.x, x1.x, x2.x, x3.x);
        let ky = vec4<f32>(x0.y, x1.y, x2.y, x3.y);
        let kz = vec4<f32>(x0.z, x1.z, x2.z, x3.z);
        let kw = vec4<f32>(x0.w, x1.w, x2.w, x3.w);
        s0 = score4(s0, tileQ[q0 + d], kx, ky, kz, kw);
        s1 = score4(s1, tileQ[q1 + d], kx, ky, kz, kw);
        s2 = score4(s2, tileQ[q2 + d], kx, ky, kz, kw);
        s3 = score4(s3, tileQ[q3 + d], kx, ky, kz, kw);
      }
      let at = (part * BQ + sRow) * S_ROW + sKey;
      tileS[at] = s0;
      tileS[at + RG * S_ROW] = s1;
      tileS[at + 2u * RG * S_ROW] = s2;
      tileS[at + 3u * RG * S_ROW] = s3;
    }
    workgroupBarrier();

    if (!KV_TOGETHER) { stage(lid, first, len, kvBase, kvStep, false, true); }
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
    if (t < T) { lse[(b * params.heads + h) * T + t] = select(0.0, (m + log2(l)) * LN2, live); }
    rowScale[lid] = select(0.0, 1.0 / l, live);
  }
  workgroupBarrier();
  for (var i = lid; i < BQ * DIM4; i += THREADS) {
    let row = i / DIM4;
    let d = 4u * (i % DIM4);
    if (t0 + row < T) { store4(qBase + (t0 + row) * qStep + d, validFrom(d), tileQ[row * ROW + d / 4u] * rowScale[row]); }
  }
}
