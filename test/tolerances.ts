/**
 * Every numeric tolerance the suite uses, in one table. A value passes when
 * |got − want| ≤ atol + rtol·|want|. References are float64 over the same (already rounded)
 * inputs, so dtype rounding of the logits is not part of the error; only float32 arithmetic is.
 */
export interface Tolerance {
  atol: number;
  rtol: number;
}

export const TOLERANCES = {
  /** token statistics forward (f32 accumulation over up to 10^6 entries), every dtype and backend. */
  tokenStatsForward: { atol: 5e-5, rtol: 1e-5 },
  /**
   * lm_head + token statistics fused (one f32 matmul tile per logit, then the token-stats online
   * statistics) against float64 and against the unfused path (linear, then token stats): the
   * issue's 1e-5, relative for logits of large magnitude (outlier weights: |z| ~ 10^3).
   */
  lmHeadStats: { atol: 1e-5, rtol: 1e-5 },
  /** fused lm_head backward (dz per slab, then the linear backward's f32 sums over ≤ 4099 vocabulary columns and ≤ 70 rows) against float64 and the unfused path. */
  lmHeadStatsBackward: { atol: 1e-5, rtol: 1e-4 },
  /** token statistics backward: p_j ≈ 1/V, so an absolute floor well under 1/V plus a relative term. */
  tokenStatsBackward: { atol: 2e-7, rtol: 1e-4 },
  /** backward against central finite differences of the float64 reference (h = 1e-5). */
  finiteDifferences: { atol: 1e-6, rtol: 1e-4 },
  /** f32 matmul with f32 accumulation over k ≤ 300 of N(0, 1) values (an outlier of 40). */
  matmul: { atol: 1e-4, rtol: 1e-5 },
  /** causal attention, f32 dot products of up to 256 terms and an online softmax over ≤ 130 keys. */
  attention: { atol: 2e-5, rtol: 2e-5 },
  /** score-completions (f32 weights) vs `intuitor logits` then `intuitor stats` on the same ids: the promise. */
  scoreVsLogitsStats: { atol: 1e-5, rtol: 0 },
  /** Hugging Face fixture (float64 transformers) vs our float32 statistics of the same logits. */
  fixture: { atol: 1e-4, rtol: 0 },
  /** linear (x · Wᵀ + b), f32 accumulation over k ≤ 2053 with W ~ N(0, 1/k), against float64 over the decoded weights. */
  linear: { atol: 1e-5, rtol: 1e-5 },
  /**
   * rmsnorm fused into projections (f32 sums over k ≤ 896, the norm's scale applied after the
   * sum) against float64 and against the unfused ops (which round the normed row to f32 first).
   */
  linearNorm: { atol: 1e-5, rtol: 1e-5 },
  /** rmsnorm: an f32 sum of squares per row, inverseSqrt and two products. */
  rmsNorm: { atol: 1e-5, rtol: 1e-5 },
  /** embedding: a gather; 16-bit values widen to f32 exactly, so bit-exact. */
  embedding: { atol: 0, rtol: 0 },
  /** rope: the kernel's own f32 cos/sin of the same f32 angle (angles up to 2.6·10^5 rad), then a 2×2 rotation. */
  rope: { atol: 1e-5, rtol: 1e-5 },
  /** swiglu: f32 exp and a quotient, inputs up to |x| = 1e4. */
  swiglu: { atol: 1e-5, rtol: 1e-5 },
  /** add: one correctly rounded f32 addition. */
  add: { atol: 1e-5, rtol: 1e-5 },
  /** Whole-model gradients vs transformers' float64 ones: relative L2 error per tensor (only rtol is used). */
  gradientRelativeL2: { atol: 0, rtol: 1e-3 },
  /** Whole-model f32 gradients vs float64 central finite differences (h = 1e-5) of the reference forward. */
  modelFiniteDifferences: { atol: 2e-5, rtol: 2e-3 },
  /** sum of squares: f32 fma over 16-element strides, two trees and ≤ 269 partials per thread, against float64. */
  sumSquares: { atol: 0, rtol: 1e-5 },
  /** AdamW parameters after 1–3 f32 updates (|p| ~ 1, lr ≤ 0.05) against float64. */
  adamwParams: { atol: 1e-6, rtol: 1e-6 },
  /** AdamW moments (gradients ~ N(0, 1), outliers to 30): f32 lerp and multiply-add against float64. */
  adamwMoments: { atol: 1e-6, rtol: 1e-5 },
  /** linear backward: f32 sums of up to 1000 N(0, 1) products (outliers of 40 and −25) added to N(0, 1) starting values. */
  linearBackward: { atol: 1e-4, rtol: 1e-5 },
  /**
   * attention backward, each gradient tensor divided by its largest |value| first: f32 scores up to
   * ~100 (outliers in q, k) put ε·|score| ≈ 1e-5 relative error on probabilities; seen ≤ 4.2e-6.
   */
  attentionBackward: { atol: 2e-5, rtol: 0 },
  /** host RL math (advantages, GRPO loss gradients): float64 internally, rounded once to f32 on output. */
  rlHost: { atol: 1e-12, rtol: 1e-6 },
  /** rmsnorm backward: f32 row sums of ≤ 4099 terms, rstd up to 1e3 (dx up to ~1e3), dWeight summed over ≤ 300 rows. */
  rmsNormBackward: { atol: 1e-5, rtol: 1e-5 },
  /** swiglu backward: f32 exp, a quotient and products, gates up to |x| = 1e30. */
  swigluBackward: { atol: 1e-5, rtol: 1e-5 },
  /** embedding backward: f32 sums of up to 100 N(0, 1) rows in sorted-run order, onto N(0, 1) initial values. */
  embeddingBackward: { atol: 1e-5, rtol: 1e-5 },
  /** The shipped base model's held-out greedy accuracy re-measured against its base_model.json (another GPU may break argmax ties differently). */
  baseModelAccuracy: { atol: 0.1, rtol: 0 },
  /**
   * GRPO in micro-batches against one pass: the same samples and advantages; parameter gradients
   * summed pass by pass (f32, another order) and the matmuls planned for other row counts, through
   * two AdamW steps (whose first update is ±lr per weight whatever the gradient's size).
   */
  grpoMicroBatches: { atol: 1e-5, rtol: 1e-4 },
  /**
   * AdamW values and moments after two clipped steps, weights in row windows against one buffer:
   * the gradients are equal, but the global norm adds per-window sums of squares (another f32
   * tree), so the clip scale may differ in its last bit. Step 1's updates then differ by about
   * lr · 1e-7, and step 2's gradients, taken at those weights, by more where an element's
   * gradient is a sum that cancels. Seen on tiny-qwen2 with 10 KB windows at lr 1e-2: norms
   * 1.8e-6 apart (of 124), 51 of 24,576 embedding values more than 1e-8 off, the largest 1.8e-6
   * (its m 5e-4 off relatively). atol: 1e-3 · lr.
   */
  windowedClipping: { atol: 1e-5, rtol: 1e-5 },
  /**
   * The same comparison for the k projection's bias, whose exact gradient is zero (adding q·b_k to
   * every key's score leaves the softmax unchanged): its computed gradient is rounding noise, which
   * AdamW scales to steps of up to about lr, so a last-bit change in the clip scale moves them
   * freely. Seen: 2.3e-5 at lr 1e-2. atol: 0.1 · lr.
   */
  windowedClippingNoise: { atol: 1e-3, rtol: 0 },
  /** The same f32 forward with fewer rows per dispatch (logits in chunks): the linear kernels may split k differently. */
  chunkedLogits: { atol: 1e-5, rtol: 1e-5 },
  /** The scoring server's merged batches against each request scored alone: other pass shapes may split k differently. */
  batchShape: { atol: 1e-5, rtol: 1e-5 },
} satisfies Record<string, Tolerance>;

/** Index and size of the worst violation, or null when all values pass. Both NaN passes; NaN vs number fails. */
export function firstViolation(got: ArrayLike<number>, want: ArrayLike<number>, tol: Tolerance): { index: number; got: number; want: number } | null {
  if (got.length !== want.length) return { index: -1, got: got.length, want: want.length };
  for (let i = 0; i < got.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    if (Number.isNaN(w) || Number.isNaN(g)) {
      if (Number.isNaN(w) && Number.isNaN(g)) continue;
      return { index: i, got: g, want: w };
    }
    if (!Number.isFinite(w) || !Number.isFinite(g)) {
      if (g === w) continue;
      return { index: i, got: g, want: w };
    }
    if (Math.abs(g - w) > tol.atol + tol.rtol * Math.abs(w)) return { index: i, got: g, want: w };
  }
  return null;
}

export function expectClose(what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: Tolerance): void {
  const v = firstViolation(got, want, tol);
  if (v) throw new Error(`${what}: element ${v.index}: got ${v.got}, want ${v.want} (atol ${tol.atol}, rtol ${tol.rtol})`);
}
