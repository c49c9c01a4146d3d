// argmax.wgsl: the index of each row's largest value, lowest index on ties (as torch.argmax).
// Shapes: x (R, N) f32; out (R) u32. Grid: (R) folded into 2-D past 65,535; 256 threads per row,
// each scanning a strided share, then a shared-memory tree of (value, index) pairs.
// Reference: referenceArgmax in src/ops/argmax.ts.

struct Params {
  rows: u32,
  cols: u32,
  groupsX: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

var<workgroup> bestValue: array<f32, 256>;
var<workgroup> bestIndex: array<u32, 256>;

fn better(v: f32, i: u32, w: f32, j: u32) -> bool {
  return v > w || (v == w && i < j);
}

@compute @workgroup_size(256)
fn argmax_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * params.groupsX;
  if (row >= params.rows) {
    return;
  }
  var v = -3.4e38;
  var i = 0xffffffffu;
  for (var c = lid; c < params.cols; c += 256u) {
    let value = x[row * params.cols + c];
    if (better(value, c, v, i)) {
      v = value;
      i = c;
    }
  }
  bestValue[lid] = v;
  bestIndex[lid] = i;
  workgroupBarrier();
  for (var stride = 128u; stride > 0u; stride /= 2u) {
    if (lid < stride && better(bestValue[lid + stride], bestIndex[lid + stride], bestValue[lid], bestIndex[lid])) {
      bestValue[lid] = bestValue[lid + stride];
      bestIndex[lid] = bestIndex[lid + stride];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    out[row] = bestIndex[0];
  }
}
