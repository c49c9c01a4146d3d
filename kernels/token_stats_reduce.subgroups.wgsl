// token_stats_reduce.subgroups.wgsl: the `subgroups` variant of token_stats_reduce.wgsl (the
// loader adds `enable subgroups;`). Each subgroup combines its lanes with subgroupMax/Add/Or
// (no barrier), one elected lane per subgroup stores the result in a slot it takes with an
// atomic (WGSL does not promise that subgroups are runs of consecutive invocation indices), and
// after one barrier thread 0 folds the slots (WG / subgroup size of them: 8 on NVIDIA).
// The result is valid in thread 0.

var<workgroup> subgroup_state: array<Partial, WG / 4u>;   // subgroups are at least 4 wide
var<workgroup> subgroup_slots: atomic<u32>;

fn reduce_workgroup(acc: Partial, lid: u32) -> Partial {
  // Rescale every lane to the subgroup's max, then plain sums.
  let live = acc.s > 0.0;
  let m = subgroupMax(select(-3.0e38, acc.m, live));
  let d = acc.m - m;
  let scale = select(0.0, exp(d), live);
  var part: Partial;
  part.m = m;
  part.s = subgroupAdd(acc.s * scale);
  part.u = subgroupAdd(select(0.0, scale * (acc.u + d * acc.s), live));
  part.sum = subgroupAdd(acc.sum);
  part.count = subgroupAdd(acc.count);
  part.bad = subgroupOr(acc.bad);
  if (subgroupElect()) {
    subgroup_state[atomicAdd(&subgroup_slots, 1u)] = part;
  }
  workgroupBarrier();
  var total = EMPTY;
  if (lid == 0u) {
    let slots = atomicLoad(&subgroup_slots);
    for (var i = 0u; i < slots; i++) {
      total = combine(total, subgroup_state[i]);
    }
  }
  return total;
}
