// attention.wgsl: causal multi-head attention with grouped key/value heads, flash-style.
//
// Shapes (f32, row-major): q (B, T, Hq, D), k and v (B, T, Hkv, D), out (B, T, Hq, D), lse (B, Hq, T);
// lengths (B) u32: sequence b holds tokens 0 .. lengths[b) − 1 (the rest is padding).
// Query head h reads key/value head h / (Hq / Hkv) (GQA). Query t attends to keys 0..t.
//   out[b,t,h,:] = Σ_s softmax_s(scale · q·k_s) v_s,  lse[b,h,t] = log Σ_s e^{scale · q·k_s}
// Padding queries (t ≥ length) get zeros and lse = 0.
// Grid: (ceil(T / 64), Hq, B) workgroups of 64 threads; thread i owns query t = 64·x + i. Keys and
// values stream through workgroup memory in tiles of 16 with an online softmax (running max m,
// normaliser l, rescaled accumulator), so no T×T matrix exists anywhere. HEAD_DIM ≤ 256.
// Reference: referenceAttention in src/ops/attention.ts (float64).

struct Params {
  seqLen: u32,       // T
  heads: u32,        // Hq
  kvHeads: u32,      // Hkv
  headDim: u32,      // D
  scale: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> lengths: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;

const QUERIES: u32 = 64u;
const KEYS: u32 = 16u;
const MAX_DIM: u32 = 256u;

var<workgroup> tileK: array<f32, 4096>;   // KEYS × MAX_DIM
var<workgroup> tileV: array<f32, 4096>;

@compute @workgroup_size(64)
fn attention_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let T = params.seqLen;
  let D = params.headDim;
  let h = wid.y;
  let b = wid.z;
  let kvh = h / (params.heads / params.kvHeads);
  let len = min(lengths[b], T);
  let t = wid.x * QUERIES + lid;
  let live = t < len;

  var qv: array<f32, MAX_DIM>;
  var acc: array<f32, MAX_DIM>;
  let qBase = ((b * T + t) * params.heads + h) * D;
  for (var d = 0u; d < D; d++) {
    qv[d] = select(0.0, q[qBase + d] * params.scale, live);
    acc[d] = 0.0;
  }
  var m = -3.0e38;
  var l = 0.0;

  // Keys needed by the last live query of this workgroup (uniform across the workgroup).
  let lastQuery = min(wid.x * QUERIES + QUERIES, len);
  for (var s0 = 0u; s0 < lastQuery; s0 += KEYS) {
    // Stage KEYS keys and values of head kvh.
    for (var i = lid; i < KEYS * D; i += QUERIES) {
      let s = s0 + i / D;
      let d = i % D;
      var kx = 0.0;
      var vx = 0.0;
      if (s < len) {
        let base = ((b * T + s) * params.kvHeads + kvh) * D + d;
        kx = k[base];
        vx = v[base];
      }
      tileK[i] = kx;
      tileV[i] = vx;
    }
    workgroupBarrier();
    if (live) {
      let sEnd = min(s0 + KEYS, t + 1u);
      for (var s = s0; s < sEnd; s++) {
        let row = (s - s0) * D;
        var score = 0.0;
        for (var d = 0u; d < D; d++) {
          score = fma(qv[d], tileK[row + d], score);
        }
        let mNew = max(m, score);
        let correction = exp(m - mNew);
        let p = exp(score - mNew);
        l = l * correction + p;
        for (var d = 0u; d < D; d++) {
          acc[d] = fma(acc[d], correction, p * tileV[row + d]);
        }
        m = mNew;
      }
    }
    workgroupBarrier();
  }

  if (t < T) {
    let inv = select(0.0, 1.0 / l, live);
    for (var d = 0u; d < D; d++) {
      out[qBase + d] = acc[d] * inv;
    }
    lse[(b * params.heads + h) * T + t] = select(0.0, m + log(l), live);
  }
}
