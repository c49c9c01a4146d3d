// embedding_backward.wgsl: the gradient of out[t] = table[ids[t]]: dw[ids[t]] += dy[t] for every
// token, a scatter-add where ids repeat (a parameter gradient, accumulated into dw).
//
// Shapes (row-major): ids (T) u32, dy (T, H) f32, dw (V, H) f32, V·H < 2^32. An id ≥ V adds
// nothing. Deterministic (no float atomics) and O(T·H + T²) work, never O(V): the tokens are
// sorted stably by id, so each id's rows are a contiguous run in token order, and each run is
// summed in an order fixed by the shape. Three dispatches:
//   rank_main: 32 tokens per workgroup of 256 threads, 8 threads per token, each counting over an
//     eighth of the tokens those with a smaller id, or the same id and an earlier position (L1
//     broadcasts: a warp's 32 threads read the same id). The 8 counts add up to the token's
//     place in the stable sort: order[place] = t.
//   blocks_main: one workgroup per block of BLOCK sorted places, 256 threads over columns. Each
//     thread sums its column of dy over each run within the block in order. A run wholly inside
//     the block is added to dw here; a run continuing from the block before goes to partials
//     (head slot), else one continuing into the next block goes to partials (tail slot).
//   combine_main: one workgroup per block with a tail slot: tail + the heads of the following
//     blocks the run covers, in block order, is added to dw.
// Each dy row is read once, coalesced across columns, and each touched dw row updated once.
// Row windows (src/ops/split.ts): dw may be rows [firstRow, firstRow + windowRows) of the table's
// gradient, bound on its own; blocks_main and combine_main then run once per window (rank_main
// once) and sum only the runs of ids in the window, each in the same order as for one buffer.
// Grids: (groupsX, ceil(count / groupsX)) workgroups, count = ceil(T / 32) or ceil(T / BLOCK).
// Reference: referenceEmbeddingBackward in src/ops/embedding-backward.ts (float64).

struct Params {
  tokens: u32,
  h: u32,
  vocab: u32,
  groupsX: u32,
  blocks: u32,      // ceil(tokens / BLOCK)
  firstRow: u32,    // dw holds rows [firstRow, firstRow + windowRows) of the gradient
  windowRows: u32,
  _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> order: array<u32>;      // (T): tokens in stable id order
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;   // (blocks, 2, H): head, tail
@group(0) @binding(4) var<storage, read_write> dw: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;

const WG: u32 = 256u;
const RANK_TOKENS: u32 = 32u;
const RANK_SPLITS: u32 = 8u;   // WG / RANK_TOKENS
const BLOCK: u32 = 16u;        // src/ops/embedding-backward.ts BLOCK

var<workgroup> counts: array<u32, WG>;
var<workgroup> blockTokens: array<u32, BLOCK>;
var<workgroup> blockIds: array<u32, BLOCK>;

fn sorted_id(place: u32) -> u32 {
  return ids[order[place]];
}

fn in_window(id: u32) -> bool {
  return id >= params.firstRow && id - params.firstRow < params.windowRows;
}

@compute @workgroup_size(WG)
fn rank_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * params.groupsX) * RANK_TOKENS + lid % RANK_TOKENS;
  let split = lid / RANK_TOKENS;
  let id = ids[min(t, params.tokens - 1u)];
  let span = (params.tokens + RANK_SPLITS - 1u) / RANK_SPLITS;
  let end = min((split + 1u) * span, params.tokens);
  var before = 0u;
  for (var k = split * span; k < end; k++) {
    let other = ids[k];
    before += select(0u, 1u, other < id || (other == id && k < t));
  }
  counts[lid] = before;
  workgroupBarrier();
  if (split == 0u && t < params.tokens) {
    var place = 0u;
    for (var s = 0u; s < RANK_SPLITS; s++) {
      place += counts[s * RANK_TOKENS + lid];
    }
    order[place] = t;
  }
}

@compute @workgroup_size(WG)
fn blocks_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let block = wid.x + wid.y * params.groupsX;
  if (block >= params.blocks) {
    return;
  }
  let first = block * BLOCK;
  let count = min(BLOCK, params.tokens - first);
  if (lid < count) {
    let token = order[first + lid];
    blockTokens[lid] = token;
    blockIds[lid] = ids[token];
  }
  workgroupBarrier();
  let h = params.h;
  let fromPrevious = first > 0u && sorted_id(first - 1u) == blockIds[0];
  let intoNext = first + count < params.tokens && sorted_id(first + count) == blockIds[count - 1u];
  for (var j = lid; j < h; j += WG) {
    var sum = 0.0;
    var start = 0u;
    for (var i = 0u; i < count; i++) {
      let id = blockIds[i];
      if (in_window(id)) {
        sum += dy[blockTokens[i] * h + j];
      }
      let last = i + 1u == count;
      if (last || blockIds[i + 1u] != id) {
        if (start == 0u && fromPrevious) {
          partials[2u * block * h + j] = sum;
        } else if (last && intoNext) {
          partials[(2u * block + 1u) * h + j] = sum;
        } else if (in_window(id)) {
          dw[(id - params.firstRow) * h + j] += sum;
        }
        sum = 0.0;
        start = i + 1u;
      }
    }
  }
}

@compute @workgroup_size(WG)
fn combine_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let block = wid.x + wid.y * params.groupsX;
  if (block >= params.blocks) {
    return;
  }
  let first = block * BLOCK;
  let next = first + BLOCK;
  if (next >= params.tokens) {
    return;
  }
  let id = sorted_id(next - 1u);
  let wholeBlockContinued = first > 0u && sorted_id(first - 1u) == id && sorted_id(first) == id;
  if (sorted_id(next) != id || wholeBlockContinued || !in_window(id)) {
    return;
  }
  // The run covers the heads of blocks block + 1 ..= lastBlock.
  var lastBlock = block + 1u;
  while ((lastBlock + 1u) * BLOCK < params.tokens && sorted_id((lastBlock + 1u) * BLOCK) == id) {
    lastBlock++;
  }
  let h = params.h;
  for (var j = lid; j < h; j += WG) {
    var sum = partials[(2u * block + 1u) * h + j];
    for (var b = block + 1u; b <= lastBlock; b++) {
      sum += partials[2u * b * h + j];
    }
    dw[(id - params.firstRow) * h + j] += sum;
  }
}
