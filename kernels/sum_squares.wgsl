// sum_squares.wgsl: Σ x² of each of many f32 tensors (the gradients, for global-norm clipping),
// in a fixed order, so that the same gradients always give the same bits.
//
// Two stages, recorded in one pass (WebGPU orders the dispatches):
//   block_main   one dispatch per binding window of a tensor: x (n) f32 is cut into blocks of
//                BLOCK = 4096 elements; workgroup b (256 threads, each summing 16 elements at a
//                stride of 256 with fma) reduces its block by a tree in workgroup memory and writes
//                partials[partialOffset + b]. Grid (groupsX, ceil(blocks / groupsX)).
//   tensor_main  one dispatch for all tensors: workgroup t (256 threads) adds the partials
//                [ranges[t].start, + ranges[t].count) at a stride of 256, reduces them by a tree
//                and writes out[t]. Grid (groupsX, ceil(tensors / groupsX)).
// Window sizes are multiples of BLOCK, so a tensor's blocks, and thus its sum, do not depend on how
// it is cut into binding windows. Accumulation is f32 throughout (as PyTorch's CUDA norm of an f32
// tensor): a sum overflows to +inf when the true value passes 3.4e38.
// Reference: referenceSumSquares in src/optim/grad-norm.ts (float64).

struct Params {
  n: u32,             // block_main: elements in the window; tensor_main: tensors
  partialOffset: u32, // block_main: index of the window's first partial
  groupsX: u32,
  _pad: u32,
}

struct Range {
  start: u32,
  count: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> partials: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;         // block_main only
@group(0) @binding(3) var<storage, read> ranges: array<Range>;  // tensor_main only
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // tensor_main only

const WG: u32 = 256u;
const PER_THREAD: u32 = 16u;
const BLOCK: u32 = WG * PER_THREAD;

var<workgroup> tree: array<f32, WG>;

// Adds tree[0..WG) into tree[0]; every thread calls it after writing tree[lid].
fn reduce_tree(lid: u32) {
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lid < stride) {
      tree[lid] += tree[lid + stride];
    }
    workgroupBarrier();
  }
}

@compute @workgroup_size(WG)
fn block_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let block = wid.x + wid.y * params.groupsX;
  let begin = block * BLOCK;
  // Uniform control flow: the grid's tail workgroups (block past the end) still join the barriers.
  var s = 0.0;
  if (begin < params.n) {
    let end = min(begin + BLOCK, params.n);
    for (var i = begin + lid; i < end; i += WG) {
      let v = x[i];
      s = fma(v, v, s);
    }
  }
  tree[lid] = s;
  reduce_tree(lid);
  if (lid == 0u && begin < params.n) {
    partials[params.partialOffset + block] = tree[0];
  }
}

@compute @workgroup_size(WG)
fn tensor_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tensor = wid.x + wid.y * params.groupsX;
  var s = 0.0;
  if (tensor < params.n) {
    let range = ranges[tensor];
    for (var i = lid; i < range.count; i += WG) {
      s += partials[range.start + i];
    }
  }
  tree[lid] = s;
  reduce_tree(lid);
  if (lid == 0u && tensor < params.n) {
    out[tensor] = tree[0];
  }
}
