// add.wgsl: out = a + b elementwise in f32 (residual connections).
//
// Shapes: a, b, out (n) f32. Two entry points:
//   add_main          out = a + b, three distinct buffers (bindings 1, 2, 3);
//   add_inplace_main  acc += b, for out aliasing a (bindings 4, 2): a buffer bound once, read_write.
// Grid: one thread per element, 256 per workgroup, (groupsX, ceil(n / 256 / groupsX)) workgroups.
// Reference: referenceAdd in src/ops/add.ts (float64).

struct Params {
  n: u32,
  groupsX: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> acc: array<f32>;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn add_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * params.groupsX) * WG + lid;
  if (i < params.n) {
    out[i] = a[i] + b[i];
  }
}

@compute @workgroup_size(WG)
fn add_inplace_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * params.groupsX) * WG + lid;
  if (i < params.n) {
    acc[i] = acc[i] + b[i];
  }
}
