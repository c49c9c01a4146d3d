// rmsnorm_backward.wgsl: the gradients of y = x · rstd · w, rstd = 1 / sqrt(mean(x²) + eps), per row:
//   dx    += rstd · dy ⊙ w − x · rstd³ · (Σ_i dy_i w_i x_i) / H     (added: dx is the residual stream's gradient)
//   dw    += Σ_rows dy ⊙ x · rstd                                   (a parameter gradient, accumulated)
//
// Shapes (row-major): x, dy, dx (R, H) f32; w, dw (H) f32; dx aliases none of x, dy.
// Two dispatches, deterministic (no atomics; every sum has an order fixed by the shape):
//   rows_main: one workgroup of 256 threads per group of ROWS_PER_GROUP = 16 rows, (groupsX,
//     ceil(groups / groupsX)) workgroups. First ROW_LANES lanes per row (an override: 16, or more
//     for long rows, so that a lane sums at most 64 columns) sum (x², dy·w·x) over strided
//     columns, and a tree in workgroup memory adds the lanes of 256 / ROW_LANES rows at once
//     into each row's coefficients (16 lanes: all 16 rows, 4 barriers); then each thread walks its columns (stride 256)
//     down the group's rows, adding to dx and summing dy·x·rstd for its column into
//     partials[group, column]. x and dy are read coalesced, once from memory (the second walk
//     finds the group's rows in cache).
//   weight_main: one workgroup per 32 columns, 8 lanes per column: lane l sums partials of groups
//     l, l + 8, ... in order, a fixed tree adds the 8 lanes, and dw += the result.
// Reference: referenceRmsNormBackward in src/ops/rmsnorm-backward.ts (float64).

struct Params {
  rows: u32,
  h: u32,
  groupsX: u32,
  eps: f32,
  groups: u32,      // ceil(rows / ROWS_PER_GROUP): rows of partials
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;   // (groups, H)
// rows_main
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
// weight_main (binding 2 is x's in rows_main: no entry point uses both)
@group(0) @binding(2) var<storage, read_write> dw: array<f32>;

const WG: u32 = 256u;
const ROWS_PER_GROUP: u32 = 16u;   // src/ops/rmsnorm-backward.ts ROWS_PER_GROUP
override ROW_LANES: u32 = 16u;   // threads per row while the coefficients are summed: 16 … 256
const COLUMNS: u32 = 32u;          // weight_main: columns per workgroup
const LANES: u32 = 8u;             // weight_main: WG / COLUMNS

var<workgroup> sums: array<vec2<f32>, WG>;
var<workgroup> coefficients: array<vec2<f32>, ROWS_PER_GROUP>;   // (rstd, rstd³ · Σ dy·w·x / H)
var<workgroup> lanes: array<f32, WG>;

@compute @workgroup_size(WG)
fn rows_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let group = wid.x + wid.y * params.groupsX;
  if (group >= params.groups) {
    return;
  }
  let first = group * ROWS_PER_GROUP;
  let count = min(ROWS_PER_GROUP, params.rows - first);
  let h = params.h;
  let lane = lid % ROW_LANES;
  for (var done = 0u; done < ROWS_PER_GROUP; done += WG / ROW_LANES) {
    let r = done + lid / ROW_LANES;
    let base = (first + r) * h;
    var s = vec2(0.0);
    for (var i = lane; i < select(0u, h, r < count); i += ROW_LANES) {
      let v = x[base + i];
      s = fma(vec2(v), vec2(v, dy[base + i] * w[i]), s);
    }
    sums[lid] = s;
    workgroupBarrier();
    for (var stride = ROW_LANES / 2u; stride > 0u; stride >>= 1u) {
      if (lane < stride) {
        sums[lid] += sums[lid + stride];
      }
      workgroupBarrier();
    }
    if (lane == 0u && r < count) {
      let mean = sums[lid] / f32(h);
      let rstd = inverseSqrt(mean.x + params.eps);
      coefficients[r] = vec2(rstd, rstd * rstd * rstd * mean.y);
    }
    workgroupBarrier();
  }
  for (var i = lid; i < h; i += WG) {
    let wi = w[i];
    var dwi = 0.0;
    for (var r = 0u; r < count; r++) {
      let e = (first + r) * h + i;
      let c = coefficients[r];
      let xe = x[e];
      let g = dy[e];
      dx[e] += c.x * (g * wi) - c.y * xe;
      dwi = fma(g, xe * c.x, dwi);
    }
    partials[group * h + i] = dwi;
  }
}

@compute @workgroup_size(WG)
fn weight_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let column = (wid.x + wid.y * params.groupsX) * COLUMNS + lid % COLUMNS;
  let lane = lid / COLUMNS;
  var s = 0.0;
  if (column < params.h) {
    for (var g = lane; g < params.groups; g += LANES) {
      s += partials[g * params.h + column];
    }
  }
  lanes[lid] = s;
  workgroupBarrier();
  for (var stride = LANES / 2u; stride > 0u; stride >>= 1u) {
    if (lane < stride) {
      lanes[lid] += lanes[lid + stride * COLUMNS];
    }
    workgroupBarrier();
  }
  if (lane == 0u && column < params.h) {
    dw[column] += lanes[lid];
  }
}
