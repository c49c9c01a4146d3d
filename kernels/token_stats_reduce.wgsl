// token_stats_reduce.wgsl: combines the WG threads' partial states of token_stats_forward.wgsl
// with a shared-memory tree (log2(WG) barriers). Devices with the `subgroups` feature use
// token_stats_reduce.subgroups.wgsl instead. The result is valid in thread 0.

var<workgroup> shared_state: array<Partial, WG>;

fn reduce_workgroup(acc: Partial, lid: u32) -> Partial {
  shared_state[lid] = acc;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) {
      shared_state[lid] = combine(shared_state[lid], shared_state[lid + stride]);
    }
    workgroupBarrier();
  }
  return shared_state[0];
}
