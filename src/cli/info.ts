/** `intuitor info`: what this machine offers intuitor: Dawn's adapters, the chosen one, the native addon. */
import { BackendUnavailableError } from '../errors.js';
import { GpuContext, listAdapters } from '../gpu/context.js';
import { nativeStatus } from '../native/addon.js';
import { PACKAGE_VERSION } from '../paths.js';

const SHOWN_LIMITS = [
  'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupSizeX', 'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupStorageSize', 'maxComputeWorkgroupsPerDimension', 'maxStorageBuffersPerShaderStage', 'minStorageBufferOffsetAlignment',
] as const;

export async function infoCommand(options: { json?: boolean }): Promise<void> {
  const report: Record<string, unknown> = { version: PACKAGE_VERSION, node: process.version };
  try {
    report.adapters = await listAdapters();
  } catch (err) {
    report.adapters = [];
    report.adaptersError = (err as Error).message;
  }
  try {
    const ctx = await GpuContext.create();
    const limits: Record<string, number> = {};
    for (const name of SHOWN_LIMITS) limits[name] = ctx.limits[name];
    report.webgpu = {
      available: true, adapter: ctx.adapter, features: [...ctx.features].sort(), limits,
      // What the limits mean for a checkpoint: a tensor past one binding loads in row windows of at most windowBytes.
      windowBytes: Math.min(ctx.maxBindingBytes, ctx.limits.maxBufferSize),
    };
    ctx.close();
  } catch (err) {
    if (!(err instanceof BackendUnavailableError)) throw err;
    report.webgpu = { available: false, reason: err.message };
  }
  report.native = nativeStatus();
  if (options.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return;
  }
  const lines = [`intuitor ${PACKAGE_VERSION} on Node ${process.version}`, '', 'Adapters Dawn sees:'];
  for (const a of report.adapters as { backend: string; name: string }[]) lines.push(`  - ${a.name} (${a.backend})`);
  if ((report.adapters as unknown[]).length === 0) lines.push(`  (none${report.adaptersError ? `: ${String(report.adaptersError)}` : ''})`);
  const gpu = report.webgpu as { available: boolean; reason?: string; adapter?: GpuContext['adapter']; features?: string[]; limits?: Record<string, number>; windowBytes?: number };
  lines.push('', 'WebGPU backend:');
  if (gpu.available) {
    lines.push(`  chosen adapter: ${gpu.adapter!.description} [vendor ${gpu.adapter!.vendor}, ${gpu.adapter!.architecture}${gpu.adapter!.isFallbackAdapter ? ', software fallback' : ''}, subgroups ${gpu.adapter!.subgroupMinSize}-${gpu.adapter!.subgroupMaxSize}]`);
    lines.push(`  features: ${gpu.features!.join(', ')}`);
    lines.push('  limits:');
    for (const [k, v] of Object.entries(gpu.limits!)) lines.push(`    ${k.padEnd(36)} ${v}`);
    const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
    lines.push(`  one storage binding holds ${mib(gpu.limits!.maxStorageBufferBindingSize!)}, one buffer ${mib(gpu.limits!.maxBufferSize!)}: a weight larger than `
      + `${mib(gpu.windowBytes!)} loads in row windows of whole rows, each within both; logits and batches past one binding run in windows and chunks`);
  } else {
    lines.push(`  unavailable: ${gpu.reason}`);
  }
  const native = report.native as ReturnType<typeof nativeStatus>;
  lines.push('', 'Native backend:');
  lines.push(native.loaded ? `  loaded from ${native.path} (${native.simd}, ${native.threads} threads)` : `  not loaded: ${native.reason}`);
  process.stdout.write(lines.join('\n') + '\n');
}
