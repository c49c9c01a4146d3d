// copy.wgsl: dst[i] = src[i] over 16-byte elements: the memory-bandwidth ceiling that kernel
// benchmarks are compared against ((read + write) bytes / time).
// Shapes: src, dst of n vec4<u32>. Grid: any; each thread strides by the whole grid.
// Reference: the bytes are identical (checked by the benchmark before timing).

struct Params {
  n: u32,
  stride: u32,   // total threads in the grid
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(256)
fn copy_main(@builtin(global_invocation_id) gid: vec3<u32>) {
  for (var i = gid.x; i < params.n; i += params.stride) {
    dst[i] = src[i];
  }
}
