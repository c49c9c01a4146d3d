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
// stores (coalesced across threads) on the aligned body of each work item (same items and windows as the forward) and
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

// The finite-entry gradient coef·p − uniformTerm of four values, as f32 bits.
fn grad_bits(z: vec4<f32>, c: f32, lse2: f32, coef: f32, uniformTerm: f32) -> vec4<u32> {
  return bitcast<vec4<u32>>(coef * exp2(fma(z, vec4(c), vec4(-lse2))) - vec4(uniformTerm));
}

@compute @workgroup_size(WG)
fn backward_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  if (!in_dispatch(wid)) {
    return;
  }
  let it = item_of(wid);
  let sp = span_of(it);
  let invT = params.invTemperature;
  let c = invT * LOG2E;
  let lseBits = logsumexp[it.row];
  let invalid = is_special(lseBits);   // NaN statistics: NaN gradient for the whole row
  let lse2 = bitcast<f32>(lseBits) * LOG2E;
  let gL = select(0.0, gLogprob[it.row] * invT, (params.flags & 2u) != 0u);
  let gS = select(0.0, gSelfCertainty[it.row] * invT, (params.flags & 4u) != 0u);
  let coef = gS - gL;
  let uniformTerm = gS / f32(max(validCount[it.row], 1u));

  let edge = edge_element(it, sp, lid);
  if (edge < sp.end) {
    let bits = element_bits(edge);
    let value = select(grad_bits(vec4(bitcast<f32>(bits)), c, lse2, coef, uniformTerm).x, 0u, bits == NEG_INF_BITS);
    gradUnits[edge / 4u][edge % 4u] = select(value, NAN_BITS, invalid);
  }
  // The body in 4-element groups, one per thread per step, so that each thread's 16-byte store is
  // next to its neighbour's (for 16-bit logits two threads share one 16-byte load instead).
  let firstGroup = sp.bodyStart / 4u;
  let endGroup = sp.bodyEnd / 4u;
  for (var q = firstGroup + lid; q < endGroup; q += WG) {
    let v = logitsUnits[q / GROUPS];
    let h = q % GROUPS;
    let z = unit_values(v, h);
    var out = grad_bits(z, c, lse2, coef, uniformTerm);
    if (needs_classification((z.x + z.y) + (z.z + z.w)) || invalid) {
      out = select(select(out, vec4(0u), unit_group(v, h).negInf), vec4(NAN_BITS), invalid);
    }
    gradUnits[q] = out;
  }

  // The one-hot term gL·δ_{j,id}: thread 0 rewrites the chosen element once every thread of this
  // workgroup has written its share (the barriers order the two stores to that address).
  if ((params.flags & 1u) != 0u) {
    workgroupBarrier();
    storageBarrier();
    if (lid == 0u && !invalid) {
      let id = ids[it.row];
      if (id >= it.colStart && id < it.colStart + it.len) {
        let e = it.start + (id - it.colStart);
        let bits = element_bits(e);
        let base = select(bitcast<f32>(grad_bits(vec4(bitcast<f32>(bits)), c, lse2, coef, uniformTerm).x), 0.0, bits == NEG_INF_BITS);
        gradUnits[e / 4u][e % 4u] = bitcast<u32>(base + gL);
      }
    }
  }
}
