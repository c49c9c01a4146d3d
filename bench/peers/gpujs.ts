/**
 * gpu.js as a benchmark peer for the token-statistics kernels.
 *
 * Per row z (length V) of `logits` with x = z / T:
 *   logsumexp     = log Σ exp(x)
 *   selfCertainty = logsumexp − mean(x) − log V
 *   entropy       = −Σ p log p = logsumexp − Σ p·x
 *   logprob       = x[id] − logsumexp
 *
 * Written the way a competent gpu.js user would: one map kernel over the logits, a small
 * reduction of its output on the host.
 *   - `partials`, output [C, rows], returnType Array(4): thread (c, r) walks the columns c, c + C,
 *     c + 2C, … of row r (strided, so neighbouring threads read neighbouring addresses) in one
 *     online-softmax pass and returns [max x, Σ exp(x − max), Σ x·exp(x − max), Σ x]. One read
 *     of each logit, one exp per logit. C ≈ 131,072 / rows (128 … 1,024), so there are ~10^5
 *     threads for a GPU to spread over even at rows = 8.
 *   - the C partials of each row are merged in float64 in JavaScript (rows · C · 4 numbers; gpu.js
 *     cannot feed an Array(4) result into another kernel in its webgpu mode, and this merge costs
 *     about a millisecond), giving logsumexp, mean, Σ p·x, and logprob from the chosen logit.
 * The logits of a block of rows go in as a 2D input, `input(z, [V, rows])`: gpu.js packs it
 * into a near-square 2D texture itself (GL modes; V = 151,936 never has to fit one texture row)
 * or a storage buffer (webgpu), and indexing it as z[r][col] keeps every index gpu.js computes
 * in f32 below 2^24 (a flat z[r·V + col] goes wrong past row 110 at this V: gpu.js declares the
 * kernel's local variables f32). Rows go in blocks of ≤ 128 MiB of logits (or the device's
 * storage-binding limit in webgpu mode: 128 MiB on llvmpipe). Every call uploads the logits:
 * gpu.js copies each array argument into a fresh buffer/texture per call.
 *
 * Modes (what gpu.js 2.24 offers under Node):
 *   - 'webgpu': gpu.js's WGSL compute backend. gpu.js only looks for `navigator.gpu`, which Node
 *     20 lacks, and never imports its own `webgpu@0.2.9` dependency (whose Linux binary needs
 *     GLIBCXX_3.4.32 and does not load on Debian 12), so this peer installs `navigator.gpu` from
 *     the host project's `webgpu` (Dawn) package: the same Dawn as our own kernels, on a real
 *     GPU where Dawn finds one (llvmpipe through lavapipe on a machine without one).
 *   - 'headlessgl': WebGL 1 fragment shaders through the optional `gl` package; needs a display
 *     (`xvfb-run -a`), and under Xvfb it renders with Mesa llvmpipe (software, CPU).
 *   - 'webasm' (WebAssembly SIMD, CPU) and 'cpu' (generated JavaScript): gpu.js's fallbacks.
 * `loadGpuJsPeer()` takes the first that runs in the order webgpu, headlessgl, webasm, cpu
 * (override with `options.mode` or the INTUITOR_GPUJS_MODE environment variable) and reports the
 * one it used in `mode`, with the adapter/renderer in `device`.
 *
 * gpu.js is loaded with a dynamic import, so the project builds and runs without it.
 */

import { readFileSync } from 'node:fs';

export interface GpuJsStats {
  logsumexp: Float32Array;
  selfCertainty: Float32Array;
  entropy: Float32Array;
  logprob: Float32Array;
}

export type GpuJsMode = 'webgpu' | 'headlessgl' | 'webasm' | 'cpu';

export interface GpuJsPeer {
  /** the mode gpu.js actually used: 'webgpu', 'headlessgl', 'webasm' or 'cpu' */
  mode: string;
  /** the gpu.js version that was loaded */
  version: string;
  /** what runs the kernels: the WebGPU adapter, the GL renderer, or 'CPU' */
  device: string;
  /** reasons the modes tried before `mode` were skipped */
  skipped: string[];
  /**
   * Computes the four statistics per row. Asynchronous because gpu.js's webgpu mode only
   * returns Promises (WebGPU readback is asynchronous); the other modes resolve at once.
   */
  forward(
    logits: Float32Array,
    rows: number,
    vocab: number,
    ids: Int32Array,
    temperature: number,
  ): Promise<GpuJsStats>;
  close(): void;
}

export interface GpuJsPeerOptions {
  /** force one mode instead of the first that runs; default: INTUITOR_GPUJS_MODE or auto */
  mode?: GpuJsMode | 'auto';
  /** threads per row (each reduces V / chunks logits); default ~131,072 / rows in 128 … 1,024 */
  chunks?: number;
}

// ----- the minimal slice of gpu.js's API used here (its own typings do not fit NodeNext) -----

interface KernelThis {
  thread: { x: number; y: number; z: number };
  constants: { V: number; L: number; C: number };
}

/** A built kernel: its result is a value, or a Promise of one in the webgpu mode. */
type GpuJsKernel = ((...args: unknown[]) => unknown) & {
  destroy?: (removeCanvasReferences?: boolean) => void;
};

interface GpuJsInstance {
  mode: string;
  createKernel(source: unknown, settings: Record<string, unknown>): GpuJsKernel;
  destroy(): unknown;
}

interface GpuJsModule {
  /** wraps a flat array as one of the given size ([columns, rows]) without copying */
  input(value: Float32Array, size: number[]): unknown;
  GPU: {
    new (settings: { mode: string }): GpuJsInstance;
    readonly isHeadlessGLSupported: boolean;
    readonly isWebGPUSupported: boolean;
    isWebGPUAvailable(): Promise<boolean>;
    readonly isWebAssemblySupported: boolean;
  };
  HeadlessGLKernel?: { readonly testContext?: GlContext | null };
  WebGPUContext?: {
    acquire(): Promise<{ adapter: WebGpuAdapter; device: WebGpuDevice }>;
    destroy(): Promise<void>;
  };
}

interface GlContext {
  getParameter(name: number): unknown;
  getExtension(name: string): unknown;
  RENDERER: number;
  VERSION: number;
}

interface WebGpuAdapter {
  info?: { vendor?: string; architecture?: string; device?: string; description?: string };
}

interface WebGpuDevice {
  limits: { maxStorageBufferBindingSize: number; maxBufferSize: number };
}

// ----- kernel (a plain function: gpu.js transpiles its source text) -----

/**
 * output [C, rows] of [max, Σ exp(x − max), Σ x·exp(x − max), Σ x] over the columns c, c + C, …
 * of row r = thread.y, c = thread.x, with x = z / temperature.
 */
function partialsKernel(this: KernelThis, z: Float32Array[], temperature: number): number[] {
  const c = this.thread.x;
  const r = this.thread.y;
  let m = -3.0e38;
  let sumExp = 0.0;
  let sumXExp = 0.0;
  let sumX = 0.0;
  for (let j = 0; j < this.constants.L; j++) {
    const col = c + j * this.constants.C;
    if (col < this.constants.V) {
      const x = z[r]![col]! / temperature;
      sumX += x;
      if (x > m) {
        const w = Math.exp(m - x);
        sumExp = sumExp * w + 1.0;
        sumXExp = sumXExp * w + x;
        m = x;
      } else {
        const e = Math.exp(x - m);
        sumExp += e;
        sumXExp += x * e;
      }
    }
  }
  return [m, sumExp, sumXExp, sumX];
}

// ----- loading -----

const MODES: readonly GpuJsMode[] = ['webgpu', 'headlessgl', 'webasm', 'cpu'];
const DEFAULT_BLOCK_BYTES = 128 * 1024 * 1024;

function message(e: unknown): string {
  return e instanceof Error ? e.message.split('\n')[0]! : String(e);
}

async function importGpuJs(): Promise<{ mod: GpuJsModule; version: string }> {
  const specifier = 'gpu.js';
  const ns = (await import(specifier)) as Partial<GpuJsModule> & { default?: Partial<GpuJsModule> };
  const mod = (ns.GPU ? ns : ns.default) as GpuJsModule | undefined;
  if (!mod || typeof mod.GPU !== 'function') throw new Error('gpu.js has no GPU export');
  let version = 'unknown';
  try {
    const { createRequire } = await import('node:module');
    const require = createRequire(import.meta.url);
    version = (require('gpu.js/package.json') as { version: string }).version;
  } catch {
    // package.json not exported: keep 'unknown'
  }
  return { mod, version };
}

/** navigator.gpu for gpu.js's webgpu mode, from the host project's Dawn bindings. */
interface NavigatorShim {
  /** the object returned by webgpu's create(): must stay reachable while the device lives */
  gpu: unknown;
  restore(): void;
}

async function installNavigatorGpu(): Promise<NavigatorShim> {
  const g = globalThis as { navigator?: { gpu?: unknown } };
  if (g.navigator?.gpu) {
    return { gpu: g.navigator.gpu, restore: () => {} };
  }
  const specifier = 'webgpu';
  const webgpu = (await import(specifier)) as { create(flags: string[]): unknown };
  const gpu = webgpu.create([]);
  if (g.navigator) {
    const nav = g.navigator;
    Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true, writable: true });
    return { gpu, restore: () => { delete nav.gpu; } };
  }
  Object.defineProperty(globalThis, 'navigator', {
    value: { gpu },
    configurable: true,
    writable: true,
  });
  return { gpu, restore: () => { delete g.navigator; } };
}

/**
 * headless-gl reports only 'ANGLE' as its renderer; the GL driver under ANGLE is told by the
 * libraries the process has loaded (Linux): Mesa's gallium (llvmpipe, on the CPU, under Xvfb)
 * or NVIDIA's GLX.
 */
function glRenderer(mod: GpuJsModule): string {
  const gl = mod.HeadlessGLKernel?.testContext;
  if (!gl) return 'headless-gl';
  const info = gl.getExtension('WEBGL_debug_renderer_info') as { UNMASKED_RENDERER_WEBGL: number } | null;
  const renderer = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
  let driver = '';
  try {
    const maps = readFileSync('/proc/self/maps', 'utf8');
    if (/libGLX_nvidia|libnvidia-glcore/.test(maps)) driver = ' over GLX: NVIDIA';
    else if (/libgallium|swrast_dri|llvmpipe/.test(maps)) driver = ' over GLX: Mesa gallium (llvmpipe, CPU)';
    else if (/libGLX_mesa/.test(maps)) driver = ' over GLX: Mesa';
  } catch {
    // not Linux: leave the driver unnamed
  }
  return `headless-gl ${String(gl.getParameter(gl.VERSION))} on ${String(renderer)}${driver}`;
}

function adapterName(adapter: WebGpuAdapter): string {
  const i = adapter.info;
  if (!i) return 'WebGPU adapter';
  return [i.vendor, i.architecture, i.device, i.description].filter((s) => s).join(' ') || 'WebGPU adapter';
}

/** Runs a tiny kernel so that a mode that only claims support is caught here. */
async function smokeTest(gpu: GpuJsInstance): Promise<void> {
  const k = gpu.createKernel(
    function (this: KernelThis, a: Float32Array): number {
      return a[this.thread.x]! * 2;
    },
    { output: [4], precision: 'single', tactic: 'precision' },
  );
  try {
    const out = (await Promise.resolve(k(new Float32Array([1, 2, 3, 4])))) as ArrayLike<number>;
    if (out[3] !== 8) throw new Error(`smoke kernel returned ${Array.from(out).join(',')}`);
  } finally {
    k.destroy?.();
  }
}

/** C for a block of `rows`: ~131,072 threads, 128 … 1,024 chunks a row, at most V */
function chunksFor(rows: number, vocab: number, override: number | undefined): number {
  if (override !== undefined) return Math.max(1, Math.min(vocab, Math.floor(override)));
  const target = Math.min(1024, Math.max(128, 131072 / rows));
  return Math.min(vocab, 2 ** Math.floor(Math.log2(target)));
}

export async function loadGpuJsPeer(
  options: GpuJsPeerOptions = {},
): Promise<GpuJsPeer | { unavailable: string }> {
  let loaded: { mod: GpuJsModule; version: string };
  try {
    loaded = await importGpuJs();
  } catch (e) {
    return { unavailable: `gpu.js cannot be loaded: ${message(e)}` };
  }
  const { mod, version } = loaded;
  const GPU = mod.GPU;

  const requested = options.mode ?? ((process.env.INTUITOR_GPUJS_MODE || 'auto') as GpuJsMode | 'auto');
  if (requested !== 'auto' && !MODES.includes(requested)) {
    return { unavailable: `unknown gpu.js mode '${String(requested)}' (expected ${MODES.join(', ')} or auto)` };
  }
  const candidates = requested === 'auto' ? MODES : [requested];

  const skipped: string[] = [];
  for (const mode of candidates) {
    let shim: NavigatorShim | null = null;
    let gpu: GpuJsInstance | null = null;
    try {
      let device = 'CPU';
      let blockBytes = DEFAULT_BLOCK_BYTES;
      if (mode === 'webgpu') {
        shim = await installNavigatorGpu();
        if (!(await GPU.isWebGPUAvailable())) throw new Error('no WebGPU adapter');
        if (!mod.WebGPUContext) throw new Error('this gpu.js has no WebGPU backend');
        const ctx = await mod.WebGPUContext.acquire();
        device = adapterName(ctx.adapter);
        blockBytes = Math.min(ctx.device.limits.maxStorageBufferBindingSize, ctx.device.limits.maxBufferSize);
      } else if (mode === 'headlessgl') {
        if (!GPU.isHeadlessGLSupported) {
          throw new Error('headless-gl has no context (is `gl` built, and is there a display? try xvfb-run -a)');
        }
      } else if (mode === 'webasm') {
        if (!GPU.isWebAssemblySupported) throw new Error('WebAssembly backend not supported');
      }
      gpu = new GPU({ mode });
      if (gpu.mode !== mode) throw new Error(`gpu.js chose '${gpu.mode}' instead`);
      await smokeTest(gpu);
      if (mode === 'headlessgl') device = glRenderer(mod);
      return makePeer(mod, gpu, mode, version, device, skipped, options.chunks, blockBytes, shim);
    } catch (e) {
      skipped.push(`${mode}: ${message(e)}`);
      try {
        gpu?.destroy();
      } catch {
        // ignore: the mode is being abandoned
      }
      if (mode === 'webgpu') await releaseWebGpu(mod, shim);
    }
  }
  return { unavailable: `gpu.js ${version}: no mode runs (${skipped.join('; ')})` };
}

async function releaseWebGpu(mod: GpuJsModule, shim: NavigatorShim | null): Promise<void> {
  try {
    await mod.WebGPUContext?.destroy();
  } catch {
    // already gone
  }
  shim?.restore();
}

function makePeer(
  mod: GpuJsModule,
  gpu: GpuJsInstance,
  mode: GpuJsMode,
  version: string,
  device: string,
  skipped: string[],
  chunks: number | undefined,
  blockBytes: number,
  shim: NavigatorShim | null,
): GpuJsPeer {
  // one kernel per (vocab, rows in a block): gpu.js kernels have fixed output sizes
  const kernels = new Map<string, { kernel: GpuJsKernel; C: number }>();
  let closed = false;
  // `shim` holds Dawn's create() object: close() refers to it, so it stays reachable for as
  // long as the peer does (see PLATFORM.md), and is released only after the device is destroyed

  function kernelFor(vocab: number, rows: number): { kernel: GpuJsKernel; C: number } {
    const key = `${vocab}x${rows}`;
    let entry = kernels.get(key);
    if (!entry) {
      const C = chunksFor(rows, vocab, chunks);
      const kernel = gpu.createKernel(partialsKernel, {
        constants: { V: vocab, C, L: Math.ceil(vocab / C) },
        constantTypes: { V: 'Integer', C: 'Integer', L: 'Integer' },
        output: [C, rows],
        returnType: 'Array(4)',
        precision: 'single',
        tactic: 'precision',
      });
      entry = { kernel, C };
      kernels.set(key, entry);
    }
    return entry;
  }

  async function forward(
    logits: Float32Array,
    rows: number,
    vocab: number,
    ids: Int32Array,
    temperature: number,
  ): Promise<GpuJsStats> {
    if (closed) throw new Error('gpu.js peer is closed');
    if (!Number.isInteger(rows) || rows < 1 || !Number.isInteger(vocab) || vocab < 1) {
      throw new RangeError(`rows and vocab must be positive integers, got ${rows} × ${vocab}`);
    }
    if (logits.length !== rows * vocab) {
      throw new RangeError(`logits: expected ${rows} × ${vocab} = ${rows * vocab} values, got ${logits.length}`);
    }
    if (ids.length !== rows) throw new RangeError(`ids: expected ${rows} values, got ${ids.length}`);
    for (let r = 0; r < rows; r++) {
      const id = ids[r]!;
      if (id < 0 || id >= vocab) throw new RangeError(`ids[${r}] = ${id} is outside [0, ${vocab})`);
    }
    if (!(temperature > 0)) throw new RangeError(`temperature must be > 0, got ${temperature}`);

    const out: GpuJsStats = {
      logsumexp: new Float32Array(rows),
      selfCertainty: new Float32Array(rows),
      entropy: new Float32Array(rows),
      logprob: new Float32Array(rows),
    };
    const logV = Math.log(vocab);
    const blockRows = Math.max(1, Math.min(rows, Math.floor(blockBytes / (vocab * 4))));
    for (let r0 = 0; r0 < rows; r0 += blockRows) {
      const n = Math.min(blockRows, rows - r0);
      const { kernel, C } = kernelFor(vocab, n);
      const z = logits.subarray(r0 * vocab, (r0 + n) * vocab);
      const partials = (await Promise.resolve(kernel(mod.input(z, [vocab, n]), temperature))) as ArrayLike<
        ArrayLike<ArrayLike<number>>
      >;
      for (let r = 0; r < n; r++) {
        const row = partials[r]!;
        let max = -Infinity;
        for (let c = 0; c < C; c++) max = Math.max(max, row[c]![0]!);
        let sumExp = 0;
        let sumXExp = 0;
        let sumX = 0;
        for (let c = 0; c < C; c++) {
          const p = row[c]!;
          const w = Math.exp(p[0]! - max);
          sumExp += p[1]! * w;
          sumXExp += p[2]! * w;
          sumX += p[3]!;
        }
        const lse = max + Math.log(sumExp);
        out.logsumexp[r0 + r] = lse;
        out.selfCertainty[r0 + r] = lse - sumX / vocab - logV;
        out.entropy[r0 + r] = lse - sumXExp / sumExp;
        out.logprob[r0 + r] = z[r * vocab + ids[r0 + r]!]! / temperature - lse;
      }
    }
    return out;
  }

  function close(): void {
    if (closed) return;
    closed = true;
    for (const { kernel } of kernels.values()) {
      try {
        kernel.destroy?.();
      } catch {
        // gpu.destroy() below releases what is left
      }
    }
    kernels.clear();
    try {
      gpu.destroy();
    } catch {
      // already destroyed
    }
    if (mode === 'webgpu') {
      void releaseWebGpu(mod, shim);
    }
  }

  return { mode, version, device, skipped, forward, close };
}
