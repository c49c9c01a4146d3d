// swiglu_backward.wgsl: the gradients of act = silu(gate) ⊙ up, silu(g) = g · σ(g), elementwise:
//   dUp   = dAct · silu(gate)
//   dGate = dAct · up · silu'(gate),  silu'(g) = σ(g) + g · σ(g) · (1 − σ(g)).
// Both are overwritten (activation gradients).
//
// Shapes: gate, up, dAct, dGate, dUp (R, I) f32, flattened to n = R · I elements; dGate and dUp
// alias none of the inputs. With e = exp(−|g|) ∈ (0, 1]: σ(g) = 1 / (1 + e) for g ≥ 0 and
// e / (1 + e) for g < 0, and σ(1 − σ) = e / (1 + e)² for either sign, so no intermediate
// overflows: large |g| gives silu' = 1 or 0 (and g · e → 0), never inf or NaN.
// Grid: one thread per element, 256 per workgroup, (groupsX, ceil(n / 256 / groupsX)) workgroups.
// Reference: referenceSwigluBackward in src/ops/swiglu-backward.ts (float64).

struct Params {
  n: u32,
  groupsX: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read> dAct: array<f32>;
@group(0) @binding(4) var<storage, read_write> dGate: array<f32>;
@group(0) @binding(5) var<storage, read_write> dUp: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn swiglu_backward_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * params.groupsX) * WG + lid;
  if (i >= params.n) {
    return;
  }
  let g = gate[i];
  let d = dAct[i];
  let e = exp(-abs(g));
  let onePlusE = 1.0 + e;
  let sigmoid = select(e, 1.0, g >= 0.0) / onePlusE;
  let silu = select(g * e, g, g >= 0.0) / onePlusE;   // as kernels/swiglu.wgsl forms it
  let derivative = sigmoid + g * (e / (onePlusE * onePlusE));
  dUp[i] = d * silu;
  dGate[i] = (d * up[i]) * derivative;
}
