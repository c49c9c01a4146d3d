// rope.wgsl: rotary position embedding applied in place, rotate-half convention (Hugging Face
// Llama / Qwen2 apply_rotary_pos_emb): with x1 = x[..., :D/2], x2 = x[..., D/2:],
//   out = [x1·cos − x2·sin, x2·cos + x1·sin],  angle[t, i] = position[t] · invFreq[i].
//
// Shapes (row-major): x (T, heads, D) f32, rotated in place (q, or k with the KV heads); D even;
// positions (T) u32; invFreq (D/2) f32 (the host computes it in float64 and rounds it to f32).
// Angles and cos/sin are computed in f32 here, not read from a table: the angle is the f32
// product position · invFreq, rounded once exactly as Hugging Face's f32 `inv_freq @ positions`
// (positions < 2^24 are exact in f32). Built-in sin/cos are not used: WGSL and Vulkan only promise
// an absolute error of 2^-11 inside [-π, π], and GPUs lose accuracy fast outside it (an angle of
// 30,000 rad is common). Instead the angle is reduced by multiples of π/2 (Cody–Waite with six
// 6-bit pieces of π/2, so each product j · piece is exact for j < 2^18, i.e. angles below about
// 4·10^5 rad; past that the error grows to the order of the f32 angle's own spacing) and sin and
// cos of the remainder in [-π/4, π/4] come from Cephes' sinf/cosf polynomials, both accurate to
// about 1e-7.
// INVERSE (override) rotates by −angle instead, the transpose of the rotation: RoPE's backward
// maps dy to dx = [dy1·cos + dy2·sin, dy2·cos − dy1·sin].
// Two entry points:
//   rope_main     one tensor x (T, heads, D);
//   rope_qk_main  a layer's q (T, heads, D) and k (T, kvHeads, D) in one dispatch and, with CACHE,
//                 the rotated k and the values v (T, kvHeads, D) stored into a per-sequence
//                 cache kCache, vCache (B, maxLen, kvHeads, D): token t is position positions[t]
//                 of sequence t / seqLen, and a position ≥ maxLen (padding) is not stored. The
//                 stores copy bits, so they equal rope followed by a separate copy.
// Grid: one thread per pair (x1[i], x2[i]) of one (token, head) row over the heads of every
// tensor (rope_qk_main: heads of q, then of k, then of v with CACHE), 256 per workgroup,
// (groupsX, ceil(pairs / 256 / groupsX)) workgroups.
// Reference: referenceRope and referenceRopeQk in src/ops/rope.ts (float64 cos/sin of the same
// f32 angle).

struct Params {
  tokens: u32,
  heads: u32,     // of x (q)
  half: u32,      // D / 2
  groupsX: u32,
  kvHeads: u32,   // rope_qk_main: of k and v
  seqLen: u32,    // with CACHE: tokens per sequence
  maxLen: u32,    // with CACHE: positions per sequence in the cache
  _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> invFreq: array<f32>;
@group(0) @binding(4) var<storage, read_write> k: array<f32>;
@group(0) @binding(5) var<storage, read> v: array<f32>;        // a placeholder without CACHE
@group(0) @binding(6) var<storage, read_write> kCache: array<f32>;   // likewise
@group(0) @binding(7) var<storage, read_write> vCache: array<f32>;   // likewise

override INVERSE: bool = false;
override CACHE: bool = false;

const WG: u32 = 256u;
const TWO_OVER_PI: f32 = 0x1.45f306p-1f;
// π/2 = P0 + P1 + ... + P5 (+ ~2^-48), each piece with at most 6 significant bits.
const P0: f32 = 0x1.9p0f;
const P1: f32 = 0x1.1p-7f;
const P2: f32 = -0x1.28p-18f;
const P3: f32 = -0x1.78p-25f;
const P4: f32 = 0x1.08p-34f;
const P5: f32 = 0x1.ap-41f;

// (sin a, cos a) in f32.
fn sin_cos(a: f32) -> vec2<f32> {
  let j = round(a * TWO_OVER_PI);
  var r = a - j * P0;
  r = r - j * P1;
  r = r - j * P2;
  r = r - j * P3;
  r = r - j * P4;
  r = r - j * P5;
  let z = r * r;
  let s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
  let c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z - 0.5 * z + 1.0;
  let quadrant = u32(i32(j)) & 3u;
  let sc = select(vec2(s, c), vec2(c, -s), (quadrant & 1u) == 1u);
  return select(sc, -sc, quadrant >= 2u);
}

// (sin, cos) of the rotation of pair i at token t (of −angle with INVERSE).
fn rotation(t: u32, i: u32) -> vec2<f32> {
  let forward = sin_cos(f32(positions[t]) * invFreq[i]);
  return vec2(select(forward.x, -forward.x, INVERSE), forward.y);
}

fn rotate(pair: vec2<f32>, sc: vec2<f32>) -> vec2<f32> {
  return vec2(pair.x * sc.y - pair.y * sc.x, pair.y * sc.y + pair.x * sc.x);
}

fn pair_index(wid: vec3<u32>, lid: u32) -> u32 {
  return (wid.x + wid.y * params.groupsX) * WG + lid;
}

@compute @workgroup_size(WG)
fn rope_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let p = pair_index(wid, lid);
  if (p >= params.tokens * params.heads * params.half) {
    return;
  }
  let row = p / params.half;
  let i = p % params.half;
  let e = row * 2u * params.half + i;
  let out = rotate(vec2(x[e], x[e + params.half]), rotation(row / params.heads, i));
  x[e] = out.x;
  x[e + params.half] = out.y;
}

@compute @workgroup_size(WG)
fn rope_qk_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let width = params.heads + select(1u, 2u, CACHE) * params.kvHeads;   // rows per token
  let p = pair_index(wid, lid);
  if (p >= params.tokens * width * params.half) {
    return;
  }
  let row = p / params.half;
  let i = p % params.half;
  let t = row / width;
  let head = row % width;
  if (head < params.heads) {
    let e = (t * params.heads + head) * 2u * params.half + i;
    let out = rotate(vec2(x[e], x[e + params.half]), rotation(t, i));
    x[e] = out.x;
    x[e + params.half] = out.y;
    return;
  }
  let isValue = head >= params.heads + params.kvHeads;
  let kvHead = head - params.heads - select(0u, params.kvHeads, isValue);
  let e = (t * params.kvHeads + kvHead) * 2u * params.half + i;
  var pair: vec2<f32>;
  if (isValue) {
    pair = vec2(v[e], v[e + params.half]);
  } else {
    pair = rotate(vec2(k[e], k[e + params.half]), rotation(t, i));
    k[e] = pair.x;
    k[e + params.half] = pair.y;
  }
  if (CACHE) {
    let position = positions[t];
    if (position < params.maxLen) {
      let c = (((t / params.seqLen) * params.maxLen + position) * params.kvHeads + kvHead) * 2u * params.half + i;
      if (isValue) {
        vCache[c] = pair.x;
        vCache[c + params.half] = pair.y;
      } else {
        kCache[c] = pair.x;
        kCache[c + params.half] = pair.y;
      }
    }
  }
}
