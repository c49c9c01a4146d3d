// swiglu.wgsl: out = silu(gate) ⊙ up, silu(x) = x / (1 + e^{−x}) (the Llama / Qwen2 MLP).
//
// Shapes: gate, up, out (R, I) f32, flattened to n = R · I elements; out must not alias them.
// silu is evaluated with e = exp(−|x|) ∈ (0, 1], as x / (1 + e) for x ≥ 0 and x · e / (1 + e)
// for x < 0, so no intermediate overflows: large |x| gives x or (−)0, never inf or NaN.
// Grid: one thread per element, 256 per workgroup, (groupsX, ceil(n / 256 / groupsX)) workgroups.
// Reference: referenceSwiglu in src/ops/swiglu.ts (float64).

struct Params {
  n: u32,
  groupsX: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

fn silu(v: f32) -> f32 {
  let e = exp(-abs(v));
  return select(v * e, v, v >= 0.0) / (1.0 + e);
}

@compute @workgroup_size(WG)
fn swiglu_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * params.groupsX) * WG + lid;
  if (i < params.n) {
    out[i] = silu(gate[i]) * up[i];
  }
}
