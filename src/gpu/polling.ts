/**
 * Event polling on software adapters.
 *
 * Dawn's Node binding settles GPU promises (mapAsync, onSubmittedWorkDone, pipeline creation) by
 * re-queuing a native callback through the global `setImmediate` for as long as any of them is
 * pending: a busy loop that holds one CPU core. On a hardware GPU that costs a spare core and
 * buys the lowest latency. On a software adapter (Mesa lavapipe) the "GPU" runs its shaders on
 * the same cores, so the loop takes a core away from the work it waits for: measured on the
 * 2-core reference machine, a GRPO step (16 prompts × 8) spends 34% of its CPU time in the loop
 * and 20% in the garbage collector behind it. Pacing the loop through `setTimeout(·, 0)` (≈ 1 ms)
 * after a short spin takes 10 GRPO steps of the shipped model from 18.5 s to 10.5 s (1.7 s →
 * 0.9 s a step) and `intuitor score` (256 prompts × 8) from 16.1 s to 14.3 s.
 *
 * While a context on a fallback (CPU) adapter is open, the global `setImmediate` is wrapped so
 * that native functions (Dawn's poller is the only native caller in this process; JavaScript
 * callbacks are never native) spin at full speed for the first SPIN_MS of a wait and are then
 * re-queued through a timer. Every other caller keeps the original behaviour. The wrapper is
 * removed when the last such context closes.
 */

let holders = 0;
let original: typeof setImmediate | null = null;
let installed: typeof setImmediate | null = null;

/**
 * How long a poll loop spins at full speed before it is paced. Short waits (a decode step's
 * readback, an error scope) finish within it at full speed; only long waits (a training step's
 * passes) are paced. 2 ms: `intuitor score` (thousands of short waits) ran 16.1 s unpaced and
 * 49 s when every tick was paced, 14.3 s with the spin.
 */
const SPIN_MS = 2;
/** When the current poll loop started (-1: no loop running), and whether its callback re-queued itself. */
let loopStart = -1;
let requeued = false;
/** Paced ticks not yet run: when the last hold is released they are handed back to setImmediate, so none outlives its context. */
const pending = new Map<ReturnType<typeof setTimeout>, () => void>();

function isNative(callback: unknown): boolean {
  return typeof callback === 'function' && Function.prototype.toString.call(callback).endsWith('{ [native code] }');
}

/** Starts timer-paced polling (idempotent per holder); returns the function that releases this hold. */
export function holdSoftwareAdapterPolling(): () => void {
  if (holders++ === 0) {
    const immediate = globalThis.setImmediate;
    original = immediate;
    const paced = ((callback: (...args: unknown[]) => void, ...args: unknown[]) => {
      if (!isNative(callback)) return immediate(callback, ...args);
      requeued = true;
      const now = performance.now();
      if (loopStart < 0) loopStart = now;
      // The loop ends when a tick does not re-queue itself (nothing left pending): the next wait spins afresh.
      const tick = () => {
        requeued = false;
        callback(...args);
        if (!requeued) loopStart = -1;
      };
      if (now - loopStart < SPIN_MS) return immediate(tick);
      const timer = setTimeout(() => {
        pending.delete(timer);
        tick();
      }, 0);
      pending.set(timer, tick);
      return timer;
    }) as unknown as typeof setImmediate;
    installed = Object.assign(paced, { __promisify__: immediate.__promisify__ });
    globalThis.setImmediate = installed;
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--holders === 0) {
      // Someone who wrapped it after us keeps their wrapper (which still calls ours).
      if (globalThis.setImmediate === installed) globalThis.setImmediate = original!;
      for (const [timer, tick] of pending) {
        clearTimeout(timer);
        original!(tick);
      }
      pending.clear();
      original = installed = null;
    }
  };
}
