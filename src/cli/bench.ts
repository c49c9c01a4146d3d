/** `intuitor bench`: kernel benchmarks against peers and the hardware's limits (suites in bench/). */
import { markdownReport, runBench } from '../../bench/run.js';

export interface BenchCommandOptions {
  kernels?: string;
  backends?: string;
  quick?: boolean;
  rows?: string;
  dtypes?: string;
  minChunks?: string;
  peers?: string;
  json?: string;
  markdown?: string;
  chart?: string;
  profile?: boolean;
}

const list = (value: string | undefined): string[] | undefined => (value === undefined ? undefined : value.split(',').map((s) => s.trim()).filter(Boolean));
const numbers = (value: string | undefined): number[] | undefined => list(value)?.map(Number);

export async function benchCommand(options: BenchCommandOptions): Promise<void> {
  const report = await runBench({
    kernels: list(options.kernels), backends: list(options.backends), quick: options.quick,
    rows: numbers(options.rows), dtypes: list(options.dtypes), minChunks: numbers(options.minChunks),
    peers: options.peers, json: options.json, markdown: options.markdown, chart: options.chart, profile: options.profile,
  });
  process.stdout.write(markdownReport(report));
}
