/** The WebGPU runtime: adapters, limits, pipeline cache, error scopes, device loss, embedding. */
import { GpuError, InvalidArgumentError } from '../../src/errors.js';
import { GpuContext, listAdapters } from '../../src/gpu/context.js';
import { quietDawnCall } from '../../src/gpu/dawn-stderr.js';
import { holdSoftwareAdapterPolling } from '../../src/gpu/polling.js';
import { tokenStats } from '../../src/ops/token-stats.js';
import { describeGpu } from '../helpers.js';

describeGpu('GpuContext', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await GpuContext.create();
  });
  afterAll(() => ctx.close());

  test('requests the adapter limits and the optional features it has', async () => {
    expect(ctx.adapter?.description).toBeTruthy();
    expect(ctx.limits.maxStorageBufferBindingSize).toBeGreaterThan(128 * 1024 * 1024 - 1);
    expect(ctx.maxBindingBytes).toBe(ctx.limits.maxStorageBufferBindingSize);
    expect(ctx.limits.maxStorageBuffersPerShaderStage).toBeGreaterThanOrEqual(9);
    expect(ctx.features.has('timestamp-query')).toBe(true);
    expect((await listAdapters()).length).toBeGreaterThan(0);
  });

  test('memory counts every buffer the context makes until it is destroyed, and keeps the peak', () => {
    ctx.resetPeak();
    const before = ctx.memory.liveBytes;
    const a = ctx.createBuffer('test:a', 1000, GPUBufferUsage.STORAGE);
    const b = ctx.upload('test:b', new Float32Array(100));
    expect(ctx.memory.liveBytes - before).toBe(1008 + 400);
    a.destroy();
    a.destroy(); // a second destroy is not counted twice
    expect(ctx.memory).toEqual({ liveBytes: before + 400, peakBytes: before + 1408 });
    ctx.resetPeak();
    b.destroy();
    expect(ctx.memory).toEqual({ liveBytes: before, peakBytes: before + 400 });
  });

  test('pipelines are cached by kernel, entry point and overrides; not by shape', async () => {
    const a = await ctx.pipeline('token_stats_forward', 'partials_main', { DTYPE: 0, WG: 256 });
    const b = await ctx.pipeline('token_stats_forward', 'partials_main', { WG: 256, DTYPE: 0 });
    const c = await ctx.pipeline('token_stats_forward', 'partials_main', { DTYPE: 2, WG: 256 });
    expect(a).toBe(b);
    expect(c).not.toBe(a);
    expect(a.label).toContain('token_stats_forward:partials_main');
  });

  test('a validation error inside an op becomes a GpuError naming the op', async () => {
    const op = ctx.scoped('my_op', () => ctx.device.createBuffer({ label: 'bad', size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.STORAGE }));
    await expect(op).rejects.toThrow(GpuError);
    await expect(ctx.scoped('my_op', () => ctx.device.createBuffer({ label: 'bad', size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.STORAGE }))).rejects.toThrow(/my_op: GPU validation error/);
  });

  test('an unknown kernel and a WGSL error are reported, not silent', async () => {
    await expect(ctx.pipeline('no_such_kernel', 'main')).rejects.toThrow(InvalidArgumentError);
    await expect(ctx.pipeline('token_stats_forward', 'no_such_entry')).rejects.toThrow(GpuError);
  });

  test('a buffer over the device limit is refused at once, naming the buffer and both sizes', async () => {
    const limit = ctx.device.limits.maxBufferSize;
    const rounded = Math.ceil((limit + 1) / 16) * 16;
    expect(() => ctx.createBuffer('huge', limit + 1, GPUBufferUsage.STORAGE))
      .toThrow(`huge: GPU out-of-memory error: needs one buffer of ${rounded} bytes; this device allows at most ${limit} (maxBufferSize)`);
    // Nothing was left pending: the next op runs.
    const r = await tokenStats({ logits: new Float32Array([1, 2]), shape: [1, 2] }, { backend: 'webgpu', context: ctx });
    expect(r.logsumexp[0]).toBeCloseTo(Math.log(Math.exp(1) + Math.exp(2)), 5);
  });

  test('allocate: running out of memory frees what was made and says how much was needed', async () => {
    // A context whose scopes report out-of-memory after the buffers were made, as Dawn does.
    const tight = Object.create(ctx) as GpuContext;
    tight.scoped = async <T>(op: string, encode: () => T): Promise<T> => {
      encode();
      throw new GpuError(op, 'out-of-memory', 'allocation failed');
    };
    const before = tight.memory.liveBytes;
    const specs = [{ label: 'a', bytes: 2 ** 20, usage: GPUBufferUsage.STORAGE }, { label: 'b', bytes: 3 * 2 ** 20 - 5, usage: GPUBufferUsage.STORAGE }];
    await expect(tight.allocate('my_op', specs)).rejects.toThrow(new RegExp(`^my_op: GPU out-of-memory error: needs 4\\.0 MiB of GPU memory in 2 buffers, beside the ${(before / 2 ** 20).toFixed(1)} MiB this context already holds \\(allocation failed\\)$`));
    expect(tight.memory.liveBytes).toBe(before);
    const made = await ctx.allocate('my_op', specs);
    expect(made.map((b) => [b.label, b.size])).toEqual([['a', 2 ** 20], ['b', 3 * 2 ** 20]]);
    made.forEach((b) => b.destroy());
  });

  test('an error outside any scope surfaces on the next op', async () => {
    // Dawn also prints an uncaptured error unless a listener prevents that; this one is expected.
    const expected = (event: Event) => event.preventDefault();
    ctx.device.addEventListener('uncapturederror', expected);
    ctx.device.createBuffer({ label: 'unscoped-bad', size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.STORAGE });
    await ctx.device.queue.onSubmittedWorkDone();
    await expect(tokenStats({ logits: new Float32Array(4), shape: [1, 4] }, { backend: 'webgpu', context: ctx })).rejects.toThrow(/uncaptured error from an earlier call/);
    ctx.device.removeEventListener('uncapturederror', expected);
  });
});

describeGpu('device loss and embedding', () => {
  test('a lost device becomes a typed error, and a new context works after it', async () => {
    const doomed = await GpuContext.create();
    doomed.device.destroy();
    await new Promise((resolve) => setTimeout(resolve, 20));
    const call = tokenStats({ logits: new Float32Array([1, 2]), shape: [1, 2] }, { backend: 'webgpu', context: doomed });
    await expect(call).rejects.toMatchObject({ kind: 'device-lost' });
    doomed.close();
    const fresh = await GpuContext.create();
    const r = await tokenStats({ logits: new Float32Array([1, 2]), shape: [1, 2] }, { backend: 'webgpu', context: fresh });
    expect(r.logsumexp[0]).toBeCloseTo(Math.log(Math.exp(1) + Math.exp(2)), 5);
    fresh.close();
  });

  test('on a software adapter, Dawn\'s native poller spins 2 ms per wait, then is paced by a timer, while a context is open; JavaScript callbacks are not', async () => {
    const handleKind = (callback: () => unknown) => (setImmediate(callback) as object).constructor.name;
    // Math.random stands in for Dawn's poller (both are native). A wait is a run of native ticks:
    // two scheduled 3 ms apart before either runs are one wait, past its spin.
    const nativeWait = async () => {
      const first = handleKind(Math.random);
      const start = performance.now();
      while (performance.now() - start < 3);
      const later = handleKind(Math.random);
      await new Promise((resolve) => setTimeout(resolve, 5)); // both ticks run: the wait ends
      return [first, later];
    };
    const outside = globalThis.setImmediate;
    expect(await nativeWait()).toEqual(['Immediate', 'Immediate']);
    const ctx = await GpuContext.create();
    expect(await nativeWait()).toEqual(ctx.adapter!.isFallbackAdapter ? ['Immediate', 'Timeout'] : ['Immediate', 'Immediate']);
    expect(handleKind(() => undefined)).toBe('Immediate');
    const release = holdSoftwareAdapterPolling();
    expect(await nativeWait()).toEqual(['Immediate', 'Timeout']);
    release();
    release(); // a second release of the same hold changes nothing
    expect(await nativeWait()).toEqual(ctx.adapter!.isFallbackAdapter ? ['Immediate', 'Timeout'] : ['Immediate', 'Immediate']);
    ctx.close();
    expect(globalThis.setImmediate).toBe(outside);
  });

  test("a caller's own GPUDevice is used and left alive on close()", async () => {
    const { create } = (await import('webgpu')) as unknown as { create(flags: string[]): GPU };
    const instance = create([]);
    const adapter = (await quietDawnCall(() => instance.requestAdapter()))!;
    const device = await adapter.requestDevice({ label: 'caller-device' });
    const ctx = GpuContext.fromDevice(device);
    const r = await tokenStats({ logits: new Float32Array([0, 0, 0, 0]), shape: [2, 2] }, { backend: 'webgpu', context: ctx });
    expect(Array.from(r.selfCertainty)).toEqual([0, 0]);
    ctx.close();
    const probe = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE });
    expect(probe.size).toBe(16);
    device.destroy();
    expect(() => GpuContext.fromDevice({} as GPUDevice)).toThrow(/device: expected a GPUDevice/);
    expect(instance).toBeTruthy(); // keep Dawn's instance reachable until here
  });
});
