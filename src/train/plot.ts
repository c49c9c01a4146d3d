/**
 * Training curves as one SVG: a grid of panels (reward, self-certainty, accuracy, KL, ...), each
 * with axes, ticks and labels, several runs overlaid in colours shared across panels and named
 * once in a legend. Hand-written SVG text as bench/chart.ts: no plotting dependency, renders
 * anywhere. Non-finite values (NaN, ±Infinity, null) are gaps in a line; a point with no
 * neighbour is drawn as a dot, so a single point still shows; a constant series is a flat line in
 * a padded range.
 */
import { InvalidArgumentError, describe } from '../errors.js';

export interface ChartSeries {
  /** The run's name: the legend label and the key of its colour in every panel. */
  name: string;
  /** [step, value] pairs; a null or non-finite value (or step) is a gap. */
  points: readonly (readonly [number, number | null])[];
}

export interface ChartPanel {
  title: string;
  yLabel: string;
  series: readonly ChartSeries[];
}

export interface LineChartOptions {
  title: string;
  panels: readonly ChartPanel[];
  /** Total width in pixels (default 960). */
  width?: number;
  /** Total height in pixels (default: 320 per row of panels plus the title and legend; at least 120 per row). */
  height?: number;
  /** Panels per row (default 2, or 1 for a single panel). */
  columns?: number;
}

/** Colour-blind-safe palette (Okabe & Ito, 2008), cycled when there are more runs. */
const PALETTE = ['#0072b2', '#d55e00', '#009e73', '#cc79a7', '#e69f00', '#56b4e9', '#000000', '#f0e442'];

const escape = (text: string): string =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');

/** Coordinates to 2 decimals: sub-pixel enough, and keeps files small. */
const px = (v: number): string => String(Math.round(v * 100) / 100);

/**
 * Round ticks ("nice numbers", Heckbert 1990) covering [lo, hi]: steps of 1, 2 or 5 × 10^k, about
 * `target` of them; `integer` keeps the step ≥ 1 (training steps have no halves).
 */
export function niceTicks(lo: number, hi: number, target = 5, integer = false): number[] {
  if (!(Number.isFinite(lo) && Number.isFinite(hi) && hi > lo)) throw new InvalidArgumentError('range', 'finite lo < hi', `[${describe(lo)}, ${describe(hi)}]`);
  const raw = integer ? Math.max(1, (hi - lo) / Math.max(1, target)) : (hi - lo) / Math.max(1, target);
  const exponent = Math.floor(Math.log10(raw));
  const mantissa = [1, 2, 5, 10].find((m) => m * 10 ** exponent >= raw)!;
  const step = mantissa * 10 ** exponent;
  const first = Math.floor(lo / step);
  const last = Math.ceil(hi / step);
  // Integers times the mantissa, then scaled by a power of ten in one rounding: 3 × 2 / 10 is 0.6, not 0.6000000000000001.
  const at = (i: number) => (exponent < 0 ? (i * mantissa) / 10 ** -exponent : i * mantissa * 10 ** exponent);
  return Array.from({ length: last - first + 1 }, (_, i) => at(first + i));
}

/**
 * A tick label with as many decimals as the tick step needs (0.2 → "0.2", 0.05 → "0.05"), so
 * neighbouring labels differ; exponents, with as many digits as tell neighbours apart, beyond 1e6 or below 1e-4.
 */
function tickLabel(v: number, step: number): string {
  if (v === 0) return '0';
  const abs = Math.abs(v);
  if (abs >= 1e6 || abs < 1e-4) return v.toExponential(Math.max(0, Math.min(12, Math.ceil(-Math.log10(step / abs))))).replace(/\.?0+e/, 'e');
  const decimals = Math.max(0, Math.min(10, -Math.floor(Math.log10(step) + 1e-9)));
  return v.toFixed(decimals);
}

/** The [lo, hi] a set of values is drawn in: padded by 10% (or by `minPad`, or 1 around 0) when it is a single value; [0, 1] when there is none. */
function domain(values: number[], minPad = 0): [number, number] {
  if (values.length === 0) return [0, 1];
  let lo = values[0]!;
  let hi = lo;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  // A range below 1e-9 of the values' size is float noise around one value: draw it as constant.
  if (hi - lo > 1e-9 * Math.max(Math.abs(lo), Math.abs(hi))) return [lo, hi];
  const pad = Math.max(minPad, lo === 0 ? 1 : Math.abs(lo) * 0.1);
  return [lo - pad, hi + pad];
}

const finitePoint = (p: readonly [number, number | null]): p is readonly [number, number] =>
  typeof p[0] === 'number' && Number.isFinite(p[0]) && typeof p[1] === 'number' && Number.isFinite(p[1]);

function checkOptions(options: LineChartOptions): void {
  if (options === null || typeof options !== 'object') throw new InvalidArgumentError('options', '{ title, panels }', describe(options));
  if (typeof options.title !== 'string') throw new InvalidArgumentError('title', 'a string', describe(options.title));
  if (!Array.isArray(options.panels) || options.panels.length === 0) throw new InvalidArgumentError('panels', 'a non-empty array of panels', describe(options.panels));
  for (const [key, value] of [['width', options.width], ['height', options.height]] as const) {
    if (value !== undefined && !(typeof value === 'number' && Number.isFinite(value) && value >= 200)) throw new InvalidArgumentError(key, 'a finite number ≥ 200 (pixels)', describe(value));
  }
  if (options.columns !== undefined && !(Number.isSafeInteger(options.columns) && options.columns >= 1)) throw new InvalidArgumentError('columns', 'a positive integer', describe(options.columns));
  options.panels.forEach((panel, i) => {
    if (panel === null || typeof panel !== 'object' || typeof panel.title !== 'string' || typeof panel.yLabel !== 'string' || !Array.isArray(panel.series)) {
      throw new InvalidArgumentError(`panels[${i}]`, '{ title: string, yLabel: string, series: array }', describe(panel));
    }
    panel.series.forEach((s: ChartSeries, j: number) => {
      if (s === null || typeof s !== 'object' || typeof s.name !== 'string' || !Array.isArray(s.points)) throw new InvalidArgumentError(`panels[${i}].series[${j}]`, '{ name: string, points: [step, value][] }', describe(s));
      s.points.forEach((p: ChartSeries['points'][number], k: number) => {
        if (!Array.isArray(p) || p.length !== 2) throw new InvalidArgumentError(`panels[${i}].series[${j}].points[${k}]`, 'a [step, value] pair', describe(p));
      });
    });
  });
}

interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

function panelSvg(panel: ChartPanel, box: Box, colorOf: (name: string) => string): string[] {
  const margin = { left: 62, right: 14, top: 26, bottom: 40 };
  const plot = { x: box.x + margin.left, y: box.y + margin.top, width: box.width - margin.left - margin.right, height: box.height - margin.top - margin.bottom };
  const finite = panel.series.map((s) => s.points.filter(finitePoint));
  const all = finite.flat();
  const integerSteps = all.every((p) => Number.isInteger(p[0]));
  const xTicks = niceTicks(...domain(all.map((p) => p[0]), integerSteps ? 1 : 0), 5, integerSteps);
  const yTicks = niceTicks(...domain(all.map((p) => p[1])));
  const [x0, x1] = [xTicks[0]!, xTicks[xTicks.length - 1]!];
  const [y0, y1] = [yTicks[0]!, yTicks[yTicks.length - 1]!];
  const sx = (v: number) => plot.x + ((v - x0) / (x1 - x0)) * plot.width;
  const sy = (v: number) => plot.y + plot.height - ((v - y0) / (y1 - y0)) * plot.height;
  const xStep = xTicks.length > 1 ? xTicks[1]! - xTicks[0]! : 1;
  const yStep = yTicks.length > 1 ? yTicks[1]! - yTicks[0]! : 1;
  const bottom = plot.y + plot.height;

  const parts = [`<g>`, `<text x="${px(box.x + box.width / 2)}" y="${px(box.y + 16)}" text-anchor="middle" font-weight="bold">${escape(panel.title)}</text>`];
  for (const t of yTicks) {
    parts.push(`<line x1="${px(plot.x)}" y1="${px(sy(t))}" x2="${px(plot.x + plot.width)}" y2="${px(sy(t))}" stroke="#e4e4e4"/>`);
    parts.push(`<text x="${px(plot.x - 6)}" y="${px(sy(t) + 4)}" text-anchor="end" fill="#555">${escape(tickLabel(t, yStep))}</text>`);
  }
  for (const t of xTicks) {
    parts.push(`<line x1="${px(sx(t))}" y1="${px(bottom)}" x2="${px(sx(t))}" y2="${px(bottom + 5)}" stroke="#555"/>`);
    parts.push(`<text x="${px(sx(t))}" y="${px(bottom + 18)}" text-anchor="middle" fill="#555">${escape(tickLabel(t, xStep))}</text>`);
  }
  parts.push(`<path d="M${px(plot.x)} ${px(plot.y)}V${px(bottom)}H${px(plot.x + plot.width)}" fill="none" stroke="#555"/>`);
  parts.push(`<text x="${px(plot.x + plot.width / 2)}" y="${px(bottom + 34)}" text-anchor="middle" fill="#333">step</text>`);
  const yMid = plot.y + plot.height / 2;
  parts.push(`<text x="${px(box.x + 14)}" y="${px(yMid)}" text-anchor="middle" fill="#333" transform="rotate(-90 ${px(box.x + 14)} ${px(yMid)})">${escape(panel.yLabel)}</text>`);
  if (all.length === 0) parts.push(`<text x="${px(plot.x + plot.width / 2)}" y="${px(yMid)}" text-anchor="middle" fill="#999">no data</text>`);

  panel.series.forEach((s) => {
    const color = colorOf(s.name);
    // Runs of consecutive finite points; a gap (non-finite point) ends a run.
    const runs: (readonly [number, number])[][] = [[]];
    for (const p of s.points) {
      if (finitePoint(p)) runs[runs.length - 1]!.push(p);
      else if (runs[runs.length - 1]!.length > 0) runs.push([]);
    }
    for (const run of runs) {
      if (run.length === 1) parts.push(`<circle cx="${px(sx(run[0]![0]))}" cy="${px(sy(run[0]![1]))}" r="2.5" fill="${color}"/>`);
      else if (run.length > 1) parts.push(`<polyline points="${run.map(([x, y]) => `${px(sx(x))},${px(sy(y))}`).join(' ')}" fill="none" stroke="${color}" stroke-width="1.5" stroke-linejoin="round"/>`);
    }
  });
  parts.push('</g>');
  return parts;
}

/** The chart as SVG text (see the file comment). */
export function lineChartSvg(options: LineChartOptions): string {
  checkOptions(options);
  const { panels } = options;
  const columns = Math.min(options.columns ?? 2, panels.length);
  const rows = Math.ceil(panels.length / columns);
  const names = [...new Set(panels.flatMap((p) => p.series.map((s) => s.name)))];
  const colorOf = (name: string) => PALETTE[names.indexOf(name) % PALETTE.length]!;

  const width = options.width ?? 960;
  // Legend entries flow left to right, wrapping; each takes its label's rough width.
  const entries: { name: string; x: number; y: number }[] = [];
  let cursor = 10;
  let legendY = 46;
  for (const name of names) {
    const entryWidth = 26 + 7 * name.length;
    if (cursor > 10 && cursor + entryWidth > width - 10) {
      cursor = 10;
      legendY += 18;
    }
    entries.push({ name, x: cursor, y: legendY });
    cursor += entryWidth + 12;
  }
  const top = (names.length > 0 ? legendY : 30) + 12;
  // At least 120 px per row of panels, whatever `height` asks, so axes never overlap.
  const height = Math.max(options.height ?? top + rows * 320, top + rows * 120);
  const cellWidth = width / columns;
  const cellHeight = (height - top) / rows;

  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${px(width)}" height="${px(height)}" viewBox="0 0 ${px(width)} ${px(height)}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="22" font-size="15" font-weight="bold">${escape(options.title)}</text>`,
  ];
  for (const e of entries) {
    parts.push(`<line x1="${e.x}" y1="${e.y - 4}" x2="${e.x + 18}" y2="${e.y - 4}" stroke="${colorOf(e.name)}" stroke-width="3"/>`);
    parts.push(`<text x="${e.x + 24}" y="${e.y}">${escape(e.name)}</text>`);
  }
  panels.forEach((panel, i) => {
    const box = { x: (i % columns) * cellWidth, y: top + Math.floor(i / columns) * cellHeight, width: cellWidth, height: cellHeight };
    parts.push(...panelSvg(panel, box, colorOf));
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
