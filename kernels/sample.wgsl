// sample.wgsl: one token id per row, drawn from softmax(logits / T) restricted to the tokens that
// Hugging Face's warpers keep, in their order: temperature, top-k, top-p, min-p. Temperature 0 is
// greedy: the row's argmax, lowest index on ties.
//
// Shapes: logits (R, V) f32, finite or −inf (never NaN or +inf); seeds (R) u32; ids (R) u32.
// Grid: one workgroup of 256 threads per row, (groupsX, ceil(R / groupsX)) workgroups so that R
// may exceed the 65,535 limit of one dimension. Every step is a strided pass over the row and a
// fixed-order reduction in workgroup memory, so a row's id depends only on its logits, seed and
// the options (never on R or the grid), and reruns are bit-identical. Options live in the
// uniform (setOptions rewrites it), with the threshold passes to run, so one pipeline serves all:
//   1. argmax (value m, lowest index): greedy rows stop here.
//   2. top-k: the k-th largest logit, found exactly by a 4-bit radix select over the logits'
//      order-preserving u32 keys: 8 passes, each counting the elements at or above 16 candidate
//      thresholds at once (counts are f32 sums, exact as V ≤ 2^24). Ties with the k-th value stay, as HF keeps scores ≥ the k-th.
//   3. top-p: the same select weighted by exp((x − m) / T) over the top-k survivors: the largest
//      threshold t with mass(x ≥ t) ≥ p · mass(survivors); HF keeps a token when the mass above
//      it in its sort order is < p, so its threshold is t (tied values kept together).
//   4. min-p needs no search: p_j ≥ minP · p_max ⇔ exp((x_j − m) / T) ≥ minP.
//   5. Gumbel-max over the kept set: argmax of (x_j − m) / T − log(E_j), E_j ~ Exp(1) from a
//      Philox2x32-10 draw of counter (j, 0) under key seed (64 random bits, so E keeps full f32
//      precision near 0, where the winner's noise lies).
// A row with no finite logit returns its argmax (index 0).
// Reference: referenceSamplingDistribution (the float64 distribution) and referenceSampleDraw
// (the same Philox stream, float64 arithmetic) in src/sampling/sample.ts.

struct Params {
  rows: u32,
  vocab: u32,
  groupsX: u32,
  topK: u32,         // 0 or ≥ vocab: off
  temperature: f32,  // 0: greedy
  topP: f32,         // 1: off
  minP: f32,         // 0: off
  firstPass: u32,    // threshold passes [firstPass, endPass): 0-7 top-k, 8-15 top-p
  endPass: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> seeds: array<u32>;
@group(0) @binding(3) var<storage, read_write> ids: array<u32>;

const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;
const NONE_F32_INDEX: u32 = 0x1000000u;
const LOWEST_FINITE: f32 = -0x1.fffffep+127f;

// The reductions' scratch, exactly the 16 KiB every WebGPU device offers: 4 vec4 lanes × 256
// threads (lane group g of thread t at g·256 + t) for the threshold counts, or one
// (score, index as an exact f32, −, −) entry per thread for an argmax.
var<workgroup> partial: array<vec4<f32>, 1024>;

// Monotonic map from floats to u32 (a < b ⇔ key(a) < key(b)); −0 maps to +0's key, as they compare equal.
fn order_key(x: f32) -> u32 {
  let bits = select(bitcast<u32>(x), 0u, x == 0.0);
  return select(bits | 0x80000000u, ~bits, (bits & 0x80000000u) != 0u);
}

// (v, i) beats (w, j): a real entry over none, then the larger score, then the lower index.
fn better(v: f32, i: u32, w: f32, j: u32) -> bool {
  return i != NONE && (j == NONE || v > w || (v == w && i < j));
}

fn index_of(encoded: f32) -> u32 {
  return select(u32(encoded), NONE, encoded >= f32(NONE_F32_INDEX));
}

// The reductions below add or compare in a fixed order (runs of 16 threads, then the 16 runs),
// so every rerun is bit-identical. Few barriers and short loops on purpose: on lavapipe barriers
// dominate small rows, and unrolled loops around them its compile time.

// Every thread's (score, index) reduced to the winner's index, returned to all threads. Indices
// travel as f32, exact below 2^24 (the vocabulary limit); NONE as 2^24.
fn workgroup_argmax(lid: u32, score: f32, index: u32) -> u32 {
  partial[lid] = vec4<f32>(score, f32(min(index, NONE_F32_INDEX)), 0.0, 0.0);
  workgroupBarrier();
  // 16 threads each find the best of a run of 16 entries, then thread 0 the best of the runs.
  if (lid < 16u) {
    partial[WG + lid] = best_of_run(lid * 16u);
  }
  workgroupBarrier();
  if (lid == 0u) {
    partial[2u * WG] = best_of_run(WG);
  }
  workgroupBarrier();
  let winner = index_of(partial[2u * WG].y);
  workgroupBarrier();
  return winner;
}

fn best_of_run(start: u32) -> vec4<f32> {
  var best = partial[start];
  for (var i = start + 1u; i < start + 16u; i++) {
    let entry = partial[i];
    if (better(entry.x, index_of(entry.y), best.x, index_of(best.y))) {
      best = entry;
    }
  }
  return best;
}

// Sums of the 16 per-thread lanes a[0..3] over the workgroup, returned to all threads.
fn workgroup_sum(lid: u32, a: array<vec4<f32>, 4>) -> array<vec4<f32>, 4> {
  for (var g = 0u; g < 4u; g++) {
    partial[g * WG + lid] = a[g];
  }
  workgroupBarrier();
  // 64 threads: lane group g = lid / 16 adds its run lid % 16 of 16 threads.
  var run = vec4<f32>(0.0);
  if (lid < 64u) {
    let start = (lid / 16u) * WG + (lid % 16u) * 16u;
    for (var i = start; i < start + 16u; i++) {
      run += partial[i];
    }
  }
  workgroupBarrier();
  if (lid < 64u) {
    partial[lid] = run;
  }
  workgroupBarrier();
  if (lid < 4u) {
    var total = vec4<f32>(0.0);
    for (var r = 0u; r < 16u; r++) {
      total += partial[lid * 16u + r];
    }
    partial[64u + lid] = total;
  }
  workgroupBarrier();
  let total = array<vec4<f32>, 4>(partial[64], partial[65], partial[66], partial[67]);
  workgroupBarrier();
  return total;
}

fn vote(s: vec4<f32>, needed: f32) -> vec4<u32> {
  return select(vec4<u32>(0u), vec4<u32>(1u), s >= vec4<f32>(needed));
}

// One level of the radix select of a threshold t: the largest key with W(key ≥ t) ≥ needed,
// where W sums a weight over the row: 1 per element (top-k: needed = k), or exp((x − m) / T) for
// the elements with key ≥ floorKey (top-p: needed = p · their total, known after level 0). The
// level fixes 4 more bits of `prefix`: it sums W at the 16 candidates prefix + b·2^shift
// (b = 0..15) and keeps the last b that still reaches `needed` (W is non-increasing in the
// threshold, and b = 0 reached it at the level before).
struct Search {
  prefix: u32,
  needed: f32,
}

fn select_level(lid: u32, base: u32, rowMax: f32, floorKey: u32, byMass: bool, level: u32, search: Search) -> Search {
  let step = 1u << (28u - 4u * level);
  let c0 = vec4<u32>(search.prefix) + vec4<u32>(0u, 1u, 2u, 3u) * step;
  let c1 = c0 + vec4<u32>(4u * step);
  let c2 = c0 + vec4<u32>(8u * step);
  let c3 = c0 + vec4<u32>(12u * step);
  var a = array<vec4<f32>, 4>();
  for (var i = lid; i < params.vocab; i += WG) {
    let x = logits[base + i];
    let key = order_key(x);
    var w = 1.0;
    if (byMass) {
      w = select(0.0, exp((x - rowMax) / params.temperature), key >= floorKey);
    }
    let k = vec4<u32>(key);
    let wv = vec4<f32>(w);
    let zero = vec4<f32>(0.0);
    a[0] += select(zero, wv, k >= c0);
    a[1] += select(zero, wv, k >= c1);
    a[2] += select(zero, wv, k >= c2);
    a[3] += select(zero, wv, k >= c3);
  }
  let s = workgroup_sum(lid, a);
  var needed = search.needed;
  if (byMass && level == 0u) {
    needed *= s[0].x;
  }
  let reached = dot(vote(s[0], needed) + vote(s[1], needed) + vote(s[2], needed) + vote(s[3], needed), vec4<u32>(1u));
  return Search(search.prefix + (max(reached, 1u) - 1u) * step, needed);
}

// high 32 bits of a · b.
fn mul_hi(a: u32, b: u32) -> u32 {
  let a0 = a & 0xffffu;
  let a1 = a >> 16u;
  let b0 = b & 0xffffu;
  let b1 = b >> 16u;
  let cross1 = a1 * b0;
  let cross2 = a0 * b1;
  let carry = (((a0 * b0) >> 16u) + (cross1 & 0xffffu) + (cross2 & 0xffffu)) >> 16u;
  return a1 * b1 + (cross1 >> 16u) + (cross2 >> 16u) + carry;
}

// Philox2x32-10 (Salmon et al., SC'11; Random123's philox2x32 with 10 rounds).
fn philox2x32_10(counter: vec2<u32>, key: u32) -> vec2<u32> {
  var c = counter;
  var k = key;
  for (var round = 0u; round < 10u; round++) {
    c = vec2<u32>(mul_hi(0xd256d193u, c.x) ^ k ^ c.y, 0xd256d193u * c.x);
    k += 0x9e3779b9u;
  }
  return c;
}

// E ~ Exp(1) for token j: E = −log(1 − U), U = (hi + (lo + ½)·2⁻³²)·2⁻³² ∈ (0, 1), with log1p's
// series below U = 1/16 so small E (the likely winners) keep their relative precision.
fn exponential_noise(seed: u32, j: u32) -> f32 {
  let bits = philox2x32_10(vec2<u32>(j, 0u), seed);
  let u = (f32(bits.x) + (f32(bits.y) + 0.5) * 0x1p-32f) * 0x1p-32f;
  let series = u * (1.0 + u * (1.0 / 2.0 + u * (1.0 / 3.0 + u * (1.0 / 4.0 + u * (1.0 / 5.0 + u * (1.0 / 6.0))))));
  return select(-log(1.0 - u), series, u < 0.0625);
}

@compute @workgroup_size(WG)
fn sample_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * params.groupsX;
  if (row >= params.rows) {
    return;
  }
  let base = row * params.vocab;

  var value = 0.0;
  var index = NONE;
  for (var i = lid; i < params.vocab; i += WG) {
    let x = logits[base + i];
    if (better(x, i, value, index)) {
      value = x;
      index = i;
    }
  }
  let greedy = workgroup_argmax(lid, value, index);
  if (params.temperature == 0.0) {
    if (lid == 0u) {
      ids[row] = greedy;
    }
    return;
  }
  let rowMax = logits[base + greedy];

  // Passes 0-7 select the top-k threshold, 8-15 the top-p one; the host sets the range to the
  // active ones. One loop, one call site: lavapipe's compile time grows fast with every copy of
  // a loop with barriers.
  var cut = 0u;
  var search = Search(0u, 0.0);
  for (var searchPass = params.firstPass; searchPass < params.endPass; searchPass++) {
    let byMass = searchPass >= 8u;
    let level = searchPass % 8u;
    if (level == 0u) {
      search = Search(0u, select(f32(params.topK), params.topP, byMass));
    }
    search = select_level(lid, base, rowMax, cut, byMass, level, search);
    if (level == 7u) {
      cut = search.prefix;
    }
  }

  let seed = seeds[row];
  var score = 0.0;
  var drawn = NONE;
  for (var i = lid; i < params.vocab; i += WG) {
    let x = logits[base + i];
    let z = (x - rowMax) / params.temperature;
    if (x >= LOWEST_FINITE && order_key(x) >= cut && exp(z) >= params.minP) {
      let s = z - log(exponential_noise(seed, i));
      if (better(s, i, score, drawn)) {
        score = s;
        drawn = i;
      }
    }
  }
  let winner = workgroup_argmax(lid, score, drawn);
  if (lid == 0u) {
    ids[row] = select(winner, greedy, winner == NONE);
  }
}
