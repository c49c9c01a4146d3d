// token_stats_online.wgsl: the online (streaming) statistics of a set of logits, shared by
// kernels/token_stats_forward.wgsl (through token_stats_common.wgsl) and the fused lm_head
// kernel kernels/lm_head_stats.wgsl, so both combine their pieces with the same math.
//
// A Stream is one thread's running state over raw logits z, in log2 units (one FMA into exp2 per
// element); to_partial turns it into a natural-unit Partial; combine merges Partials of disjoint
// sets of entries, in any grouping. −inf entries are masked (left out of p and of U), NaN and +inf
// mark the set bad. Special values are classified from bit patterns, never with float compares:
// WGSL implementations may assume floats are finite. No bindings: includers bring their own.

const NAN_BITS: u32 = 0x7fc00000u;
const LOG2E: f32 = 1.4426950408889634;
const LN2: f32 = 0.6931471805599453;
const NEG_INF_BITS: u32 = 0xff800000u;

fn is_special(bits: u32) -> bool {
  return (bits & 0x7f800000u) == 0x7f800000u;
}

struct Partial {
  m: f32,        // running max (meaningless while s == 0)
  s: f32,        // Σ e^{x−m}
  u: f32,        // Σ (x−m) e^{x−m}
  sum: f32,      // Σ x
  count: u32,    // finite entries
  bad: u32,      // 1 if a NaN or +inf was seen
}

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

// A thread's running state over raw logits z: m = max z, s = Σ 2^{a}, u2 = Σ a·2^{a} with
// a = (z − m)·c and c = log2(e)/T, sum = Σ z. Converted to a natural-unit Partial at the end.
struct Stream {
  m: f32,
  s: f32,
  u2: f32,
  sum: f32,
  count: u32,
  bad: u32,
}

// Moves the running max to `mx` when it grows (rare after the first loads): one exp2 per new max.
fn raise_max(st: ptr<function, Stream>, mx: f32, c: f32) {
  if (mx > (*st).m || (*st).s == 0.0) {
    let d = select(((*st).m - mx) * c, 0.0, (*st).s == 0.0);
    let scale = exp2(d);
    (*st).u2 = scale * ((*st).u2 + d * (*st).s);
    (*st).s = (*st).s * scale;
    (*st).m = mx;
  }
}

// Four finite values; `groupSum` is their sum.
fn add_finite4(st: ptr<function, Stream>, z: vec4<f32>, groupSum: f32, c: f32) {
  raise_max(st, max(max(z.x, z.y), max(z.z, z.w)), c);
  let a = fma(z, vec4(c), vec4(-(*st).m * c));
  let e = exp2(a);
  (*st).u2 += dot(a, e);
  (*st).s += (e.x + e.y) + (e.z + e.w);
  (*st).sum += groupSum;
  (*st).count += 4u;
}

// Four values of which only the `valid` lanes count (the slow path and the unaligned edges).
fn add_masked4(st: ptr<function, Stream>, z: vec4<f32>, valid: vec4<bool>, bad: bool, c: f32) {
  if (bad) {
    (*st).bad = 1u;
  }
  if (!any(valid)) {
    return;
  }
  let zv = select(vec4(-3.0e38), z, valid);
  raise_max(st, max(max(zv.x, zv.y), max(zv.z, zv.w)), c);
  let a = select(vec4(0.0), fma(z, vec4(c), vec4(-(*st).m * c)), valid);
  let e = select(vec4(0.0), exp2(a), valid);
  (*st).u2 += dot(a, e);
  (*st).s += (e.x + e.y) + (e.z + e.w);
  (*st).sum += dot(select(vec4(0.0), z, valid), vec4(1.0));
  (*st).count += dot(select(vec4(0u), vec4(1u), valid), vec4(1u));
}

fn to_partial(st: Stream, invT: f32) -> Partial {
  return Partial(st.m * invT, st.s, st.u2 * LN2, st.sum * invT, st.count, st.bad);
}
