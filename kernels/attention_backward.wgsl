// attention_backward.wgsl: gradients of causal grouped-query attention (kernels/attention.wgsl),
// flash-style (FlashAttention-2): probabilities are recomputed per tile from the forward's lse, so
// no T×T matrix exists anywhere; every sum runs in a fixed order (no atomics), so results are
// bit-identical run to run.
//
// Shapes (f32, row-major): q, out, dOut, dq (B, T, Hq, D); k, v, dk, dv (B, T, Hkv, D); lse (B, Hq, T)
// from the forward; lengths (B) u32. Query head h reads key/value head h / G, G = Hq / Hkv;
// scale = 1/sqrt(D). With p[t,u] = exp(scale·q_t·k_u − lse_t) for keys u ≤ t < length (else 0) and
// Δ_t = dOut_t·out_t:
//   ds[t,u] = p[t,u]·(dOut_t·v_u − Δ_t)
//   dq_t = scale·Σ_u ds[t,u]·k_u,   dk_u = scale·Σ_{h,t} ds[t,u]·q_t,   dv_u = Σ_{h,t} p[t,u]·dOut_t
// (sums over h run over the query heads of u's group). Rows at or past a sequence's length get 0.
//
// Entry points, dispatched in this order:
//   attention_backward_delta   grid (ceil(T / 256), Hq, B): stats[b,h,t] = (lse, Δ), (0, 0) at padding.
//   attention_backward_dq      grid (ceil(T / OWN), Hq, B): a workgroup owns OWN queries of one head
//                              (the last tiles first, as they take longest) and streams tiles of
//                              STREAM keys 0 .. its last live query.
//   attention_backward_dkdv    grid (ceil(T / OWN), Hq, B): a workgroup owns OWN keys and one query
//                              head, and streams tiles of STREAM queries from its first key to the
//                              length. One workgroup per query head (not per kv head) keeps the GPU
//                              busy at few kv heads; it writes that head's share of dk, dv into
//                              (B, T, Hq, D) partials, or into dk, dv directly when G = 1.
//   attention_backward_reduce  grid over B·T·Hkv·D / 256 (2-D past the per-dimension limit):
//                              dk, dv = Σ of the G partials in head order (only when G > 1).
// Workgroups of 256 threads. Tiles (OWN, STREAM, threads per dot product): (32, 16, 1) for D ≤ 64,
// (16, 8, 4) for D ≤ 128, (8, 4, 16) for D ≤ 256, so every tile has 512 (own row, stream row, slice
// of D) dot products, two per thread (phase 1: p, ds into workgroup memory), and OWN·D/4 ≤ 512
// gradient vec4s, two per thread in registers (phase 2). Rows sit in workgroup memory as vec4s
// (zeros past D and past the length) at an odd stride, so threads reading different rows at one
// column hit different banks; global reads and writes run along rows, so neighbouring threads
// touch neighbouring words.
// Reference: referenceAttentionBackward in src/ops/attention-backward.ts (float64).

struct Params {
  seqLen: u32,        // T
  heads: u32,         // Hq
  kvHeads: u32,       // Hkv
  headDim: u32,       // D
  scale: f32,
  ownRows: u32,       // OWN
  streamRows: u32,    // STREAM
  parts: u32,         // threads sharing one dot product: 512 / (OWN · STREAM)
  reduceGroupsX: u32, // x extent of the reduce grid
  reduceTotal: u32,   // B·T·Hkv·D
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> dOut: array<f32>;
@group(0) @binding(5) var<storage, read> lengths: array<u32>;
@group(0) @binding(6) var<storage, read_write> stats: array<vec2<f32>>;   // (lse, Δ) per (b, h, t)
@group(0) @binding(7) var<storage, read> out: array<f32>;
@group(0) @binding(8) var<storage, read> lse: array<f32>;
@group(0) @binding(9) var<storage, read_write> dq: array<f32>;
@group(0) @binding(10) var<storage, read_write> dkOut: array<f32>;        // dk, or dk partials
@group(0) @binding(11) var<storage, read_write> dvOut: array<f32>;        // dv, or dv partials
@group(0) @binding(12) var<storage, read> dkPartial: array<f32>;
@group(0) @binding(13) var<storage, read> dvPartial: array<f32>;

const WG: u32 = 256u;
const SLOTS: u32 = 512u;        // (own, stream, part) slots of a tile: two per thread
const OWN_VEC4S: u32 = 544u;    // 32 rows × stride 17, 16 × 33, 8 × 65
const STREAM_VEC4S: u32 = 272u; // 16 × 17, 8 × 33, 4 × 65
const MAX_OWN: u32 = 32u;

var<workgroup> ownA: array<vec4<f32>, OWN_VEC4S>;       // dq: q·scale; dkdv: k
var<workgroup> ownB: array<vec4<f32>, OWN_VEC4S>;       // dq: dOut;    dkdv: v
var<workgroup> streamA: array<vec4<f32>, STREAM_VEC4S>; // dq: k;       dkdv: q·scale
var<workgroup> streamB: array<vec4<f32>, STREAM_VEC4S>; // dq: v;       dkdv: dOut
var<workgroup> pairP: array<f32, SLOTS>;    // p[stream r, own o] at r·OWN + o (partial scores first when parts > 1)
var<workgroup> pairDs: array<f32, SLOTS>;   // ds, likewise (partial dOut·v first)
var<workgroup> rowLse: array<f32, MAX_OWN>; // lse and Δ of the tile's queries (own rows in dq, stream rows in dkdv)
var<workgroup> rowDelta: array<f32, MAX_OWN>;

fn vec4s() -> u32 {
  return (params.headDim + 3u) / 4u;
}

// Odd, so that rows at one column fall in different banks.
fn rowStride() -> u32 {
  return vec4s() | 1u;
}

// Elements 4c .. 4c+3 of the D-long row at `base`, zeros past D (one function per buffer: WGSL
// passes no storage pointers).
fn q4(base: u32, c: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  for (var j = 0u; j < 4u; j++) {
    if (4u * c + j < params.headDim) { r[j] = q[base + 4u * c + j]; }
  }
  return r;
}

fn k4(base: u32, c: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  for (var j = 0u; j < 4u; j++) {
    if (4u * c + j < params.headDim) { r[j] = k[base + 4u * c + j]; }
  }
  return r;
}

fn v4(base: u32, c: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  for (var j = 0u; j < 4u; j++) {
    if (4u * c + j < params.headDim) { r[j] = v[base + 4u * c + j]; }
  }
  return r;
}

fn dOut4(base: u32, c: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  for (var j = 0u; j < 4u; j++) {
    if (4u * c + j < params.headDim) { r[j] = dOut[base + 4u * c + j]; }
  }
  return r;
}

fn qRow(b: u32, t: u32, h: u32) -> u32 {
  return ((b * params.seqLen + t) * params.heads + h) * params.headDim;
}

fn kvRow(b: u32, u: u32, kvh: u32) -> u32 {
  return ((b * params.seqLen + u) * params.kvHeads + kvh) * params.headDim;
}

fn statsAt(b: u32, h: u32, t: u32, len: u32) -> vec2<f32> {
  if (t >= len) { return vec2<f32>(0.0); }
  return stats[(b * params.heads + h) * params.seqLen + t];
}

@compute @workgroup_size(WG)
fn attention_backward_delta(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let T = params.seqLen;
  let h = wid.y;
  let b = wid.z;
  let t = wid.x * WG + lid;
  if (t >= T) {
    return;
  }
  let len = min(lengths[b], T);
  let i = (b * params.heads + h) * T + t;
  var delta = 0.0;
  if (t < len) {
    let base = qRow(b, t, h);
    for (var d = 0u; d < params.headDim; d++) {
      delta = fma(dOut[base + d], out[base + d], delta);
    }
    stats[i] = vec2<f32>(lse[i], delta);
  } else {
    stats[i] = vec2<f32>(0.0);
  }
}

// p and ds of the pair (own row o, stream row r) from its full dot products s = scale·q·k and
// dp = dOut·v, into pairP / pairDs[r·OWN + o]. Queries are own rows in dq, stream rows in dkdv.
fn finishPair(pair: u32, s: f32, dp: f32, ownFirst: u32, streamFirst: u32, ownIsQuery: bool, len: u32) {
  let o = pair % params.ownRows;
  let r = pair / params.ownRows;
  let t = select(streamFirst + r, ownFirst + o, ownIsQuery);
  let u = select(ownFirst + o, streamFirst + r, ownIsQuery);
  let row = select(r, o, ownIsQuery);
  let p = select(0.0, exp(s - rowLse[row]), u <= t && t < len);
  pairP[pair] = p;
  pairDs[pair] = p * (dp - rowDelta[row]);
}

// Phase 1 of a tile: p and ds for every (own, stream) pair. A thread takes own row o, stream
// rows r and r + STREAM/2, and one of `parts` slices of D (so each own row it loads serves two dot
// products); with parts > 1 the slices' sums are added in part order afterwards. Ends with a
// barrier. Call from uniform control flow after staging the tile.
fn tileProbabilities(lid: u32, ownFirst: u32, streamFirst: u32, ownIsQuery: bool, len: u32) {
  let own = params.ownRows;
  let half = params.streamRows / 2u;
  let pairs = own * params.streamRows;
  let parts = params.parts;
  let n4 = vec4s();
  let stride = rowStride();
  let chunk = (n4 + parts - 1u) / parts;
  let o = lid % own;
  let r = (lid / own) % half;
  let part = lid / (own * half);
  let c1 = min(part * chunk + chunk, n4);
  var s = vec2<f32>(0.0);
  var dp = vec2<f32>(0.0);
  for (var c = part * chunk; c < c1; c++) {
    let a = ownA[o * stride + c];
    let g = ownB[o * stride + c];
    s += vec2<f32>(dot(a, streamA[r * stride + c]), dot(a, streamA[(r + half) * stride + c]));
    dp += vec2<f32>(dot(g, streamB[r * stride + c]), dot(g, streamB[(r + half) * stride + c]));
  }
  let pair = r * own + o;
  let pair2 = pair + half * own;
  if (parts == 1u) {
    finishPair(pair, s.x, dp.x, ownFirst, streamFirst, ownIsQuery, len);
    finishPair(pair2, s.y, dp.y, ownFirst, streamFirst, ownIsQuery, len);
  } else {
    pairP[part * pairs + pair] = s.x;
    pairP[part * pairs + pair2] = s.y;
    pairDs[part * pairs + pair] = dp.x;
    pairDs[part * pairs + pair2] = dp.y;
    workgroupBarrier();
    var sum = 0.0;
    var dpSum = 0.0;
    if (lid < pairs) {
      for (var i = 0u; i < parts; i++) {
        sum += pairP[i * pairs + lid];
        dpSum += pairDs[i * pairs + lid];
      }
    }
    workgroupBarrier();
    if (lid < pairs) {
      finishPair(lid, sum, dpSum, ownFirst, streamFirst, ownIsQuery, len);
    }
  }
  workgroupBarrier();
}

// Phase 2 splits the own rows' gradients, OWN × D/4 vec4s, two per thread: column c of own rows
// o and o + OWN/2, so each stream row vec4 it loads serves both.
fn gradientColumn(lid: u32) -> u32 {
  return lid % vec4s();
}

fn gradientRow(lid: u32) -> u32 {
  return lid / vec4s();
}

// dq += Σ_r ds[r, o]·k_r for own rows o and o + OWN/2.
fn accumulateDq(lid: u32, acc: ptr<function, vec4<f32>>, acc2: ptr<function, vec4<f32>>) {
  let half = params.ownRows / 2u;
  let o = gradientRow(lid);
  if (o >= half) {
    return;
  }
  let c = gradientColumn(lid);
  let stride = rowStride();
  for (var r = 0u; r < params.streamRows; r++) {
    let kx = streamA[r * stride + c];
    let pair = r * params.ownRows + o;
    *acc = fma(vec4<f32>(pairDs[pair]), kx, *acc);
    *acc2 = fma(vec4<f32>(pairDs[pair + half]), kx, *acc2);
  }
}

fn writeDq(o: u32, c: u32, acc: vec4<f32>, b: u32, h: u32, t0: u32) {
  let t = t0 + o;
  if (t >= params.seqLen) {
    return;
  }
  let base = qRow(b, t, h) + 4u * c;
  let value = acc * params.scale;
  for (var j = 0u; j < 4u; j++) {
    if (4u * c + j < params.headDim) { dq[base + j] = value[j]; }
  }
}

@compute @workgroup_size(WG)
fn attention_backward_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let T = params.seqLen;
  let h = wid.y;
  let b = wid.z;
  let kvh = h / (params.heads / params.kvHeads);
  let len = min(lengths[b], T);
  let own = params.ownRows;
  let n4 = vec4s();
  let stride = rowStride();
  let t0 = (groups.x - 1u - wid.x) * own;   // the longest tiles (last queries) first: a shorter tail

  for (var i = lid; i < own * n4; i += WG) {
    let o = i / n4;
    let c = i % n4;
    let t = t0 + o;
    var qx = vec4<f32>(0.0);
    var gx = vec4<f32>(0.0);
    if (t < len) {
      let base = qRow(b, t, h);
      qx = q4(base, c) * params.scale;
      gx = dOut4(base, c);
    }
    ownA[o * stride + c] = qx;
    ownB[o * stride + c] = gx;
  }
  if (lid < own) {
    let st = statsAt(b, h, t0 + lid, len);
    rowLse[lid] = st.x;
    rowDelta[lid] = st.y;
  }

  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  let keyEnd = min(t0 + own, len);   // keys of the last live query, + 1
  for (var s0 = 0u; s0 < keyEnd; s0 += params.streamRows) {
    for (var i = lid; i < params.streamRows * n4; i += WG) {
      let r = i / n4;
      let c = i % n4;
      let u = s0 + r;
      var kx = vec4<f32>(0.0);
      var vx = vec4<f32>(0.0);
      if (u < len) {
        let base = kvRow(b, u, kvh);
        kx = k4(base, c);
        vx = v4(base, c);
      }
      streamA[r * stride + c] = kx;
      streamB[r * stride + c] = vx;
    }
    workgroupBarrier();
    tileProbabilities(lid, t0, s0, true, len);
    accumulateDq(lid, &acc0, &acc1);
    workgroupBarrier();
  }
  let o = gradientRow(lid);
  if (o < own / 2u) {
    writeDq(o, gradientColumn(lid), acc0, b, h, t0);
    writeDq(o + own / 2u, gradientColumn(lid), acc1, b, h, t0);
  }
}

// dv += Σ_r p[r, o]·dOut_r and dk += Σ_r ds[r, o]·(scale·q_r) for own keys o and o + OWN/2.
fn accumulateDkDv(lid: u32, dk: ptr<function, vec4<f32>>, dv: ptr<function, vec4<f32>>, dk2: ptr<function, vec4<f32>>, dv2: ptr<function, vec4<f32>>) {
  let half = params.ownRows / 2u;
  let o = gradientRow(lid);
  if (o >= half) {
    return;
  }
  let c = gradientColumn(lid);
  let stride = rowStride();
  for (var r = 0u; r < params.streamRows; r++) {
    let qx = streamA[r * stride + c];
    let gx = streamB[r * stride + c];
    let pair = r * params.ownRows + o;
    *dv = fma(vec4<f32>(pairP[pair]), gx, *dv);
    *dk = fma(vec4<f32>(pairDs[pair]), qx, *dk);
    *dv2 = fma(vec4<f32>(pairP[pair + half]), gx, *dv2);
    *dk2 = fma(vec4<f32>(pairDs[pair + half]), qx, *dk2);
  }
}

// Into (B, T, Hq, D) partials at query head h, which is dk, dv's own layout when G = 1.
fn writeDkDv(o: u32, c: u32, dkAcc: vec4<f32>, dvAcc: vec4<f32>, b: u32, h: u32, u0: u32) {
  let u = u0 + o;
  if (u >= params.seqLen) {
    return;
  }
  let base = qRow(b, u, h) + 4u * c;
  for (var j = 0u; j < 4u; j++) {
    if (4u * c + j < params.headDim) {
      dkOut[base + j] = dkAcc[j];
      dvOut[base + j] = dvAcc[j];
    }
  }
}

@compute @workgroup_size(WG)
fn attention_backward_dkdv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let T = params.seqLen;
  let h = wid.y;
  let b = wid.z;
  let kvh = h / (params.heads / params.kvHeads);
  let len = min(lengths[b], T);
  let own = params.ownRows;
  let n4 = vec4s();
  let stride = rowStride();
  let u0 = wid.x * own;

  for (var i = lid; i < own * n4; i += WG) {
    let o = i / n4;
    let c = i % n4;
    let u = u0 + o;
    var kx = vec4<f32>(0.0);
    var vx = vec4<f32>(0.0);
    if (u < len) {
      let base = kvRow(b, u, kvh);
      kx = k4(base, c);
      vx = v4(base, c);
    }
    ownA[o * stride + c] = kx;
    ownB[o * stride + c] = vx;
  }

  var dk0 = vec4<f32>(0.0);
  var dk1 = vec4<f32>(0.0);
  var dv0 = vec4<f32>(0.0);
  var dv1 = vec4<f32>(0.0);
  // Queries u0 .. len − 1 see some key of this tile.
  for (var s0 = u0; s0 < len; s0 += params.streamRows) {
    for (var i = lid; i < params.streamRows * n4; i += WG) {
      let r = i / n4;
      let c = i % n4;
      let t = s0 + r;
      var qx = vec4<f32>(0.0);
      var gx = vec4<f32>(0.0);
      if (t < len) {
        let base = qRow(b, t, h);
        qx = q4(base, c) * params.scale;
        gx = dOut4(base, c);
      }
      streamA[r * stride + c] = qx;
      streamB[r * stride + c] = gx;
    }
    if (lid < params.streamRows) {
      let st = statsAt(b, h, s0 + lid, len);
      rowLse[lid] = st.x;
      rowDelta[lid] = st.y;
    }
    workgroupBarrier();
    tileProbabilities(lid, u0, s0, false, len);
    accumulateDkDv(lid, &dk0, &dv0, &dk1, &dv1);
    workgroupBarrier();
  }
  let o = gradientRow(lid);
  if (o < own / 2u) {
    writeDkDv(o, gradientColumn(lid), dk0, dv0, b, h, u0);
    writeDkDv(o + own / 2u, gradientColumn(lid), dk1, dv1, b, h, u0);
  }
}

@compute @workgroup_size(WG)
fn attention_backward_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * params.reduceGroupsX) * WG + lid;   // element of dk: ((b·T + u)·Hkv + kvh)·D + d
  if (i >= params.reduceTotal) {
    return;
  }
  let D = params.headDim;
  let group = params.heads / params.kvHeads;
  let row = i / D;
  let kvh = row % params.kvHeads;
  let first = ((row / params.kvHeads) * params.heads + kvh * group) * D + i % D;
  var sk = 0.0;
  var sv = 0.0;
  for (var g = 0u; g < group; g++) {
    sk += dkPartial[first + g * D];
    sv += dvPartial[first + g * D];
  }
  dkOut[i] = sk;
  dvOut[i] = sv;
}
