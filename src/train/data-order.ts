/**
 * The order a training run visits its examples: a seeded shuffle per epoch. Its state (the
 * current order, the position in it, the generator) goes into checkpoints, so a resumed run
 * visits exactly the examples the uninterrupted one would have.
 */
import { Rng, shuffledIndices } from '../util/random.js';

export interface DataOrderState {
  order: number[];
  index: number;
  epoch: number;
  rng: number;
}

export class DataOrder {
  private readonly rng: Rng;
  private order: number[];
  private index: number;
  private epoch: number;

  /** Over `count` examples, from `seed`, or continuing `state` (from state()). */
  constructor(private readonly count: number, seed: number, state?: DataOrderState) {
    this.rng = state ? Rng.fromState(state.rng) : new Rng(seed);
    this.order = state ? [...state.order] : shuffledIndices(count, this.rng);
    this.index = state?.index ?? 0;
    this.epoch = state?.epoch ?? 0;
  }

  /** The next example's index; a new shuffle starts each epoch. */
  next(): number {
    if (this.index === this.order.length) {
      this.order = shuffledIndices(this.count, this.rng);
      this.index = 0;
      this.epoch++;
    }
    return this.order[this.index++]!;
  }

  state(): DataOrderState {
    return { order: [...this.order], index: this.index, epoch: this.epoch, rng: this.rng.state() };
  }
}
