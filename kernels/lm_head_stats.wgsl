// lm_head_stats.wgsl: the lm_head fused with the token statistics, forward and backward, without
// ever storing the (rows, V) logits.
//
// Shapes: hidden x (M, K) f32 (the final hidden states, M rows of K = hidden size), lm_head W
// (V, K) as nn.Linear stores it, f32 / f16 / bf16 (16-bit packed two per word, W_DTYPE), no bias;
// z = x · Wᵀ are the logits, x / T their scaled values. W may come as row windows (src/ops/
// split.ts), each bound on its own, whose row 0 is vocabulary entry params.column. Vocabulary
// entries ≥ params.vocabLimit are masked exactly as a −inf logit is (left out of p and of U): a
// padded vocabulary.
//
// Every reduction over the vocabulary follows a canonical cut of it that windows do not move, so
// windowed and whole W give the same bits: the forward's ranges start at multiples of rangeCols,
// the backward's slabs at multiples of their width (src/ops/lm-head-stats.ts; a range that
// crosses a window boundary is read from a gathered copy of its rows, a slab is cut into pieces).
//
// partials_main (forward): grid (ranges of this dispatch, ceil(M / TILE_M)) of (8, TILE_M / 8)
//   threads. A workgroup walks the columns [params.start + range · rangeCols, …) of its window 64 at
//   a time: each step computes the TILE_M × 64 logits tile in registers (tile_product,
//   linear_tile.wgsl, the linear kernel's tiling) and folds each thread's 8 × 8 block into 8 per-row
//   online states (token_stats_online.wgsl: max, Σe, Σ(x−m)e, Σz, count, bad; the very math of the
//   token-stats kernel). After the last step the 8 threads sharing a row merge their states in
//   lane order in workgroup memory, and one Partial per (row, range) goes to `partials` at
//   row · ranges + rangeBase + range. The thread whose block holds a row's chosen id writes x[id]
//   (−inf bits for a masked entry) to `chosen`. The finalize pass is token_stats_forward.wgsl's
//   finalize_main, unchanged: one workgroup per row combines its `ranges` partials into
//   logsumexp, selfCertainty, entropy, logprob and validCount.
// grad_rows_main (backward, first): ceil(M / 256) workgroups of 256, one row each: folds the
//   forward's logsumexp and validCount and the upstream gradients gL, gS into `rowTerms`.
// grad_main (backward): grid (ceil(cols / 64), ceil(M / TILE_M)), same threads. Recomputes the
//   logits of the window's columns [start, start + cols) (a piece of a vocabulary slab) and writes
//   dL/dz into a slab-sized scratch (M, stride) f32 at columns offset…, by
//   token_stats_backward.wgsl's formula:
//     dL/dz_j = (1/T) · [gL · (δ_{j,id} − p_j) + gS · (p_j − 1/validCount)]   (finite z_j)
//     dL/dz_j = (1/T) · gL · δ_{j,id}                                          (masked z_j)
//   with p_j = e^{x_j − lse} from the forward's logsumexp; NaN across a row whose logsumexp is NaN.
//   src/ops/lm-head-stats.ts then runs the linear backward (kernels/linear_backward.wgsl) on the
//   slab: d(hidden) += dz · W_slab, dW_slab += dzᵀ · x.
// Shapes travel in the uniform; overrides (W_DTYPE, K_ALIGNED, TILE_M) only pick code. TILE_M is
// 8, 16, 32 or 64: fewer rows than a 32-row tile get a smaller one, so no lm_head work goes to
// padding rows (a decode step, a tiny batch).
// Reference: referenceLmHeadStats / referenceLmHeadStatsBackward in src/ops/lm-head-stats.ts
// (float64: referenceLinear, then the token-stats reference).

struct Params {
  m: u32,            // rows of x
  n: u32,            // rows of this window of W (vocabulary entries it holds)
  k: u32,            // hidden size
  column: u32,       // vocabulary index of the window's row 0
  rangeCols: u32,    // partials_main: columns per range, a multiple of 64
  rangeBase: u32,    // partials_main: index of this dispatch's first range among all ranges
  ranges: u32,       // partials_main: ranges per row in all (the partials' row stride)
  vocabLimit: u32,   // vocabulary entries at or past this are masked
  start: u32,        // window row where partials_main's first range, or grad_main's piece, begins
  cols: u32,         // grad_main: the piece's width
  stride: u32,       // grad_main: the scratch's row stride (its slab's width)
  offset: u32,       // grad_main: the scratch column of the piece's first column
  flags: u32,        // bit 0: ids given; bit 1: gLogprob given; bit 2: gSelfCertainty given
  invTemperature: f32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> xQuads: array<vec4<f32>>;   // x when K_ALIGNED
@group(0) @binding(3) var<storage, read> w: array<u32>;              // f32 bits, or packed 16-bit pairs
@group(0) @binding(4) var<storage, read> wQuads: array<vec4<u32>>;   // f32 W when K_ALIGNED
@group(0) @binding(5) var<storage, read> wPairs: array<vec2<u32>>;   // 16-bit W when K_ALIGNED
@group(0) @binding(6) var<storage, read> ids: array<u32>;
@group(0) @binding(7) var<storage, read_write> partials: array<Partial>;
@group(0) @binding(8) var<storage, read_write> chosen: array<u32>;   // x[id] bits, per row
@group(0) @binding(9) var<storage, read_write> rowTerms: array<RowTerms>;   // grad_rows_main writes, grad_main reads
@group(0) @binding(10) var<storage, read_write> dLogits: array<u32>;      // f32 bits (NaN written exactly)
// grad_rows_main's inputs: the forward's statistics and the upstream gradients, per row.
@group(0) @binding(11) var<storage, read> logsumexp: array<u32>;
@group(0) @binding(12) var<storage, read> validCount: array<u32>;
@group(0) @binding(13) var<storage, read> gLogprob: array<f32>;
@group(0) @binding(14) var<storage, read> gSelfCertainty: array<f32>;

// One row's backward constants (grad_main has no room for five per-row bindings: at most 8
// storage buffers per stage are guaranteed).
struct RowTerms {
  lse2: f32,          // logsumexp · log2(e)
  coef: f32,          // (gS − gL) / T: the factor of p_j
  uniformTerm: f32,   // gS / (T · validCount)
  gL: f32,            // gL / T: the one-hot term
  id: u32,            // chosen id, or NO_ID
  invalid: u32,       // 1: NaN statistics, NaN gradient
  _pad0: u32,
  _pad1: u32,
}

//!include linear_tile.wgsl
//!include token_stats_online.wgsl

const NO_ID: u32 = 0xffffffffu;

var<workgroup> rowStates: array<Partial, TILE_M>;

// Row (of x) of entry i of a thread's 8 × 8 block (see tile_product).
fn block_row(row0: u32, lid: vec3<u32>, i: u32) -> u32 {
  return row0 + select(TILE_M / 2u + 4u * lid.y + i - 4u, 4u * lid.y + i, i < 4u);
}

fn id_of(row: u32) -> u32 {
  if ((params.flags & 1u) == 0u || row >= params.m) {
    return NO_ID;
  }
  return ids[row];
}

@compute @workgroup_size(8, TILE_M / 8)
fn partials_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row0 = wid.y * TILE_M;
  let colBegin = params.start + wid.x * params.rangeCols;
  let colEnd = min(params.n, colBegin + params.rangeCols);
  let invT = params.invTemperature;
  let c = invT * LOG2E;
  var st: array<Stream, 8>;
  var rowIds: array<u32, 8>;
  for (var i = 0u; i < 8u; i++) {
    rowIds[i] = id_of(block_row(row0, lid, i));
  }
  let lanes = vec4(0u, 1u, 2u, 3u);
  for (var col0 = colBegin; col0 < colEnd; col0 += TILE_N) {
    let acc = tile_product(row0, col0, 0u, params.k, lid);
    for (var h = 0u; h < 2u; h++) {
      let col = col0 + 32u * h + 4u * lid.x;   // window row of the group's first column
      let vocabIndex = params.column + col;
      let inRange = vec4(col) + lanes < vec4(colEnd);
      let unmasked = inRange & (vec4(vocabIndex) + lanes < vec4(params.vocabLimit));
      let allUnmasked = all(unmasked);
      for (var i = 0u; i < 8u; i++) {
        let z = acc[2u * i + h];
        let groupSum = (z.x + z.y) + (z.z + z.w);
        var s = st[i];
        if (allUnmasked && !is_special(bitcast<u32>(groupSum))) {
          add_finite4(&s, z, groupSum, c);
        } else {
          // Slow path: masked columns, past the window, or a sum that is not finite: classify.
          let bits = bitcast<vec4<u32>>(z);
          let special = (bits & vec4(0x7f800000u)) == vec4(0x7f800000u);
          let negInf = bits == vec4(NEG_INF_BITS);
          add_masked4(&s, z, unmasked & !special, any(unmasked & special & !negInf), c);
        }
        st[i] = s;
        let d = rowIds[i] - vocabIndex;   // wraps past 3 when the id lies before this group
        if (d < 4u && inRange[d]) {
          let zb = bitcast<u32>(z[d]);
          let scaled = select(bitcast<u32>(z[d] * invT), zb, is_special(zb));
          chosen[block_row(row0, lid, i)] = select(NEG_INF_BITS, scaled, unmasked[d]);
        }
      }
    }
  }
  // The 8 threads of a row (lid.x = 0 … 7) merge their states in lane order.
  for (var lane = 0u; lane < 8u; lane++) {
    if (lid.x == lane) {
      for (var i = 0u; i < 8u; i++) {
        let at = block_row(0u, lid, i);
        let mine = to_partial(st[i], invT);
        if (lane == 0u) {
          rowStates[at] = mine;
        } else {
          rowStates[at] = combine(rowStates[at], mine);
        }
      }
    }
    workgroupBarrier();
  }
  let thread = lid.y * 8u + lid.x;
  let row = row0 + thread;
  if (row < params.m) {
    partials[row * params.ranges + params.rangeBase + wid.x] = rowStates[thread];
  }
}

@compute @workgroup_size(256)
fn grad_rows_main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = gid.x;
  if (row >= params.m) {
    return;
  }
  let invT = params.invTemperature;
  let lseBits = logsumexp[row];
  let gL = select(0.0, gLogprob[row] * invT, (params.flags & 2u) != 0u);
  let gS = select(0.0, gSelfCertainty[row] * invT, (params.flags & 4u) != 0u);
  rowTerms[row] = RowTerms(bitcast<f32>(lseBits) * LOG2E, gS - gL, gS / f32(max(validCount[row], 1u)), gL, id_of(row),
    select(0u, 1u, is_special(lseBits)), 0u, 0u);
}

@compute @workgroup_size(8, TILE_M / 8)
fn grad_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row0 = wid.y * TILE_M;
  let col0 = params.start + wid.x * TILE_N;
  let pieceEnd = min(params.n, params.start + params.cols);
  let acc = tile_product(row0, col0, 0u, params.k, lid);
  let c = params.invTemperature * LOG2E;
  for (var i = 0u; i < 8u; i++) {
    let row = block_row(row0, lid, i);
    if (row >= params.m) {
      continue;
    }
    let t = rowTerms[row];
    for (var h = 0u; h < 2u; h++) {
      for (var e = 0u; e < 4u; e++) {
        let col = col0 + 32u * h + 4u * lid.x + e;
        if (col >= pieceEnd) {
          continue;
        }
        let vocabIndex = params.column + col;
        let z = acc[2u * i + h][e];
        let masked = vocabIndex >= params.vocabLimit || bitcast<u32>(z) == NEG_INF_BITS;
        var g = select(t.coef * exp2(fma(z, c, -t.lse2)) - t.uniformTerm, 0.0, masked);
        if (vocabIndex == t.id) {
          g += t.gL;
        }
        dLogits[row * params.stride + params.offset + col - params.start] = select(bitcast<u32>(g), NAN_BITS, t.invalid != 0u);
      }
    }
  }
}
