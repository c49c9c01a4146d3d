/** Small seeded generators for reproducible built-in batches, tests and training (saveable state, derived seeds). */
import { InvalidArgumentError, describe } from '../errors.js';

/** A module-scope alias: a global lookup per call is ~40× slower inside vm contexts (Jest's test realm). */
const imul = Math.imul;

/** mulberry32: a fast 32-bit PRNG, uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = imul(t ^ (t >>> 15), t | 1);
    t ^= t + imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A standard normal sample (Box–Muller). */
export function gaussian(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

/**
 * mulberry32 with a state that can be saved and restored, so a resumed run draws the same numbers
 * as an uninterrupted one: `Rng.fromState(rng.state())` continues rng's sequence exactly.
 * `new Rng(seed)` draws the same sequence as `mulberry32(seed)`.
 */
export class Rng {
  private counter: number;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new InvalidArgumentError('seed', 'a safe integer', describe(seed));
    this.counter = seed >>> 0;
  }

  /** The next number, uniform in [0, 1). An arrow property, so `gaussian(rng.next)` works. */
  readonly next = (): number => {
    this.counter = (this.counter + 0x6d2b79f5) >>> 0;
    let t = this.counter;
    t = imul(t ^ (t >>> 15), t | 1);
    t ^= t + imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };

  /** The whole state: one unsigned 32-bit integer (JSON-safe). */
  state(): number {
    return this.counter;
  }

  static fromState(state: number): Rng {
    if (!Number.isInteger(state) || state < 0 || state > 0xffffffff) throw new InvalidArgumentError('state', 'an unsigned 32-bit integer (from Rng.state())', describe(state));
    return new Rng(state);
  }
}

/** murmur3's 32-bit finaliser: a bijection on 32-bit words that spreads every input bit over the output. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * A 32-bit seed from a list of integers, e.g. deriveSeed(runSeed, step, promptIndex, sampleIndex)
 * for one sample's generator. Order and count matter ((1, 2) ≠ (2, 1), (0) ≠ (0, 0)); each part
 * is a safe integer (negative ones too), hashed as two 32-bit words by chained murmur3 finalisers.
 */
export function deriveSeed(...parts: number[]): number {
  let h = fmix32(0x9e3779b9 ^ parts.length);
  parts.forEach((part, index) => {
    if (!Number.isSafeInteger(part)) throw new InvalidArgumentError(`parts[${index}]`, 'a safe integer', describe(part));
    const low = part >>> 0;
    const high = Math.floor(part / 4294967296) >>> 0;
    h = fmix32(h ^ fmix32((low + 0x9e3779b9) >>> 0));
    h = fmix32(h ^ fmix32((high + 0x7f4a7c15) >>> 0));
  });
  return h;
}

/** A uniformly random permutation of 0 … n − 1 (Fisher–Yates), drawn from `rng`. */
export function shuffledIndices(n: number, rng: Rng): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}
