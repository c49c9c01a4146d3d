/**
 * Batches for next-token training: right-padded ids, per-row targets (the next token) and the
 * gradient of a mean cross-entropy with respect to each row's log-prob.
 */
import { InvalidArgumentError, describe } from '../errors.js';

export interface NextTokenBatch {
  /** (batch · seqLen) right-padded with 0. */
  ids: Uint32Array;
  /** (batch) sequence lengths. */
  lengths: Uint32Array;
  /** (batch · seqLen): ids[r + 1] where row r predicts a token, else 0. */
  targets: Uint32Array;
  /** (batch · seqLen): −1 / predictions on every row whose prediction counts in the loss, else 0. */
  gLogprob: Float32Array;
  /** How many predictions the mean runs over. */
  predictions: number;
}

/**
 * Lays out `sequences` for a mean next-token cross-entropy. Row t of sequence b predicts token
 * t + 1; it counts when t + 1 ≥ lossFrom[b] (the first token of the loss region, e.g. the first
 * completion token; 1 = every prediction). Rows past a sequence's end count nothing.
 */
export function nextTokenBatch(sequences: readonly (readonly number[])[], lossFrom: readonly number[], seqLen: number): NextTokenBatch {
  const batch = sequences.length;
  if (batch === 0) throw new InvalidArgumentError('sequences', 'at least one sequence', '[]');
  const ids = new Uint32Array(batch * seqLen);
  const lengths = new Uint32Array(batch);
  const targets = new Uint32Array(batch * seqLen);
  const counted = new Uint8Array(batch * seqLen);
  let predictions = 0;
  sequences.forEach((seq, b) => {
    if (!Array.isArray(seq) || seq.length === 0 || seq.length > seqLen) throw new InvalidArgumentError(`sequences[${b}]`, `1 to ${seqLen} token ids`, describe(seq));
    const from = lossFrom[b]!;
    if (!Number.isSafeInteger(from) || from < 1) throw new InvalidArgumentError(`lossFrom[${b}]`, 'an integer ≥ 1', describe(from));
    lengths[b] = seq.length;
    seq.forEach((id, t) => {
      ids[b * seqLen + t] = id;
      if (t + 1 < seq.length) {
        targets[b * seqLen + t] = seq[t + 1]!;
        if (t + 1 >= from) {
          counted[b * seqLen + t] = 1;
          predictions++;
        }
      }
    });
  });
  if (predictions === 0) throw new InvalidArgumentError('sequences', 'at least one next-token prediction in the loss region', 'none');
  const gLogprob = Float32Array.from(counted, (c) => (c ? -1 / predictions : 0));
  return { ids, lengths, targets, gLogprob, predictions };
}
