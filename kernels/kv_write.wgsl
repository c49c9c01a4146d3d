// kv_write.wgsl: scatters key or value rows into a per-sequence cache.
// Shapes: src (B, T, W) f32 with W = kvHeads · headDim; positions (B, T) u32; cache (B, maxLen, W).
//   cache[b, positions[b, t], :] = src[b, t, :]  for t < T with positions[b, t] < maxLen
// (rows whose position is ≥ maxLen, i.e. padding, are skipped).
// Grid: (ceil(W / 64), B · T) folded into 2-D past 65,535 rows; one thread per element.
// Reference: referenceKvWrite in src/ops/kv-cache.ts.

struct Params {
  rows: u32,      // B · T
  seqLen: u32,    // T
  width: u32,     // W
  maxLen: u32,
  groupsY: u32,   // rows per grid column fold
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read_write> cache: array<f32>;

@compute @workgroup_size(64)
fn kv_write_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.y + wid.z * params.groupsY;
  let i = wid.x * 64u + lid;
  if (row >= params.rows || i >= params.width) {
    return;
  }
  let pos = positions[row];
  if (pos >= params.maxLen) {
    return;
  }
  let b = row / params.seqLen;
  cache[(b * params.maxLen + pos) * params.width + i] = src[row * params.width + i];
}
