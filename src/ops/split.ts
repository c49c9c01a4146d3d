/**
 * Split reductions: when a kernel's output tiles alone are too few to fill the GPU, the reduction
 * they run (over k in the linear forward, over rows in the weight gradient) is cut into
 * consecutive ranges, each summed into its own partial tile, and the partials are then added in
 * range order. The cut depends on the shape (and on the binding limit) only, so results repeat
 * bit for bit.
 */

export interface SplitRule {
  /** Output tiles (workgroups per range). */
  tiles: number;
  /** Terms of the reduction. */
  length: number;
  /** Aim for about this many workgroups in all. */
  targetWorkgroups: number;
  /** No range shorter than this (storing and re-reading a partial must stay cheap next to computing it). */
  minRange: number;
  /** Bytes of one range's partial output; all partials stay within min(64 MiB, maxBindingBytes). */
  partialBytes: number;
  maxBindingBytes: number;
  /** Range lengths are multiples of this (the kernel's staging depth). */
  multiple: number;
}

export const MAX_PARTIAL_BYTES = 64 * 2 ** 20;

/** `splits` ranges of `range` terms (the last may be shorter); one range when the tiles fill the GPU. */
export function splitReduction(rule: SplitRule): { splits: number; range: number } {
  const byBytes = Math.floor(Math.min(MAX_PARTIAL_BYTES, rule.maxBindingBytes) / rule.partialBytes);
  const wanted = Math.max(1, Math.min(Math.ceil(rule.targetWorkgroups / rule.tiles), Math.floor(rule.length / rule.minRange), byBytes));
  const range = Math.ceil(Math.ceil(rule.length / wanted) / rule.multiple) * rule.multiple;
  return { splits: Math.ceil(rule.length / range), range };
}

/**
 * Lanes that share one reduction of `length` terms inside a workgroup: the power of two that
 * leaves each lane at most `perLane` terms, within [least, most] (powers of two), so a lane's
 * sequential sum stays short however long the reduction, and short ones leave room for more
 * outputs per workgroup.
 */
export function lanesFor(length: number, perLane: number, least: number, most: number): number {
  return Math.min(most, Math.max(least, 2 ** Math.ceil(Math.log2(Math.ceil(length / perLane)))));
}
