/**
 * A roofline-style SVG: each kernel row's achieved fraction of the ceiling it is bound by (memory
 * bandwidth for token statistics, FLOP/s for matmul), measured in the same run. Plain SVG text:
 * a chart this small needs no plotting library, and the file renders anywhere.
 */
import type { BenchRow } from './schema.js';

const escape = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function rooflineSvg(rows: BenchRow[], title: string): string {
  const bars = rows.filter((r) => r.fractionOfCeiling !== null);
  const labelWidth = 430;
  const plotWidth = 520;
  const barHeight = 18;
  const top = 56;
  const maxFraction = Math.max(1.2, ...bars.map((r) => r.fractionOfCeiling!));
  const x = (f: number) => labelWidth + (f / maxFraction) * plotWidth;
  const height = top + bars.length * (barHeight + 6) + 40;
  const color = (backend: string) => (backend.startsWith('webgpu') ? '#3b6fd8' : backend === 'native' ? '#d8803b' : '#777');
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${labelWidth + plotWidth + 90}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="22" font-size="15" font-weight="bold">${escape(title)}</text>`,
    `<text x="10" y="42" fill="#555">Achieved fraction of the ceiling measured in the same run:</text>`,
    `<rect x="330" y="32" width="12" height="12" fill="${color('webgpu')}"/><text x="346" y="42" fill="#555">WebGPU ÷ GPU copy GB/s or matmul FLOP/s</text>`,
    `<rect x="600" y="32" width="12" height="12" fill="${color('native')}"/><text x="616" y="42" fill="#555">native ÷ CPU read GB/s</text>`,
  ];
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    parts.push(`<line x1="${x(f)}" y1="${top - 6}" x2="${x(f)}" y2="${height - 30}" stroke="${f === 1 ? '#c00' : '#ddd'}" stroke-width="${f === 1 ? 1.5 : 1}"/>`);
    parts.push(`<text x="${x(f)}" y="${height - 14}" text-anchor="middle" fill="#555">${Math.round(f * 100)}%</text>`);
  }
  bars.forEach((r, i) => {
    const y = top + i * (barHeight + 6);
    const label = `${r.kernel} · ${r.backend} · ${r.dtype} · ${r.shape.join('×')}`;
    parts.push(`<text x="${labelWidth - 8}" y="${y + barHeight - 5}" text-anchor="end">${escape(label)}</text>`);
    parts.push(`<rect x="${labelWidth}" y="${y}" width="${Math.max(1, x(r.fractionOfCeiling!) - labelWidth)}" height="${barHeight}" fill="${color(r.backend)}"/>`);
    parts.push(`<text x="${x(r.fractionOfCeiling!) + 4}" y="${y + barHeight - 5}">${(100 * r.fractionOfCeiling!).toFixed(0)}%</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
