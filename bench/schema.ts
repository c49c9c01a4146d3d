/** One schema for every benchmark result row, and the files and tables made from them. */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { writeFileAtomic } from '../src/io/tensor.js';
import { PACKAGE_VERSION } from '../src/paths.js';
import { median, quantile } from '../src/gpu/timing.js';

export interface BenchRow {
  kernel: string;
  backend: string;
  dtype: string;
  shape: number[];
  device: string;
  /** How the time was taken: timestamp-query, wall-clock, benchmark.js, cuda-event. */
  method: string;
  medianMs: number;
  p20Ms: number;
  p80Ms: number;
  samples: number;
  /** Every sample's time, in the order taken (so a mode change during a run shows where it began). */
  samplesMs?: number[];
  gbps: number | null;
  gflops: number | null;
  rowsPerSecond: number | null;
  /** The ceiling this row is compared with, measured in the same run. */
  ceiling: { name: string; gbps?: number; gflops?: number } | null;
  fractionOfCeiling: number | null;
  /** Peer time / this row's time, per peer (backend name): > 1 means this row is faster. */
  ratios: Record<string, number>;
  version: string;
  timestamp: string;
  note?: string;
}

export function rowFromSamples(base: Pick<BenchRow, 'kernel' | 'backend' | 'dtype' | 'shape' | 'device' | 'method'> & { note?: string },
  samplesMs: number[], bytes: number, rows: number | null): BenchRow {
  const medianMs = median(samplesMs);
  return {
    ...base,
    medianMs, p20Ms: quantile(samplesMs, 0.2), p80Ms: quantile(samplesMs, 0.8), samples: samplesMs.length, samplesMs: [...samplesMs],
    gbps: bytes > 0 ? bytes / (medianMs / 1000) / 1e9 : null, gflops: null,
    rowsPerSecond: rows === null ? null : rows / (medianMs / 1000),
    ceiling: null, fractionOfCeiling: null, ratios: {}, version: PACKAGE_VERSION, timestamp: new Date().toISOString(),
  };
}

/** Fills ratios: for each row, every other backend's time on the same kernel/dtype/shape. */
export function addRatios(rows: BenchRow[]): void {
  for (const row of rows) {
    for (const peer of rows) {
      if (peer === row || peer.kernel !== row.kernel || peer.dtype !== row.dtype || peer.shape.join() !== row.shape.join()) continue;
      row.ratios[peer.backend] = peer.medianMs / row.medianMs;
    }
  }
}

export function markdownTable(rows: BenchRow[]): string {
  const lines = [
    '| kernel | backend | dtype | shape | median ms | p20–p80 ms | GB/s | GFLOP/s | rows/s | of ceiling | ratios (peer time / this) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const r of rows) {
    const ratios = Object.entries(r.ratios).map(([k, v]) => `${k} ${v.toFixed(2)}×`).join(', ');
    lines.push(`| ${r.kernel} | ${r.backend} | ${r.dtype} | ${r.shape.join('×')} | ${r.medianMs.toPrecision(4)} | ${r.p20Ms.toPrecision(3)}–${r.p80Ms.toPrecision(3)} | ${r.gbps?.toFixed(1) ?? ''} | ${r.gflops?.toFixed(0) ?? ''} | ${r.rowsPerSecond?.toExponential(2) ?? ''} | ${r.fractionOfCeiling === null ? '' : `${(100 * r.fractionOfCeiling).toFixed(0)}% of ${r.ceiling!.name}`} | ${ratios} |`);
  }
  return lines.join('\n');
}

export async function writeOutput(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, [new TextEncoder().encode(text)]);
}
