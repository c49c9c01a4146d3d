/**
 * Dawn's console chatter. While it discovers adapters, Dawn prints warnings about limits it
 * lowered for its own bookkeeping ("maxDynamicUniformBuffersPerPipelineLayout artificially reduced
 * ...") straight to file descriptor 2, where a user reads them as a fault. Those known lines are
 * dropped unless INTUITOR_DEBUG=1 or INTUITOR_VERBOSE=1 (`intuitor --verbose`); every other line
 * (Dawn's real errors, device loss) passes on unchanged.
 */
import { captureNativeStderr } from '../native/addon.js';

const HARMLESS_LINES = [
  /^Warning: maxDynamic\w+ artificially reduced from \d+ to \d+/,
  /XDG_RUNTIME_DIR is invalid or not set/,
];

export function verboseGpuLogging(): boolean {
  return process.env.INTUITOR_DEBUG === '1' || process.env.INTUITOR_VERBOSE === '1';
}

/** `text` without the lines known to be harmless (all of it when verbose). */
export function withoutDawnChatter(text: string, verbose = verboseGpuLogging()): string {
  if (verbose) return text;
  return text.split(/(?<=\n)/).filter((line) => !HARMLESS_LINES.some((pattern) => pattern.test(line))).join('');
}

/** Runs a synchronous Dawn call, passing on what it writes to stderr less the harmless lines. */
export function quietDawnCall<T>(call: () => T): T {
  const { value, stderr } = captureNativeStderr(call);
  if (stderr) process.stderr.write(withoutDawnChatter(stderr));
  return value;
}
