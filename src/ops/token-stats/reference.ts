/**
 * The float64 reference for token statistics: the `js` backend, and the ground truth every other
 * backend is tested against. Two plain passes per row (max, then sums), float64 throughout.
 *
 * Per row of logits z (length V), with x = z / T:
 *   - entries equal to −inf are masked: they have probability 0 and are left out of the uniform
 *     distribution U, so `validCount` = number of finite entries and
 *     selfCertainty = KL(U‖p) = logsumexp(x) − mean_{finite}(x) − log(validCount);
 *   - logsumexp = m + log Σ e^{x−m}, m = max x;
 *   - entropy = −Σ p log p = log s − Σ (x−m)e^{x−m} / s, with s = Σ e^{x−m};
 *   - logprob = x[id] − logsumexp (−inf when the chosen entry is masked).
 *   - selfCertainty and entropy are clamped at 0 (rounding can take either a hair below), and
 *     are exactly 0 in a row with one finite entry (every backend does the same).
 *   - A row holding NaN or +inf, or only −inf entries, is invalid: all its statistics are NaN
 *     (validCount still counts its finite entries). Other rows are unaffected.
 *
 * Backward, for upstream gradients gLogprob (gL) and gSelfCertainty (gS) per row:
 *   dL/dz_j = (1/T) · [gL · (δ_{j,id} − p_j) + gS · (p_j − 1/validCount)]   (finite z_j)
 *   dL/dz_j = (1/T) · gL · δ_{j,id}                                          (masked z_j)
 * with p_j = e^{x_j − logsumexp}; NaN across the whole row for invalid rows.
 */
import { elementReader, type DType, type HostArray } from '../../dtype.js';

export interface ReferenceForward {
  logsumexp: Float64Array;
  selfCertainty: Float64Array;
  entropy: Float64Array;
  logprob: Float64Array | null;
  validCount: Uint32Array;
}

/** Classification of one row, shared by forward and backward. */
interface RowScan {
  invalid: boolean;
  max: number;
  count: number;
}

function scanRow(read: (i: number) => number, base: number, vocab: number, invT: number): RowScan {
  let max = -Infinity;
  let count = 0;
  let invalid = false;
  for (let j = 0; j < vocab; j++) {
    const x = read(base + j) * invT;
    if (Number.isNaN(x) || x === Infinity) invalid = true;
    else if (x !== -Infinity) {
      count++;
      if (x > max) max = x;
    }
  }
  return { invalid: invalid || count === 0, max, count };
}

export function referenceForward(
  dtype: DType, logits: HostArray, rows: number, vocab: number, ids: ArrayLike<number> | null, temperature: number,
): ReferenceForward {
  const read = elementReader(dtype, logits);
  const invT = 1 / temperature;
  const out: ReferenceForward = {
    logsumexp: new Float64Array(rows),
    selfCertainty: new Float64Array(rows),
    entropy: new Float64Array(rows),
    logprob: ids ? new Float64Array(rows) : null,
    validCount: new Uint32Array(rows),
  };
  for (let r = 0; r < rows; r++) {
    const base = r * vocab;
    const { invalid, max, count } = scanRow(read, base, vocab, invT);
    out.validCount[r] = count;
    if (invalid) {
      out.logsumexp[r] = out.selfCertainty[r] = out.entropy[r] = NaN;
      if (out.logprob) out.logprob[r] = NaN;
      continue;
    }
    let s = 0;
    let u = 0;
    let sum = 0;
    for (let j = 0; j < vocab; j++) {
      const x = read(base + j) * invT;
      if (x === -Infinity) continue;
      const e = Math.exp(x - max);
      s += e;
      u += (x - max) * e;
      sum += x;
    }
    const lse = max + Math.log(s);
    out.logsumexp[r] = lse;
    // Both are ≥ 0, and exactly 0 for one finite entry (p = U = a point mass): rounding may not
    // push them below.
    out.selfCertainty[r] = count === 1 ? 0 : Math.max(0, lse - sum / count - Math.log(count));
    out.entropy[r] = count === 1 ? 0 : Math.max(0, Math.log(s) - u / s);
    if (out.logprob && ids) out.logprob[r] = read(base + ids[r]!) * invT - lse;
  }
  return out;
}

export function referenceBackward(
  dtype: DType, logits: HostArray, rows: number, vocab: number, ids: ArrayLike<number> | null, temperature: number,
  logsumexp: ArrayLike<number>, validCount: ArrayLike<number>,
  gLogprob: ArrayLike<number> | null, gSelfCertainty: ArrayLike<number> | null,
): Float64Array {
  const read = elementReader(dtype, logits);
  const invT = 1 / temperature;
  const grad = new Float64Array(rows * vocab);
  for (let r = 0; r < rows; r++) {
    const base = r * vocab;
    const lse = logsumexp[r]!;
    const gL = gLogprob ? gLogprob[r]! : 0;
    const gS = gSelfCertainty ? gSelfCertainty[r]! : 0;
    const uniform = 1 / validCount[r]!;
    const id = ids ? ids[r]! : -1;
    for (let j = 0; j < vocab; j++) {
      const x = read(base + j) * invT;
      const onehot = j === id ? gL : 0;
      if (Number.isNaN(lse)) grad[base + j] = NaN;
      else if (x === -Infinity) grad[base + j] = invT * onehot;
      else {
        const p = Math.exp(x - lse);
        grad[base + j] = invT * (onehot - gL * p + gS * (p - uniform));
      }
    }
  }
  return grad;
}
