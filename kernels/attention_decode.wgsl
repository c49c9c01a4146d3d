// attention_decode.wgsl: one new query per sequence against its key/value cache (decoding).
// Shapes (f32): q (B, Hq, D); kCache, vCache (B, maxLen, Hkv, D); lengths (B) u32 = keys to
// attend to (the new token's position + 1); out (B, Hq, D).
//   out[b,h,:] = Σ_{s < lengths[b]} softmax_s(q·k_s / √D) v_s, with k/v head h / (Hq / Hkv).
// Grid: (Hq, B) workgroups of 32 threads; thread i takes keys i, i + 32, … with its own online
// softmax (max, normaliser, accumulator), then the 32 states are merged through workgroup memory:
// every thread forms the common max and normaliser, and thread i the output columns i, i + 32, ….
// HEAD_DIM ≤ 128. Reference: referenceAttention on the cached rows (src/ops/attention.ts).

struct Params {
  heads: u32,
  kvHeads: u32,
  headDim: u32,
  maxLen: u32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kCache: array<f32>;
@group(0) @binding(3) var<storage, read> vCache: array<f32>;
@group(0) @binding(4) var<storage, read> lengths: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const THREADS: u32 = 32u;
const MAX_DIM: u32 = 128u;

var<workgroup> stateM: array<f32, 32>;
var<workgroup> stateL: array<f32, 32>;
var<workgroup> stateAcc: array<f32, 4096>;   // THREADS × MAX_DIM

@compute @workgroup_size(32)
fn attention_decode_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let b = wid.y;
  let D = params.headDim;
  let kvh = h / (params.heads / params.kvHeads);
  let len = min(lengths[b], params.maxLen);
  let qBase = (b * params.heads + h) * D;

  var acc: array<f32, MAX_DIM>;
  for (var d = 0u; d < D; d++) {
    acc[d] = 0.0;
  }
  var m = -3.0e38;
  var l = 0.0;
  for (var s = lid; s < len; s += THREADS) {
    let kBase = ((b * params.maxLen + s) * params.kvHeads + kvh) * D;
    var score = 0.0;
    for (var d = 0u; d < D; d++) {
      score = fma(q[qBase + d], kCache[kBase + d], score);
    }
    score *= params.scale;
    let mNew = max(m, score);
    let correction = exp(m - mNew);
    let p = exp(score - mNew);
    l = l * correction + p;
    for (var d = 0u; d < D; d++) {
      acc[d] = fma(acc[d], correction, p * vCache[kBase + d]);
    }
    m = mNew;
  }
  stateM[lid] = m;
  stateL[lid] = l;
  for (var d = 0u; d < D; d++) {
    stateAcc[lid * MAX_DIM + d] = acc[d];
  }
  workgroupBarrier();
  // Threads with no keys (l = 0) hold empty states and are left out.
  var mAll = -3.0e38;
  for (var i = 0u; i < THREADS; i++) {
    if (stateL[i] > 0.0) {
      mAll = max(mAll, stateM[i]);
    }
  }
  var lAll = 0.0;
  var weight: array<f32, THREADS>;
  for (var i = 0u; i < THREADS; i++) {
    weight[i] = select(0.0, exp(stateM[i] - mAll), stateL[i] > 0.0);
    lAll += stateL[i] * weight[i];
  }
  for (var d = lid; d < D; d += THREADS) {
    var sum = 0.0;
    for (var i = 0u; i < THREADS; i++) {
      sum += stateAcc[i * MAX_DIM + d] * weight[i];
    }
    out[qBase + d] = select(0.0, sum / lAll, lAll > 0.0);
  }
}
