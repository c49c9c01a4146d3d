// matmul.wgsl: C = A · B in f32.
//
// Shapes (row-major, any sizes; edges are masked): A (M, K), B (K, N), C (M, N).
// Grid: (ceil(N / 64), ceil(M / 64)) workgroups of 16 × 16 threads. Each workgroup stages 64 × 16
// tiles of A and 16 × 64 tiles of B in workgroup memory; each thread accumulates a 4 × 4 block
// of C in f32 registers. Shapes travel in the uniform, so one pipeline serves every shape.
// Reference: referenceMatmul in src/ops/matmul.ts (float64).

struct Params {
  m: u32,
  n: u32,
  k: u32,
  _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const TILE: u32 = 64u;
const DEPTH: u32 = 16u;

var<workgroup> tileA: array<array<f32, TILE>, DEPTH>;   // [k][row]
var<workgroup> tileB: array<array<f32, TILE>, DEPTH>;   // [k][col]

@compute @workgroup_size(16, 16)
fn matmul_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row0 = wid.y * TILE;
  let col0 = wid.x * TILE;
  let thread = lid.y * 16u + lid.x;
  var acc: array<vec4<f32>, 4>;

  for (var k0 = 0u; k0 < params.k; k0 += DEPTH) {
    for (var j = 0u; j < 4u; j++) {
      let i = thread + 256u * j;
      let r = i / DEPTH;
      let ka = k0 + i % DEPTH;
      var va = 0.0;
      if (row0 + r < params.m && ka < params.k) {
        va = a[(row0 + r) * params.k + ka];
      }
      tileA[i % DEPTH][r] = va;
      let kb = k0 + i / TILE;
      let col = col0 + i % TILE;
      var vb = 0.0;
      if (kb < params.k && col < params.n) {
        vb = b[kb * params.n + col];
      }
      tileB[i / TILE][i % TILE] = vb;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < DEPTH; kk++) {
      let bv = vec4(tileB[kk][lid.x * 4u], tileB[kk][lid.x * 4u + 1u], tileB[kk][lid.x * 4u + 2u], tileB[kk][lid.x * 4u + 3u]);
      for (var i = 0u; i < 4u; i++) {
        acc[i] = fma(vec4(tileA[kk][lid.y * 4u + i]), bv, acc[i]);
      }
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < 4u; i++) {
    let r = row0 + lid.y * 4u + i;
    for (var j = 0u; j < 4u; j++) {
      let col = col0 + lid.x * 4u + j;
      if (r < params.m && col < params.n) {
        c[r * params.n + col] = acc[i][j];
      }
    }
  }
}
