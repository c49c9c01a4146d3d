/**
 * Per-step metrics as JSON Lines and CSV in the run's folder. On resume the files are cut back to
 * the checkpoint's step first, so they read as one uninterrupted run.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type MetricValue = number | string | null;

export class MetricsLog {
  readonly jsonlPath: string;
  readonly csvPath: string;
  private readonly columns: readonly string[];

  /** Opens `<dir>/metrics.jsonl` and `<dir>/metrics.csv` with these CSV columns; keeps records with step ≤ keepThroughStep. */
  constructor(dir: string, columns: readonly string[], keepThroughStep: number) {
    this.jsonlPath = join(dir, 'metrics.jsonl');
    this.csvPath = join(dir, 'metrics.csv');
    this.columns = columns;
    mkdirSync(dir, { recursive: true });
    const kept = this.read().filter((r) => typeof r.step === 'number' && r.step <= keepThroughStep);
    writeFileSync(this.jsonlPath, kept.map((r) => `${JSON.stringify(r)}\n`).join(''));
    writeFileSync(this.csvPath, [columns.join(','), ...kept.map((r) => this.csvLine(r))].map((l) => `${l}\n`).join(''));
  }

  /** Every record so far. */
  read(): Record<string, MetricValue>[] {
    if (!existsSync(this.jsonlPath)) return [];
    return readFileSync(this.jsonlPath, 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, MetricValue>);
  }

  append(record: Record<string, MetricValue>): void {
    appendFileSync(this.jsonlPath, `${JSON.stringify(record)}\n`);
    appendFileSync(this.csvPath, `${this.csvLine(record)}\n`);
  }

  private csvLine(record: Record<string, MetricValue>): string {
    return this.columns.map((c) => {
      const v = record[c];
      if (v === undefined || v === null) return '';
      return typeof v === 'string' ? `"${v.replace(/"/g, '""')}"` : String(v);
    }).join(',');
  }
}
