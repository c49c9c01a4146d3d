/**
 * The WebGPU runtime: one GpuContext owns Dawn's instance, the adapter and the device.
 *
 * - Dawn's instance (the object `create()` returns) must stay reachable while any adapter or
 *   device lives, or Dawn is destroyed under a live device; and it keeps Node from exiting until
 *   it is released. The context holds it and `close()` drops it.
 * - Devices are requested with the adapter's real limits (the defaults cap storage bindings at
 *   128 MiB and buffers at 256 MiB) and the optional features kernels use.
 * - Every op runs its encoding inside error scopes (`scoped`), so validation, out-of-memory and
 *   internal errors become typed GpuErrors naming the op; uncaptured errors and device loss
 *   surface on the next op instead of being silent.
 * - Embedding: `GpuContext.fromDevice(device)` wraps a caller's device; close() then leaves it
 *   alive.
 * - On a software adapter (lavapipe), Dawn's event polling is paced by a timer while the context
 *   is open, so it does not take a core from the shaders it waits for (./polling.ts).
 */
import { createRequire } from 'node:module';
import { GpuError, BackendUnavailableError, InvalidArgumentError, describe } from '../errors.js';
import { quietDawnCall } from './dawn-stderr.js';
import { loadKernel, type KernelVariant } from './kernels.js';
import { holdSoftwareAdapterPolling } from './polling.js';

type DawnModule = { create(flags: string[]): GPU; globals: Record<string, unknown> };
let dawn: DawnModule | null = null;
let dawnLoadError: string | null = null;

function loadDawn(): DawnModule {
  if (dawn) return dawn;
  if (dawnLoadError) throw new BackendUnavailableError('webgpu', dawnLoadError);
  try {
    // webgpu is ESM with a top-level native require; createRequire keeps this module synchronous.
    const require = createRequire(import.meta.url);
    const resolved = require.resolve('webgpu');
    const dir = resolved.slice(0, resolved.lastIndexOf('/'));
    const arch = process.platform === 'darwin' ? 'universal' : process.arch;
    dawn = require(`${dir}/dist/${process.platform}-${arch}/dawn.node`) as DawnModule;
  } catch (err) {
    dawnLoadError = `Dawn's node bindings (npm 'webgpu') failed to load: ${(err as Error).message}`;
    throw new BackendUnavailableError('webgpu', dawnLoadError);
  }
  // WebGPU's enum globals (GPUBufferUsage, ...) are needed by callers; never clobber a host's own.
  for (const [name, value] of Object.entries(dawn.globals)) {
    if (!(name in globalThis)) (globalThis as Record<string, unknown>)[name] = value;
  }
  return dawn;
}

export interface GpuContextOptions {
  /** Dawn backend: 'vulkan', 'metal', 'd3d12', 'opengl', ... Default: Dawn's choice. */
  backend?: string;
  /** Pick the adapter whose name contains this text (see listAdapters()). */
  adapterName?: string;
  /** Default 'high-performance'. */
  powerPreference?: GPUPowerPreference;
  /**
   * Largest storage binding ops may use, at most the device's limit. Lower it to leave room for
   * other work or to exercise the split-across-dispatches path in tests.
   */
  maxBindingBytes?: number;
  /** Use the `subgroups` variants of kernels where the device has the feature. Default true. */
  useSubgroups?: boolean;
  /**
   * Timestamps at full resolution: Dawn rounds them to 65.5 µs by default (a browser privacy
   * measure), too coarse for sub-millisecond kernels. Benchmarks turn this on.
   */
  preciseTimestamps?: boolean;
}

export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
  subgroupMinSize: number;
  subgroupMaxSize: number;
}

/** The features a kernel may use when the adapter has them. */
export const OPTIONAL_FEATURES: readonly GPUFeatureName[] = ['subgroups', 'timestamp-query', 'shader-f16'] as GPUFeatureName[];

/** Limits requested at the adapter's maximum. */
const REQUESTED_LIMITS = [
  'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupSizeX', 'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupStorageSize', 'maxComputeWorkgroupsPerDimension', 'maxStorageBuffersPerShaderStage',
] as const;

function describeAdapter(adapter: GPUAdapter): AdapterDescription {
  const info = adapter.info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number; isFallbackAdapter?: boolean };
  return {
    vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description,
    isFallbackAdapter: Boolean(info.isFallbackAdapter), subgroupMinSize: info.subgroupMinSize ?? 0, subgroupMaxSize: info.subgroupMaxSize ?? 0,
  };
}

/** Adapters Dawn can see: [{ backend, name }], read from Dawn's own listing. */
export async function listAdapters(backend?: string): Promise<{ backend: string; name: string }[]> {
  const { create } = loadDawn();
  const flags = ['adapter=\u0000intuitor-list-adapters'];
  if (backend) flags.push(`backend=${backend}`);
  let instance: GPU | null = create(flags);
  try {
    await quietDawnCall(() => instance!.requestAdapter());
    return [];
  } catch (err) {
    return [...String((err as Error).message).matchAll(/backend: '([^']*)', name: '([^']*)'/g)].map((m) => ({ backend: m[1]!, name: m[2]! }));
  } finally {
    instance = null;
  }
}

type PipelineKey = string;

export class GpuContext {
  readonly device: GPUDevice;
  readonly adapter: AdapterDescription | null;
  readonly features: ReadonlySet<string>;
  readonly ownsDevice: boolean;
  /** Dawn's instance: held only to keep it alive while the device is (see the class comment). */
  private instance: GPU | null;
  private lostReason: string | null = null;
  /** Releases timer-paced event polling (./polling.ts), held while this context is on a software adapter. */
  private releasePolling: (() => void) | null = null;
  private liveBytes = 0;
  private peakBytes = 0;
  private readonly uncaptured: GPUError[] = [];
  private readonly pipelines = new Map<PipelineKey, Promise<GPUComputePipeline>>();
  private readonly modules = new Map<string, GPUShaderModule>();
  private readonly onUncaptured = (event: Event): void => {
    this.uncaptured.push((event as GPUUncapturedErrorEvent).error);
  };

  /** Largest storage binding ops use (≤ the device's maxStorageBufferBindingSize). */
  readonly maxBindingBytes: number;
  /** Which kernel variants this context compiles. */
  readonly variant: KernelVariant;

  private constructor(device: GPUDevice, adapter: AdapterDescription | null, instance: GPU | null, ownsDevice: boolean,
    options: Pick<GpuContextOptions, 'maxBindingBytes' | 'useSubgroups'>) {
    const { maxBindingBytes } = options;
    const limit = device.limits.maxStorageBufferBindingSize;
    if (maxBindingBytes !== undefined && !(Number.isSafeInteger(maxBindingBytes) && maxBindingBytes >= 4096 && maxBindingBytes <= limit)) {
      throw new InvalidArgumentError('maxBindingBytes', `an integer in [4096, ${limit}]`, describe(maxBindingBytes));
    }
    this.maxBindingBytes = maxBindingBytes ?? limit;
    this.variant = { subgroups: (options.useSubgroups ?? true) && device.features.has('subgroups') };
    this.device = device;
    this.adapter = adapter;
    this.instance = instance;
    this.ownsDevice = ownsDevice;
    this.features = new Set([...device.features] as string[]);
    device.addEventListener('uncapturederror', this.onUncaptured);
    void device.lost.then((info) => {
      this.lostReason = `${info.reason}: ${info.message}`;
    });
  }

  /** Opens Dawn, picks an adapter and requests a device with its real limits. */
  static async create(options: GpuContextOptions = {}): Promise<GpuContext> {
    const { create } = loadDawn();
    const flags: string[] = [];
    if (options.backend !== undefined) flags.push(`backend=${options.backend}`);
    if (options.adapterName !== undefined) flags.push(`adapter=${options.adapterName}`);
    if (options.preciseTimestamps) flags.push('disable-dawn-features=timestamp_quantization');
    const instance = create(flags);
    let adapter: GPUAdapter | null;
    try {
      adapter = await quietDawnCall(() => instance.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' }));
    } catch (err) {
      throw new BackendUnavailableError('webgpu', (err as Error).message.split('\n').join('; '));
    }
    if (!adapter) {
      throw new BackendUnavailableError('webgpu', 'Dawn found no adapter (on a machine without a GPU, install Mesa lavapipe: see README)');
    }
    const requiredLimits: Record<string, number> = {};
    for (const name of REQUESTED_LIMITS) requiredLimits[name] = adapter.limits[name];
    const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
    const device = await adapter.requestDevice({ label: 'intuitor', requiredLimits, requiredFeatures });
    const description = describeAdapter(adapter);
    const context = new GpuContext(device, description, instance, true, options);
    if (description.isFallbackAdapter) context.releasePolling = holdSoftwareAdapterPolling();
    return context;
  }

  /** Wraps a caller's device. intuitor never destroys it; close() only detaches. */
  static fromDevice(device: GPUDevice, options: Pick<GpuContextOptions, 'maxBindingBytes' | 'useSubgroups'> = {}): GpuContext {
    if (!device || typeof (device as GPUDevice).createComputePipelineAsync !== 'function') {
      throw new InvalidArgumentError('device', 'a GPUDevice', describe(device));
    }
    loadDawn();
    return new GpuContext(device, null, null, false, options);
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  get hasTimestamps(): boolean {
    return this.features.has('timestamp-query');
  }

  /** Throws if the device was lost or an uncaptured error is pending. */
  assertUsable(op: string): void {
    if (this.lostReason !== null) {
      throw new GpuError(op, 'device-lost', `the device was lost (${this.lostReason}); create a new GpuContext`);
    }
    const pending = this.uncaptured.shift();
    if (pending) throw new GpuError(op, kindOf(pending), `uncaptured error from an earlier call: ${pending.message}`);
  }

  /**
   * Runs `encode` (synchronous: it creates objects, encodes and submits) inside validation,
   * out-of-memory and internal error scopes, and throws what they caught as a GpuError.
   * Synchronous on purpose: scopes are a per-device stack, and an await inside would let
   * another op's errors land in this op's scope.
   */
  async scoped<T>(op: string, encode: () => T): Promise<T> {
    this.assertUsable(op);
    const device = this.device;
    device.pushErrorScope('internal');
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    let result: T | undefined;
    let thrown: unknown = null;
    try {
      result = encode();
    } catch (err) {
      thrown = err;
    }
    const scopes = [device.popErrorScope(), device.popErrorScope(), device.popErrorScope()];
    const errors = await Promise.all(scopes);
    const first = errors.find((e) => e !== null);
    if (first) throw new GpuError(op, kindOf(first), first.message);
    if (thrown !== null) throw thrown;
    if (this.lostReason !== null) this.assertUsable(op);
    return result as T;
  }

  /**
   * Records `encode` into one compute pass and submits it, inside the op's error scopes. Buffers
   * in `clear` are zeroed first, in the same submission (gradients that kernels add into);
   * `after` records commands that follow the pass in the same submission (copies out of it).
   */
  async runPass(op: string, encode: (pass: GPUComputePassEncoder) => void,
    { clear = [], after }: { clear?: readonly GPUBuffer[]; after?: (encoder: GPUCommandEncoder) => void } = {}): Promise<void> {
    await this.scoped(op, () => {
      const encoder = this.device.createCommandEncoder({ label: op });
      for (const buffer of clear) encoder.clearBuffer(buffer);
      const pass = encoder.beginComputePass({ label: op });
      encode(pass);
      pass.end();
      after?.(encoder);
      this.device.queue.submit([encoder.finish()]);
    });
  }

  private module(kernel: string): GPUShaderModule {
    let mod = this.modules.get(kernel);
    if (!mod) {
      const code = loadKernel(kernel, this.variant);
      mod = this.device.createShaderModule({ label: kernel, code });
      this.modules.set(kernel, mod);
    }
    return mod;
  }

  /**
   * The compute pipeline for (kernel, entry point, override constants), created once and cached.
   * Shapes never enter the key: they travel in uniforms.
   */
  pipeline(kernel: string, entryPoint: string, constants: Record<string, number> = {}): Promise<GPUComputePipeline> {
    const key = `${kernel}:${entryPoint}:${Object.entries(constants).sort().map(([k, v]) => `${k}=${v}`).join(',')}`;
    let pending = this.pipelines.get(key);
    if (!pending) {
      pending = this.createPipeline(kernel, entryPoint, constants, key);
      this.pipelines.set(key, pending);
      pending.catch(() => this.pipelines.delete(key));
    }
    return pending;
  }

  private async createPipeline(kernel: string, entryPoint: string, constants: Record<string, number>, label: string): Promise<GPUComputePipeline> {
    this.assertUsable(kernel);
    loadKernel(kernel, this.variant); // throws for an unknown kernel before a scope is open
    this.device.pushErrorScope('validation');
    const module = this.module(kernel);
    const moduleError = await this.device.popErrorScope();
    if (moduleError) {
      const info = await module.getCompilationInfo();
      const detail = info.messages.map((m) => `${kernel}.wgsl:${m.lineNum}:${m.linePos} ${m.type}: ${m.message}`).join('\n');
      this.modules.delete(kernel);
      throw new GpuError(kernel, 'validation', detail || moduleError.message);
    }
    try {
      return await this.device.createComputePipelineAsync({ label, layout: 'auto', compute: { module, entryPoint, constants } });
    } catch (err) {
      throw new GpuError(kernel, 'validation', `pipeline ${label}: ${(err as Error).message}`);
    }
  }

  /**
   * A buffer of at least `size` bytes (a multiple of 16), counted in `memory` until destroyed. A
   * size over the device's maxBufferSize throws here, naming the buffer (Dawn would only report
   * it asynchronously, as an error with no op attached).
   */
  createBuffer(label: string, size: number, usage: GPUBufferUsageFlags): GPUBuffer {
    const bytes = Math.max(16, Math.ceil(size / 16) * 16);
    if (bytes > this.device.limits.maxBufferSize) {
      throw new GpuError(label, 'out-of-memory', `needs one buffer of ${bytes} bytes; this device allows at most ${this.device.limits.maxBufferSize} (maxBufferSize)`);
    }
    const buffer = this.device.createBuffer({ label, size: bytes, usage });
    this.liveBytes += buffer.size;
    this.peakBytes = Math.max(this.peakBytes, this.liveBytes);
    const destroy = buffer.destroy.bind(buffer);
    let counted = true;
    buffer.destroy = () => {
      if (counted) this.liveBytes -= buffer.size;
      counted = false;
      destroy();
    };
    return buffer;
  }

  /**
   * Buffers made together (an op's activations), inside the op's error scopes. Running out of
   * memory frees the ones made and throws a GpuError saying how much they needed in all, beside
   * what was already in use.
   */
  async allocate(op: string, specs: readonly { label: string; bytes: number; usage: GPUBufferUsageFlags }[]): Promise<GPUBuffer[]> {
    const made: GPUBuffer[] = [];
    const inUse = this.liveBytes;
    try {
      return await this.scoped(op, () => {
        for (const spec of specs) made.push(this.createBuffer(spec.label, spec.bytes, spec.usage));
        return made;
      });
    } catch (err) {
      made.forEach((b) => b.destroy());
      if (!(err instanceof GpuError) || err.kind !== 'out-of-memory') throw err;
      const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
      const needed = specs.reduce((sum, spec) => sum + Math.max(16, Math.ceil(spec.bytes / 16) * 16), 0);
      throw new GpuError(op, 'out-of-memory', `needs ${mib(needed)} of GPU memory in ${specs.length} buffers, beside the ${mib(inUse)} this context already holds (${err.message.replace(/^.*?error: /, '')})`);
    }
  }

  /**
   * GPU memory in buffers made through this context (weights, activations, gradients, optimiser
   * state, op scratch): live now, and the most at once since resetPeak(). Readback staging and
   * Dawn's own allocations are not counted.
   */
  get memory(): { liveBytes: number; peakBytes: number } {
    return { liveBytes: this.liveBytes, peakBytes: this.peakBytes };
  }

  /** Starts a new peak (e.g. per training step) from what is live now. */
  resetPeak(): void {
    this.peakBytes = this.liveBytes;
  }

  /** A STORAGE buffer holding `data` (padded to 16 bytes so vec4 views cover every element). */
  upload(label: string, data: ArrayBufferView, usage: GPUBufferUsageFlags = GPUBufferUsage.STORAGE): GPUBuffer {
    const buffer = this.createBuffer(label, data.byteLength, usage | GPUBufferUsage.COPY_DST);
    this.writeBuffer(buffer, 0, data);
    return buffer;
  }

  /** queue.writeBuffer for any byte length (pads the tail to a multiple of 4). */
  writeBuffer(buffer: GPUBuffer, offset: number, data: ArrayBufferView): void {
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const whole = bytes.byteLength & ~3;
    if (whole > 0) this.device.queue.writeBuffer(buffer, offset, bytes, 0, whole);
    if (whole < bytes.byteLength) {
      const tail = new Uint8Array(4);
      tail.set(bytes.subarray(whole));
      this.device.queue.writeBuffer(buffer, offset + whole, tail);
    }
  }

  /** A uniform buffer holding `data`. */
  uniform(label: string, data: ArrayBuffer): GPUBuffer {
    return this.upload(label, new Uint8Array(data), GPUBufferUsage.UNIFORM);
  }

  /** Copies `byteLength` bytes of a buffer back to the host. */
  async read(op: string, buffer: GPUBuffer, byteLength: number, offset = 0): Promise<ArrayBuffer> {
    const size = Math.ceil(byteLength / 4) * 4;
    const staging = await this.scoped(op, () => {
      const s = this.device.createBuffer({ label: `${op}:readback`, size: Math.max(size, 4), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const encoder = this.device.createCommandEncoder({ label: `${op}:readback` });
      if (size > 0) encoder.copyBufferToBuffer(buffer, offset, s, 0, size);
      this.device.queue.submit([encoder.finish()]);
      return s;
    });
    try {
      return await this.readMapped(op, staging, byteLength);
    } finally {
      staging.destroy();
    }
  }

  /**
   * The first `byteLength` bytes of a MAP_READ buffer once the work submitted so far has written
   * it; the buffer is unmapped again, ready for the next copy into it.
   */
  async readMapped(op: string, staging: GPUBuffer, byteLength: number): Promise<ArrayBuffer> {
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (err) {
      this.assertUsable(op);
      throw new GpuError(op, 'internal', `reading back ${byteLength} bytes failed: ${(err as Error).message}`);
    }
    const bytes = staging.getMappedRange().slice(0, byteLength);
    staging.unmap();
    return bytes;
  }

  /** Resolves when the queue has finished everything submitted so far. */
  async sync(op = 'sync'): Promise<void> {
    this.assertUsable(op);
    await this.device.queue.onSubmittedWorkDone();
    this.assertUsable(op);
  }

  /** Releases the device (when owned) and Dawn's instance, so the process can exit. */
  close(): void {
    this.device.removeEventListener('uncapturederror', this.onUncaptured);
    this.pipelines.clear();
    this.modules.clear();
    if (this.ownsDevice) this.device.destroy();
    // Dawn still settles the device's loss (and any other event in flight) after destroy(); its
    // instance must outlive that, or a garbage collection in between frees what the settling uses
    // (measured: a crash at exit in 1 of 10 `intuitor info` runs). It is dropped a turn after.
    const instance = this.instance;
    if (instance) {
      retiredInstances.add(instance);
      void this.device.lost.then(() => setImmediate(() => retiredInstances.delete(instance)));
    }
    this.instance = null;
    this.releasePolling?.();
    this.releasePolling = null;
  }
}

/** Instances of closed contexts, kept until their devices' loss has been settled (see close()). */
const retiredInstances = new Set<GPU>();

function kindOf(error: GPUError): GpuError['kind'] {
  const name = error.constructor?.name ?? '';
  if (name.includes('OutOfMemory')) return 'out-of-memory';
  if (name.includes('Internal')) return 'internal';
  return 'validation';
}
