// linear_backward.wgsl: gradients of y = x · Wᵀ + b (kernels/linear.wgsl), f32 throughout.
//
// Shapes (row-major, any sizes; edges are masked): x (M, K), W (N, K) as nn.Linear stores it,
// dy (M, N); outputs dx (M, K), dW (N, K), db (N).
//   dx_main:  dx  = dy · W       ((M, N) · (N, K)); overwritten, or added to with ACCUMULATE_DX.
//   dw_main:  dW += dyᵀ · x      ((N, M) · (M, K)), and db += Σ_rows dy with HAS_BIAS. The M rows
//             are cut into `splits` consecutive ranges of `splitRows` (a multiple of DEPTH) so that
//             narrow weights (N = 128) still fill the GPU; with one range the tile is added to
//             dW / db directly, with several (WRITE_PARTIALS) each range stores its partial tile
//             into a scratch buffer of splits · N · K (and splits · N) values, and
//   sum_main: adds the partials of each element in range order into dW / db.
// Every sum therefore has a fixed order (rows ascending inside a range, ranges ascending), so
// the result depends only on the shape, never on scheduling: no atomics.
// Row windows (src/ops/split.ts): W (and dW) may be rows [column, column + N) of a larger weight,
//   bound on their own; dy is then columns [column, column + N) of an (M, dyStride) gradient and
//   db the whole bias's, written at column + j. The caller takes the split over rows from the
//   whole shape, so each dW element is summed as in an unsplit run. dx over several windows is one
//   chain of fma: the first window starts it at zero, each later one (CONTINUE_DX) picks up the
//   accumulators from dx, so dx is bit for bit the one-buffer result.
//
// Grids: dx_main (ceil(K / 64), ceil(M / 64)); dw_main (ceil(K / 64), ceil(N / 64), splits), both
// of 16 × 16 threads; sum_main (groupsX, ·) of 256 threads, one element each.
// The matrix entries stage a 64-wide, DEPTH-deep slab of each operand per step in workgroup
// memory as vec4s, and each thread accumulates a 4 × 4 block of the 64 × 64 output tile in f32
// registers (two 16-byte workgroup reads per 16 fma). Global reads fetch 4 consecutive
// elements of a row: one 16-byte load from the `…Quads` view of the same buffer when the row
// length (and a window's first and last column of dy) is a multiple of 4 (N_ALIGNED, K_ALIGNED;
// else that view is a placeholder), else one
// element at a time. In dw_main the first column of workgroups (wid.x = 0) also sums the dy
// rows it stages into db, for free. Shapes travel in the uniform; overrides only pick code.
// Reference: referenceLinearBackward in src/ops/linear-backward.ts (float64).

struct Params {
  m: u32,
  n: u32,
  k: u32,
  splitRows: u32,
  splits: u32,
  groupsX: u32,   // sum_main's grid width
  dyStride: u32,  // dy's row length: N, or the whole weight's rows when W is one row window of it
  column: u32,    // dy's (and db's) column of W's row 0: 0, or the window's first row
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> dyQuads: array<vec4<f32>>;   // dy when N_ALIGNED
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> wQuads: array<vec4<f32>>;    // W when K_ALIGNED
@group(0) @binding(5) var<storage, read> x: array<f32>;
@group(0) @binding(6) var<storage, read> xQuads: array<vec4<f32>>;    // x when K_ALIGNED
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;
@group(0) @binding(8) var<storage, read_write> gradW: array<f32>;     // dW, or the partials when WRITE_PARTIALS
@group(0) @binding(9) var<storage, read_write> gradB: array<f32>;     // likewise for db; a placeholder without HAS_BIAS
@group(0) @binding(10) var<storage, read> partialW: array<f32>;
@group(0) @binding(11) var<storage, read> partialB: array<f32>;
@group(0) @binding(12) var<storage, read_write> dWeight: array<f32>;
@group(0) @binding(13) var<storage, read_write> dBias: array<f32>;

override N_ALIGNED: bool = false;
override K_ALIGNED: bool = false;
override ACCUMULATE_DX: bool = false;
override CONTINUE_DX: bool = false;   // accumulators start from dx (a later row window), else from 0
override HAS_BIAS: bool = false;
override WRITE_PARTIALS: bool = false;

const TILE: u32 = 64u;
const QUADS: u32 = 16u;   // TILE / 4: a thread's 4 rows or columns of the tile are one vec4
const DEPTH: u32 = 16u;   // reduction elements staged per step
const SUM_WG: u32 = 256u;

var<workgroup> tileA: array<array<vec4<f32>, QUADS>, DEPTH>;   // [reduction][output-row quad]
var<workgroup> tileB: array<array<vec4<f32>, QUADS>, DEPTH>;   // [reduction][output-column quad]

// dy[row, col..col+3], zeros past rowEnd or past N.
fn dy_quad(row: u32, col: u32, rowEnd: u32) -> vec4<f32> {
  var v = vec4(0.0);
  if (row < rowEnd && col < params.n) {
    let e = row * params.dyStride + params.column + col;
    if (N_ALIGNED) {
      v = dyQuads[e / 4u];
    } else {
      for (var c = 0u; c < 4u && col + c < params.n; c++) {
        v[c] = dy[e + c];
      }
    }
  }
  return v;
}

// W[row, col..col+3], zeros past N or K.
fn w_quad(row: u32, col: u32) -> vec4<f32> {
  var v = vec4(0.0);
  if (row < params.n && col < params.k) {
    let e = row * params.k + col;
    if (K_ALIGNED) {
      v = wQuads[e / 4u];
    } else {
      for (var c = 0u; c < 4u && col + c < params.k; c++) {
        v[c] = w[e + c];
      }
    }
  }
  return v;
}

// x[row, col..col+3], zeros past rowEnd or past K.
fn x_quad(row: u32, col: u32, rowEnd: u32) -> vec4<f32> {
  var v = vec4(0.0);
  if (row < rowEnd && col < params.k) {
    let e = row * params.k + col;
    if (K_ALIGNED) {
      v = xQuads[e / 4u];
    } else {
      for (var c = 0u; c < 4u && col + c < params.k; c++) {
        v[c] = x[e + c];
      }
    }
  }
  return v;
}

// acc[i][c] += Σ_d tileA[d][row i of the thread] · tileB[d][column c of the thread], d ascending.
fn multiply_staged(acc: ptr<function, array<vec4<f32>, 4>>, lid: vec3<u32>) {
  for (var d = 0u; d < DEPTH; d++) {
    let a = tileA[d][lid.y];
    let b = tileB[d][lid.x];
    for (var i = 0u; i < 4u; i++) {
      (*acc)[i] = fma(vec4(a[i]), b, (*acc)[i]);
    }
  }
}

@compute @workgroup_size(16, 16)
fn dx_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row0 = wid.y * TILE;   // rows of dy and dx
  let col0 = wid.x * TILE;   // columns of W and dx
  let thread = lid.y * 16u + lid.x;
  // dy slab: 64 rows × DEPTH, 4 threads per row; stored transposed so rows are the vec4 lanes.
  let dyRow = thread / 4u;
  let dyQuad = thread % 4u;
  // W slab: DEPTH rows × 64 columns, 16 threads per row.
  let wRow = thread / QUADS;
  let wQuad = thread % QUADS;
  var acc: array<vec4<f32>, 4>;
  if (CONTINUE_DX) {
    for (var i = 0u; i < 4u; i++) {
      let r = row0 + 4u * lid.y + i;
      for (var c = 0u; c < 4u; c++) {
        let p = col0 + 4u * lid.x + c;
        if (r < params.m && p < params.k) {
          acc[i][c] = dx[r * params.k + p];
        }
      }
    }
  }

  for (var j0 = 0u; j0 < params.n; j0 += DEPTH) {
    let a = dy_quad(row0 + dyRow, j0 + 4u * dyQuad, params.m);
    for (var c = 0u; c < 4u; c++) {
      tileA[4u * dyQuad + c][dyRow / 4u][dyRow % 4u] = a[c];
    }
    tileB[wRow][wQuad] = w_quad(j0 + wRow, col0 + 4u * wQuad);
    workgroupBarrier();
    multiply_staged(&acc, lid);
    workgroupBarrier();
  }

  for (var i = 0u; i < 4u; i++) {
    let r = row0 + 4u * lid.y + i;
    if (r >= params.m) {
      break;
    }
    for (var c = 0u; c < 4u; c++) {
      let p = col0 + 4u * lid.x + c;
      if (p < params.k) {
        if (ACCUMULATE_DX) {
          dx[r * params.k + p] += acc[i][c];
        } else {
          dx[r * params.k + p] = acc[i][c];
        }
      }
    }
  }
}

@compute @workgroup_size(16, 16)
fn dw_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let j0 = wid.y * TILE;   // rows of dW: columns of dy
  let p0 = wid.x * TILE;   // columns of dW: columns of x
  let rowStart = wid.z * params.splitRows;
  let rowEnd = min(params.m, rowStart + params.splitRows);
  let thread = lid.y * 16u + lid.x;
  // Both slabs: DEPTH rows of the reduction × 64 columns, 16 threads per row.
  let slabRow = thread / QUADS;
  let slabQuad = thread % QUADS;
  let sumsBias = HAS_BIAS && wid.x == 0u;
  var acc: array<vec4<f32>, 4>;
  var biasAcc = vec4(0.0);

  for (var r0 = rowStart; r0 < rowEnd; r0 += DEPTH) {
    tileA[slabRow][slabQuad] = dy_quad(r0 + slabRow, j0 + 4u * slabQuad, rowEnd);
    tileB[slabRow][slabQuad] = x_quad(r0 + slabRow, p0 + 4u * slabQuad, rowEnd);
    workgroupBarrier();
    multiply_staged(&acc, lid);
    if (sumsBias) {
      for (var d = 0u; d < DEPTH; d++) {
        biasAcc += tileA[d][lid.y];
      }
    }
    workgroupBarrier();
  }

  let nk = params.n * params.k;
  for (var i = 0u; i < 4u; i++) {
    let j = j0 + 4u * lid.y + i;
    if (j >= params.n) {
      break;
    }
    for (var c = 0u; c < 4u; c++) {
      let p = p0 + 4u * lid.x + c;
      if (p < params.k) {
        if (WRITE_PARTIALS) {
          gradW[wid.z * nk + j * params.k + p] = acc[i][c];
        } else {
          gradW[j * params.k + p] += acc[i][c];
        }
      }
    }
    if (sumsBias && lid.x == 0u) {
      if (WRITE_PARTIALS) {
        gradB[wid.z * params.n + j] = biasAcc[i];
      } else {
        gradB[params.column + j] += biasAcc[i];
      }
    }
  }
}

@compute @workgroup_size(SUM_WG)
fn sum_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let e = (wid.y * params.groupsX + wid.x) * SUM_WG + lid;
  let nk = params.n * params.k;
  if (e < nk) {
    var s = partialW[e];
    for (var split = 1u; split < params.splits; split++) {
      s += partialW[split * nk + e];
    }
    dWeight[e] += s;
  } else if (HAS_BIAS && e < nk + params.n) {
    let j = e - nk;
    var s = partialB[j];
    for (var split = 1u; split < params.splits; split++) {
      s += partialB[split * params.n + j];
    }
    dBias[params.column + j] += s;
  }
}
