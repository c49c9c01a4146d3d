// adamw.wgsl: one AdamW update (decoupled weight decay, Loshchilov & Hutter) of an f32 parameter,
// with the arithmetic of PyTorch's torch.optim.AdamW (foreach / single-tensor, not fused):
//   g  = grad · gradScale                       (clip_grad_norm_ scales the gradient first)
//   p  = p · (1 − lr·wd)                        (only where the tensor decays)
//   m  = lerp(m, g, 1 − β1)                     (torch.lerp's two-sided formula)
//   v  = v · β2 + (1 − β2) · g²
//   p  = p − (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
// The host computes the scalars (1 − lr·wd, lr / (1 − β1^t), sqrt(1 − β2^t), ...) in float64 and
// rounds them to f32 once per step, as PyTorch passes Python floats to its f32 kernels.
//
// Shapes: param, grad, m, v (n) f32, one binding window of a tensor (see bindingWindows); m, v are
// the optimiser state (exp_avg, exp_avg_sq). Grid: one thread per element, 256 per workgroup,
// (groupsX, ceil(n / 256 / groupsX)) workgroups.
// Reference: referenceAdamW in src/optim/adamw.ts (float64).

struct Window {
  n: u32,
  groupsX: u32,
  decay: u32,   // 1 where weight decay applies to this tensor
  _pad: u32,
}

struct Step {
  gradScale: f32,
  decayFactor: f32,    // 1 − lr·wd
  lerpWeight: f32,     // 1 − β1
  beta2: f32,
  oneMinusBeta2: f32,
  stepSize: f32,       // lr / (1 − β1^t)
  bias2Sqrt: f32,      // sqrt(1 − β2^t)
  eps: f32,
  _pad0: f32,
  _pad1: f32,
  _pad2: f32,
  _pad3: f32,
}

@group(0) @binding(0) var<uniform> window: Window;
@group(0) @binding(1) var<uniform> hp: Step;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> expAvg: array<f32>;
@group(0) @binding(5) var<storage, read_write> expAvgSq: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn adamw_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * window.groupsX) * WG + lid;
  if (i >= window.n) {
    return;
  }
  let g = grad[i] * hp.gradScale;
  var p = param[i];
  if (window.decay != 0u) {
    p = p * hp.decayFactor;
  }
  let mPrev = expAvg[i];
  // torch.lerp(start, end, w): start + w·(end − start) for w < 0.5, else end − (end − start)·(1 − w).
  var m: f32;
  if (hp.lerpWeight < 0.5) {
    m = mPrev + hp.lerpWeight * (g - mPrev);
  } else {
    m = g - (g - mPrev) * (1.0 - hp.lerpWeight);
  }
  let v = expAvgSq[i] * hp.beta2 + hp.oneMinusBeta2 * (g * g);
  let denom = sqrt(v) / hp.bias2Sqrt + hp.eps;
  param[i] = p - hp.stepSize * (m / denom);
  expAvg[i] = m;
  expAvgSq[i] = v;
}
