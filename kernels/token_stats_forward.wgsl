// token_stats_forward.wgsl: one-pass token statistics over logits, per row.
//
// Computes, for logits z of shape (N, V) (leading axes flattened) and x = z / T:
//   logsumexp, selfCertainty = KL(U‖p) = lse − mean(x) − log(validCount),
//   entropy = −Σ p log p, logprob = x[id] − lse, validCount = number of finite entries
// where −inf entries are masked out of both p and U, and a row holding NaN or +inf (or no
// finite entry) gets NaN statistics. selfCertainty and entropy are clamped at 0, and are exactly
// 0 for one finite entry. Reference: src/ops/token-stats/reference.ts (float64).
//
// Two entry points, dispatched back to back in one compute pass:
//   partials: one workgroup (WG threads) per work item = one chunk of one row. Each thread
//     streams its share of the chunk ONCE with 16-byte loads, unrolled 4 deep, keeping an online
//     (max, Σe, Σ(x−m)e, Σz, count, bad) state in raw-logit and log2 units, so each element costs
//     one FMA into exp2 (1/T and log2 e folded together) and three adds; groups of 4 whose sum is
//     not finite are classified (−inf masked, NaN/+inf bad) on a slow path. The threads' states
//     are combined by token_stats_reduce.wgsl (subgroup operations where the device has them,
//     else a shared-memory tree); thread 0 also records x[id] when the id falls inside the chunk.
//     Grid: (min(items, 65535), ceil(items / 65535)) workgroups.
//   finalize (bindings 10+): one workgroup per row combines that row's chunk partials (in
//     parallel, then the same workgroup reduction) and writes the outputs as f32 bit patterns (so
//     NaN/−inf are written exactly). Grid: (min(N, 65535), ceil(N / 65535)) workgroups.

// The online state and its combine live in token_stats_online.wgsl (included by
// token_stats_common.wgsl), shared with the fused lm_head kernel (lm_head_stats.wgsl), whose
// second pass is this file's finalize_main.
//!include token_stats_common.wgsl

struct FinalizeParams {
  rows: u32,
  chunksPerRow: u32,
  vocab: u32,
  flags: u32,    // bit 0: ids given
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logitsUnits: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> logitsWords: array<u32>;
@group(0) @binding(3) var<storage, read> ids: array<u32>;
@group(0) @binding(4) var<storage, read_write> partials: array<Partial>;
@group(0) @binding(5) var<storage, read_write> chosen: array<u32>;   // x[id] bits, per row

fn add_unit(st: ptr<function, Stream>, v: vec4<u32>, c: f32) {
  for (var h = 0u; h < GROUPS; h++) {
    let z = unit_values(v, h);
    let groupSum = (z.x + z.y) + (z.z + z.w);
    if (needs_classification(groupSum)) {
      let g = unit_group(v, h);
      add_masked4(st, g.z, !g.special, any(g.special & !g.negInf), c);
    } else {
      add_finite4(st, z, groupSum, c);
    }
  }
}

//!include token_stats_reduce.wgsl

@compute @workgroup_size(WG)
fn partials_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  if (!in_dispatch(wid)) {
    return;
  }
  let it = item_of(wid);
  let sp = span_of(it);
  let invT = params.invTemperature;
  let c = invT * LOG2E;
  var st = Stream(0.0, 0.0, 0.0, 0.0, 0u, 0u);

  let edge = edge_element(it, sp, lid);
  if (edge < sp.end) {
    let bits = element_bits(edge);
    let special = is_special(bits);
    add_masked4(&st, vec4(bitcast<f32>(bits), 0.0, 0.0, 0.0), vec4(!special, false, false, false), special && bits != NEG_INF_BITS, c);
  }

  let firstUnit = sp.bodyStart / UNIT;
  let endUnit = sp.bodyEnd / UNIT;
  var u = firstUnit + lid;
  // Four independent 16-byte loads in flight per thread before any arithmetic.
  while (u + 3u * WG < endUnit) {
    let v0 = logitsUnits[u];
    let v1 = logitsUnits[u + WG];
    let v2 = logitsUnits[u + 2u * WG];
    let v3 = logitsUnits[u + 3u * WG];
    add_unit(&st, v0, c);
    add_unit(&st, v1, c);
    add_unit(&st, v2, c);
    add_unit(&st, v3, c);
    u += 4u * WG;
  }
  while (u < endUnit) {
    add_unit(&st, logitsUnits[u], c);
    u += WG;
  }

  let acc = to_partial(st, invT);
  let total = reduce_workgroup(acc, lid);
  if (lid == 0u) {
    partials[it.index] = total;
    if ((params.flags & 1u) != 0u) {
      let id = ids[it.row];
      if (id >= it.colStart && id < it.colStart + it.len) {
        let bits = element_bits(it.start + (id - it.colStart));
        chosen[it.row] = select(bitcast<u32>(bitcast<f32>(bits) * params.invTemperature), bits, is_special(bits));
      }
    }
  }
}

@group(0) @binding(10) var<uniform> fin: FinalizeParams;
@group(0) @binding(11) var<storage, read> finPartials: array<Partial>;
@group(0) @binding(12) var<storage, read> finIds: array<u32>;
@group(0) @binding(13) var<storage, read> finChosen: array<u32>;
@group(0) @binding(14) var<storage, read_write> outLogsumexp: array<u32>;
@group(0) @binding(15) var<storage, read_write> outSelfCertainty: array<u32>;
@group(0) @binding(16) var<storage, read_write> outEntropy: array<u32>;
@group(0) @binding(17) var<storage, read_write> outLogprob: array<u32>;
@group(0) @binding(18) var<storage, read_write> outValidCount: array<u32>;

@compute @workgroup_size(WG)
fn finalize_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= fin.rows) {
    return;
  }
  var mine = EMPTY;
  for (var k = lid; k < fin.chunksPerRow; k += WG) {
    mine = combine(mine, finPartials[row * fin.chunksPerRow + k]);
  }
  let acc = reduce_workgroup(mine, lid);
  if (lid != 0u) {
    return;
  }
  outValidCount[row] = acc.count;
  let hasIds = (fin.flags & 1u) != 0u;
  if (acc.bad != 0u || acc.count == 0u) {
    outLogsumexp[row] = NAN_BITS;
    outSelfCertainty[row] = NAN_BITS;
    outEntropy[row] = NAN_BITS;
    if (hasIds) {
      outLogprob[row] = NAN_BITS;
    }
    return;
  }
  let logS = log(acc.s);
  let lse = acc.m + logS;
  let n = f32(acc.count);
  outLogsumexp[row] = bitcast<u32>(lse);
  // ≥ 0, and exactly 0 for one finite entry, as in the reference (rounding may go a hair below).
  let single = acc.count == 1u;
  outSelfCertainty[row] = bitcast<u32>(select(max(lse - acc.sum / n - log(n), 0.0), 0.0, single));
  outEntropy[row] = bitcast<u32>(select(max(logS - acc.u / acc.s, 0.0), 0.0, single));
  if (hasIds) {
    let id = finIds[row];
    let c = finChosen[row];
    var lp = NAN_BITS;
    if (id < fin.vocab) {
      lp = select(bitcast<u32>(bitcast<f32>(c) - lse), NEG_INF_BITS, c == NEG_INF_BITS);
    }
    outLogprob[row] = lp;
  }
}
