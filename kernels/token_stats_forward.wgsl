// token_stats_forward.wgsl: one-pass token statistics over logits, per row.
//
// Computes, for logits z of shape (N, V) (leading axes flattened) and x = z / T:
//   logsumexp, selfCertainty = KL(U‖p) = lse − mean(x) − log(validCount),
//   entropy = −Σ p log p, logprob = x[id] − lse, validCount = number of finite entries
// where −inf entries are masked out of both p and U, and a row holding NaN or +inf (or no
// finite entry) gets NaN statistics. Reference: src/ops/token-stats/reference.ts (float64).
//
// Two entry points, dispatched back to back in one compute pass:
//   partials: one workgroup (WG threads) per work item = one chunk of one row. Each thread
//     streams its share of the chunk ONCE with 16-byte loads, unrolled 4 deep, keeping an online
//     (max m, Σe^{x−m}, Σ(x−m)e^{x−m}, Σx, count, bad) state; a shared-memory tree combines the
//     threads; thread 0 also records x[id] when the chosen id falls inside the chunk.
//     Grid: (min(items, 65535), ceil(items / 65535)) workgroups.
//   finalize (bindings 10+): one thread per row combines that row's chunk partials in order and writes the
//     outputs as f32 bit patterns (so NaN/−inf are written exactly). Grid: ceil(N / 64).

//!include token_stats_common.wgsl

struct Partial {
  m: f32,        // running max (meaningless while s == 0)
  s: f32,        // Σ e^{x−m}
  u: f32,        // Σ (x−m) e^{x−m}
  sum: f32,      // Σ x
  count: u32,    // finite entries
  bad: u32,      // 1 if a NaN or +inf was seen
}

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

const EMPTY = Partial(0.0, 0.0, 0.0, 0.0, 0u, 0u);

// Merges two partial states; either may be empty (s == 0).
fn combine(a: Partial, b: Partial) -> Partial {
  var r: Partial;
  r.sum = a.sum + b.sum;
  r.count = a.count + b.count;
  r.bad = a.bad | b.bad;
  if (b.s == 0.0) {
    r.m = a.m; r.s = a.s; r.u = a.u;
    return r;
  }
  if (a.s == 0.0) {
    r.m = b.m; r.s = b.s; r.u = b.u;
    return r;
  }
  r.m = max(a.m, b.m);
  let da = a.m - r.m;
  let db = b.m - r.m;
  let ea = exp(da);
  let eb = exp(db);
  r.s = a.s * ea + b.s * eb;
  r.u = ea * (a.u + da * a.s) + eb * (b.u + db * b.s);
  return r;
}

// Adds four finite values. The running max only moves when a larger value arrives (rare after
// the first few loads), so the rescaling exp is paid per new maximum, not per group.
fn add_finite4(acc: ptr<function, Partial>, x: vec4<f32>) {
  let mx = max(max(x.x, x.y), max(x.z, x.w));
  if (mx > (*acc).m || (*acc).s == 0.0) {
    let d = select((*acc).m - mx, 0.0, (*acc).s == 0.0);
    let scale = exp(d);
    (*acc).u = scale * ((*acc).u + d * (*acc).s);
    (*acc).s = (*acc).s * scale;
    (*acc).m = mx;
  }
  let dx = x - vec4((*acc).m);
  let e = exp(dx);
  (*acc).u += dot(dx, e);
  (*acc).s += (e.x + e.y) + (e.z + e.w);
  (*acc).sum += (x.x + x.y) + (x.z + x.w);
  (*acc).count += 4u;
}

fn add_finite1(acc: ptr<function, Partial>, x: f32) {
  var one = EMPTY;
  one.m = x; one.s = 1.0; one.u = 0.0; one.sum = x; one.count = 1u;
  *acc = combine(*acc, one);
}

fn add_group(acc: ptr<function, Partial>, g: Group) {
  let x = g.z * params.invTemperature;
  if (!any(g.special)) {
    add_finite4(acc, x);
    return;
  }
  for (var i = 0u; i < 4u; i++) {
    if (g.negInf[i]) {
      continue;
    }
    if (g.special[i]) {
      (*acc).bad = 1u;
    } else {
      add_finite1(acc, x[i]);
    }
  }
}

fn add_unit(acc: ptr<function, Partial>, v: vec4<u32>) {
  for (var h = 0u; h < GROUPS; h++) {
    add_group(acc, unit_group(v, h));
  }
}

var<workgroup> shared_state: array<Partial, WG>;

@compute @workgroup_size(WG)
fn partials_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  if (!in_dispatch(wid)) {
    return;
  }
  let it = item_of(wid);
  let sp = span_of(it);
  var acc = EMPTY;

  let edge = edge_element(it, sp, lid);
  if (edge < sp.end) {
    let bits = element_bits(edge);
    if (bits != NEG_INF_BITS) {
      if (is_special(bits)) {
        acc.bad = 1u;
      } else {
        add_finite1(&acc, bitcast<f32>(bits) * params.invTemperature);
      }
    }
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
    add_unit(&acc, v0);
    add_unit(&acc, v1);
    add_unit(&acc, v2);
    add_unit(&acc, v3);
    u += 4u * WG;
  }
  while (u < endUnit) {
    add_unit(&acc, logitsUnits[u]);
    u += WG;
  }

  shared_state[lid] = acc;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      shared_state[lid] = combine(shared_state[lid], shared_state[lid + stride]);
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    partials[it.index] = shared_state[0];
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

@compute @workgroup_size(64)
fn finalize_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = gid.x + gid.y * nwg.x * 64u;
  if (row >= fin.rows) {
    return;
  }
  var acc = EMPTY;
  for (var k = 0u; k < fin.chunksPerRow; k++) {
    acc = combine(acc, finPartials[row * fin.chunksPerRow + k]);
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
  outSelfCertainty[row] = bitcast<u32>(lse - acc.sum / n - log(n));
  outEntropy[row] = bitcast<u32>(logS - acc.u / acc.s);
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
