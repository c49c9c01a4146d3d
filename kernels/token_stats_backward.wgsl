// token_stats_backward.wgsl: gradient of per-row log-prob and self-certainty terms w.r.t. logits.
//
// For logits z (N, V), x = z / T, upstream gradients gL (of logprob) and gS (of selfCertainty)
// per row, and the forward's logsumexp and validCount, writes dL/dz (N, V) as f32:
//   dL/dz_j = (1/T) · [gL · (δ_{j,id} − p_j) + gS · (p_j − 1/validCount)]   for finite z_j
//   dL/dz_j = (1/T) · gL · δ_{j,id}                                          for z_j = −inf
// with p_j = e^{x_j − lse}; a row whose logsumexp is NaN (invalid row) gets NaN throughout.
// Reference: referenceBackward in src/ops/token-stats/reference.ts (float64).
//
// One pass: every logit is read once and every gradient written once, with 16-byte loads and
// stores on the aligned body of each work item (same items and windows as the forward) and
// scalar accesses on the unaligned head/tail. The gradient buffer's size is a multiple of 16 bytes. One workgroup per item; grid as the forward's.

//!include token_stats_common.wgsl

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logitsUnits: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> logitsWords: array<u32>;
@group(0) @binding(3) var<storage, read> ids: array<u32>;
@group(0) @binding(4) var<storage, read> logsumexp: array<u32>;
@group(0) @binding(5) var<storage, read> validCount: array<u32>;
@group(0) @binding(6) var<storage, read> gLogprob: array<f32>;
@group(0) @binding(7) var<storage, read> gSelfCertainty: array<f32>;
@group(0) @binding(8) var<storage, read_write> gradUnits: array<vec4<u32>>;

struct RowTerms {
  invalid: bool,
  lse: f32,
  gL: f32,      // gL / T
  gS: f32,      // gS / T
  uniformTerm: f32, // gS / (T · validCount)
  id: u32,      // chosen column, or 0xffffffff
}

fn grad_group(x: vec4<f32>, g: Group, col: u32, t: RowTerms) -> vec4<u32> {
  let p = exp(x - vec4(t.lse));
  let onehot = select(vec4(0.0), vec4(t.gL), vec4(col) + vec4(0u, 1u, 2u, 3u) == vec4(t.id));
  let finiteGrad = onehot + (t.gS - t.gL) * p - vec4(t.uniformTerm);
  let bits = select(bitcast<vec4<u32>>(finiteGrad), bitcast<vec4<u32>>(onehot), g.negInf);
  return select(bits, vec4(NAN_BITS), vec4(t.invalid));
}

@compute @workgroup_size(WG)
fn backward_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  if (!in_dispatch(wid)) {
    return;
  }
  let it = item_of(wid);
  let sp = span_of(it);
  let invT = params.invTemperature;

  var t: RowTerms;
  let lseBits = logsumexp[it.row];
  t.invalid = is_special(lseBits);
  t.lse = bitcast<f32>(lseBits);
  t.gL = select(0.0, gLogprob[it.row] * invT, (params.flags & 2u) != 0u);
  t.gS = select(0.0, gSelfCertainty[it.row] * invT, (params.flags & 4u) != 0u);
  t.uniformTerm = t.gS / f32(max(validCount[it.row], 1u));
  t.id = select(0xffffffffu, ids[it.row], (params.flags & 1u) != 0u);

  let edge = edge_element(it, sp, lid);
  if (edge < sp.end) {
    let bits = element_bits(edge);
    var g: Group;
    g.z = vec4(bitcast<f32>(bits), 0.0, 0.0, 0.0);
    g.negInf = vec4(bits == NEG_INF_BITS, false, false, false);
    let col = it.colStart + (edge - it.start);
    // A 4-byte component store: neighbouring items may share this vec4 (WebGPU forbids a
    // second, aliasing u32 view of a writable buffer).
    gradUnits[edge / 4u][edge % 4u] = grad_group(g.z * invT, g, col, t).x;
  }

  let firstUnit = sp.bodyStart / UNIT;
  let endUnit = sp.bodyEnd / UNIT;
  for (var u = firstUnit + lid; u < endUnit; u += WG) {
    let v = logitsUnits[u];
    for (var h = 0u; h < GROUPS; h++) {
      let g = unit_group(v, h);
      let e = u * UNIT + h * 4u;
      gradUnits[e / 4u] = grad_group(g.z * invT, g, it.colStart + (e - it.start), t);
    }
  }
}
