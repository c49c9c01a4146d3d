/** The saveable generator (Rng) and deriveSeed, which training uses for resumable, per-sample randomness. */
import { Rng, deriveSeed, mulberry32 } from '../../src/util/random.js';

describe('Rng', () => {
  test('draws the same sequence as mulberry32(seed)', () => {
    for (const seed of [0, 1, 42, 0xffffffff, -7]) {
      const rng = new Rng(seed);
      const reference = mulberry32(seed);
      for (let i = 0; i < 100; i++) expect(rng.next()).toBe(reference());
    }
  });

  test('fromState(state()) continues the sequence, also through JSON', () => {
    const rng = new Rng(1234);
    for (let i = 0; i < 37; i++) rng.next();
    const restored = Rng.fromState(JSON.parse(JSON.stringify({ s: rng.state() })).s);
    const a = Array.from({ length: 50 }, rng.next);
    const b = Array.from({ length: 50 }, restored.next);
    expect(b).toEqual(a);
    expect(a.every((x) => x >= 0 && x < 1)).toBe(true);
  });

  test('bad seeds and states are refused', () => {
    expect(() => new Rng(0.5)).toThrow(/seed: expected a safe integer, got 0.5/);
    expect(() => Rng.fromState(-1)).toThrow(/state: expected an unsigned 32-bit integer/);
    expect(() => Rng.fromState(2 ** 32)).toThrow(/state: expected an unsigned 32-bit integer/);
  });
});

describe('deriveSeed', () => {
  test('deterministic, a 32-bit unsigned integer', () => {
    expect(deriveSeed(1, 2, 3)).toBe(deriveSeed(1, 2, 3));
    const seed = deriveSeed(99, 100_000, 7, 3);
    expect(Number.isInteger(seed) && seed >= 0 && seed <= 0xffffffff).toBe(true);
  });

  test('distinct over a grid of (run seed, step, prompt, sample)', () => {
    const seen = new Set<number>();
    for (let run = 0; run < 4; run++) for (let step = 0; step < 10; step++) for (let prompt = 0; prompt < 10; prompt++) for (let sample = 0; sample < 10; sample++) {
      seen.add(deriveSeed(run, step, prompt, sample));
    }
    expect(seen.size).toBe(4000);
  });

  test('order, count, high bits and sign all matter', () => {
    expect(deriveSeed(1, 2)).not.toBe(deriveSeed(2, 1));
    expect(deriveSeed(0)).not.toBe(deriveSeed(0, 0));
    expect(deriveSeed()).not.toBe(deriveSeed(0));
    expect(deriveSeed(2 ** 40)).not.toBe(deriveSeed(0));
    expect(deriveSeed(-1)).not.toBe(deriveSeed(0xffffffff));
    expect(() => deriveSeed(1, 0.5)).toThrow(/parts\[1\]: expected a safe integer, got 0.5/);
  });

  test('seeds of neighbouring samples give unrelated first draws', () => {
    const firsts = Array.from({ length: 1000 }, (_, i) => new Rng(deriveSeed(5, 0, 0, i)).next());
    const mean = firsts.reduce((a, b) => a + b, 0) / firsts.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.05);
  });
});
