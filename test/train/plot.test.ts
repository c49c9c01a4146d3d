/**
 * Training-curve SVG: a hand-written XML reader checks every chart is well-formed (balanced tags,
 * quoted attributes, only known entities) and reads back its elements, so the tests can check that
 * every coordinate is a finite number, gaps split lines, a single point and constant or empty
 * series render, and run colours and legend entries are consistent across panels.
 */
import { InvalidArgumentError } from '../../src/errors.js';
import { lineChartSvg, niceTicks, type ChartPanel } from '../../src/train/plot.js';

interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  /** Text directly inside the element, entities decoded. */
  text: string;
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
const isNameChar = (ch: string) => (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch === '-' || ch === '_' || ch === ':' || ch === '.';
const isSpace = (ch: string) => ch === ' ' || ch === '\n' || ch === '\t' || ch === '\r';

/** Parses the subset of XML an SVG chart uses; throws on anything malformed. Elements in document order. */
function parseXml(xml: string): XmlElement[] {
  const elements: XmlElement[] = [];
  const open: XmlElement[] = [];
  let roots = 0;
  let i = 0;
  const fail = (what: string): never => {
    throw new Error(`XML: ${what} at ${i}: ${JSON.stringify(xml.slice(Math.max(0, i - 30), i + 30))}`);
  };
  const entity = (): string => {
    const end = xml.indexOf(';', i);
    if (end < 0 || end - i > 8) fail('an unterminated entity');
    const name = xml.slice(i + 1, end);
    if (!(name in ENTITIES)) fail(`unknown entity &${name};`);
    i = end + 1;
    return ENTITIES[name]!;
  };
  const name = (): string => {
    const start = i;
    while (i < xml.length && isNameChar(xml[i]!)) i++;
    if (i === start) fail('a missing name');
    return xml.slice(start, i);
  };
  while (i < xml.length) {
    const ch = xml[i]!;
    if (ch === '&') {
      const decoded = entity();
      if (open.length === 0) fail('text outside the root');
      open[open.length - 1]!.text += decoded;
    } else if (ch !== '<') {
      if (open.length === 0 && !isSpace(ch)) fail('text outside the root');
      if (ch === '>') fail("a stray '>'");
      if (open.length > 0) open[open.length - 1]!.text += ch;
      i++;
    } else if (xml[i + 1] === '/') {
      i += 2;
      const closing = name();
      if (xml[i] !== '>') fail("'>' after a closing tag");
      i++;
      const top = open.pop();
      if (top === undefined || top.name !== closing) fail(`</${closing}> closing ${top?.name ?? 'nothing'}`);
    } else {
      i++;
      const element: XmlElement = { name: name(), attributes: {}, text: '' };
      if (open.length === 0 && ++roots > 1) fail('a second root element');
      elements.push(element);
      for (;;) {
        const hadSpace = isSpace(xml[i] ?? '');
        while (isSpace(xml[i] ?? '')) i++;
        if (xml[i] === '/' && xml[i + 1] === '>') {
          i += 2;
          break;
        }
        if (xml[i] === '>') {
          i++;
          open.push(element);
          break;
        }
        if (!hadSpace) fail('attributes not separated by spaces');
        const attribute = name();
        if (attribute in element.attributes) fail(`a repeated attribute ${attribute}`);
        if (xml[i] !== '=' || (xml[i + 1] !== '"' && xml[i + 1] !== "'")) fail(`an unquoted value of ${attribute}`);
        const quote = xml[i + 1]!;
        i += 2;
        let value = '';
        while (xml[i] !== quote) {
          if (i >= xml.length) fail('an unterminated attribute');
          if (xml[i] === '<') fail("'<' in an attribute");
          if (xml[i] === '&') value += entity();
          else value += xml[i++];
        }
        i++;
        element.attributes[attribute] = value;
      }
    }
  }
  if (open.length > 0) fail(`unclosed <${open[open.length - 1]!.name}>`);
  if (roots !== 1) fail('no root element');
  return elements;
}

const COORDINATES = ['x', 'y', 'x1', 'y1', 'x2', 'y2', 'cx', 'cy', 'r', 'width', 'height'];

/** Parses the chart, checks its root and that every coordinate is a finite number; returns the elements. */
function readChart(svg: string): XmlElement[] {
  const elements = parseXml(svg);
  expect(elements[0]!.name).toBe('svg');
  expect(svg).not.toMatch(/NaN|Infinity|undefined/);
  for (const e of elements) {
    for (const key of COORDINATES) {
      const value = e.attributes[key];
      if (value !== undefined && !value.endsWith('%')) expect(Number.isFinite(Number(value))).toBe(true);
    }
    const numbers = [...(e.attributes.points?.split(/[ ,]/) ?? []), ...(e.attributes.d?.match(/-?[\d.]+/g) ?? [])];
    for (const n of numbers) expect(Number.isFinite(Number(n))).toBe(true);
  }
  return elements;
}

const points = (e: XmlElement): [number, number][] => e.attributes.points!.split(' ').map((p) => p.split(',').map(Number) as [number, number]);
const texts = (elements: XmlElement[]) => elements.filter((e) => e.name === 'text').map((e) => e.text);

const steps = (n: number, f: (step: number) => number | null): [number, number | null][] => Array.from({ length: n }, (_, s) => [s, f(s)]);

describe('lineChartSvg', () => {
  test('2×2 panels, two runs: well-formed, one legend entry per run, one colour per run in every panel, gaps split lines', () => {
    const panels: ChartPanel[] = ['reward', 'self-certainty', 'accuracy', 'KL'].map((title, k) => ({
      title,
      yLabel: title,
      series: [
        { name: 'intuitor', points: steps(50, (s) => (k === 0 && (s === 20 || s === 21) ? NaN : k === 0 && s === 35 ? null : Math.sin(s / 7) + k)) },
        { name: 'grpo-accuracy', points: steps(50, (s) => s / 50 + k) },
      ],
    }));
    const elements = readChart(lineChartSvg({ title: 'Run <comparison> & co', panels }));
    const labels = texts(elements);
    expect(labels).toContain('Run <comparison> & co');
    for (const name of ['intuitor', 'grpo-accuracy']) expect(labels.filter((t) => t === name)).toHaveLength(1);
    for (const title of ['reward', 'self-certainty', 'accuracy', 'KL']) expect(labels).toContain(title);
    expect(labels.filter((t) => t === 'step')).toHaveLength(4);
    const lines = elements.filter((e) => e.name === 'polyline');
    // Panel 0: intuitor in three pieces (gaps at 20–21 and 35) and grpo whole; panels 1–3: one line per run.
    expect(lines).toHaveLength(4 + 3 * 2);
    expect(lines.slice(0, 3).map((l) => points(l).length)).toEqual([20, 13, 14]);
    const colours = new Set(lines.map((l) => l.attributes.stroke));
    expect(colours.size).toBe(2);
    // Points run left to right.
    const xs = points(lines[0]!).map((p) => p[0]);
    expect(xs).toEqual([...xs].sort((a, b) => a - b));
  });

  test('a single point is a dot; a constant series is a flat line in a padded range', () => {
    const elements = readChart(lineChartSvg({
      title: 't',
      panels: [
        { title: 'one', yLabel: 'v', series: [{ name: 'a', points: [[3, 0.7]] }] },
        { title: 'flat', yLabel: 'v', series: [{ name: 'a', points: steps(10, () => 0.5) }] },
        { title: 'zero', yLabel: 'v', series: [{ name: 'a', points: steps(4, () => 0) }] },
      ],
    }));
    const circles = elements.filter((e) => e.name === 'circle');
    expect(circles).toHaveLength(1);
    const [flat, zero] = elements.filter((e) => e.name === 'polyline').map(points);
    expect(new Set(flat!.map((p) => p[1])).size).toBe(1);
    expect(new Set(zero!.map((p) => p[1])).size).toBe(1);
    // 0.5 ± 10% is ticked 0.45, 0.50, 0.55; 0 ± 1 from −1.0 to 1.0 by 0.5; the lone step 3 is ticked 2, 3, 4 (whole steps).
    const labels = texts(elements);
    expect(labels.slice(3, 11)).toEqual(['0.60', '0.65', '0.70', '0.75', '0.80', '2', '3', '4']);
    expect(labels).toEqual(expect.arrayContaining(['0.45', '0.50', '0.55', '-1.0', '-0.5', '0.5', '1.0']));
  });

  test('empty series, all-gap series and panels without series render "no data"; no run is lost from the legend', () => {
    const elements = readChart(lineChartSvg({
      title: 'empty',
      panels: [
        { title: 'nothing', yLabel: 'v', series: [] },
        { title: 'gaps', yLabel: 'v', series: [{ name: 'gappy', points: [[0, NaN], [1, null], [2, Infinity], [NaN, 1]] }, { name: 'none', points: [] }] },
      ],
    }));
    expect(texts(elements).filter((t) => t === 'no data')).toHaveLength(2);
    expect(texts(elements)).toEqual(expect.arrayContaining(['gappy', 'none']));
    expect(elements.filter((e) => e.name === 'polyline' || e.name === 'circle')).toHaveLength(0);
  });

  test('markup in names and labels is escaped; size, columns and many runs (palette cycles)', () => {
    const series = Array.from({ length: 10 }, (_, k) => ({ name: `run "${k}" <${k}> 'q' & more`, points: steps(5, (s) => s * k) }));
    const svg = lineChartSvg({ title: 'x', panels: [{ title: 'a<b', yLabel: 'y & z', series }], width: 500, height: 300, columns: 3 });
    const elements = readChart(svg);
    expect(elements[0]!.attributes).toMatchObject({ width: '500', height: '300' });
    expect(texts(elements)).toEqual(expect.arrayContaining(['a<b', 'y & z', `run "3" <3> 'q' & more`]));
    expect(elements.filter((e) => e.name === 'polyline')).toHaveLength(10);
    // A height too small for the rows grows to 120 px per row.
    const tall = parseXml(lineChartSvg({ title: 'x', panels: [{ title: 'a', yLabel: 'b', series }, { title: 'c', yLabel: 'd', series }], columns: 1, height: 200 }));
    expect(Number(tall[0]!.attributes.height)).toBeGreaterThanOrEqual(240);
  });

  test('extreme values: huge steps, tiny ranges and exponents stay finite', () => {
    const elements = readChart(lineChartSvg({
      title: 'extremes',
      panels: [
        { title: 'tiny range', yLabel: 'v', series: [{ name: 'a', points: [[1e9, 1e15], [1e9 + 10, 1e15 + 1]] }] },
        { title: 'small', yLabel: 'v', series: [{ name: 'a', points: steps(6, (s) => s * 1e-7) }] },
        { title: 'large', yLabel: 'v', series: [{ name: 'a', points: steps(6, (s) => -s * 3e38) }] },
      ],
    }));
    expect(texts(elements)).toEqual(expect.arrayContaining(['2e-7', '-1e+39']));
  });

  test('bad arguments name the argument', () => {
    expect(() => lineChartSvg({ title: 't', panels: [] })).toThrow(/panels: expected a non-empty array/);
    expect(() => lineChartSvg({ title: 't', panels: [{ title: 'a', yLabel: 'b', series: [{ name: 'x', points: [[1] as never] }] }] })).toThrow(/panels\[0\]\.series\[0\]\.points\[0\]: expected a \[step, value\] pair/);
    expect(() => lineChartSvg({ title: 't', panels: [{ title: 'a', series: [] } as never] })).toThrow(InvalidArgumentError);
    expect(() => lineChartSvg({ title: 't', panels: [{ title: 'a', yLabel: 'b', series: [] }], width: 10 })).toThrow(/width: expected a finite number ≥ 200/);
    expect(() => lineChartSvg({ title: 't', panels: [{ title: 'a', yLabel: 'b', series: [] }], columns: 0 })).toThrow(/columns/);
  });

  test('the XML reader itself refuses malformed documents', () => {
    for (const bad of ['<svg><g></svg>', '<svg a=1/>', '<svg a="1" a="2"/>', '<svg>&nbsp;</svg>', '<svg/><svg/>', '<svg>x < y</svg>', '<svg', 'text<svg/>']) {
      expect(() => parseXml(bad)).toThrow(/XML/);
    }
    expect(parseXml('<svg a="&lt;"><t>&amp;</t></svg>')).toEqual([{ name: 'svg', attributes: { a: '<' }, text: '' }, { name: 't', attributes: {}, text: '&' }]);
  });
});

describe('niceTicks', () => {
  test('1, 2 or 5 × 10^k steps covering the range, without float drift in the values', () => {
    expect(niceTicks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(3, 97)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(niceTicks(-0.3, 0.7)).toEqual([-0.4, -0.2, 0, 0.2, 0.4, 0.6, 0.8]);
    expect(niceTicks(0, 49)).toEqual([0, 10, 20, 30, 40, 50]);
    expect(niceTicks(0, 3, 5, true)).toEqual([0, 1, 2, 3]);
    expect(niceTicks(0, 2)).toEqual([0, 0.5, 1, 1.5, 2]);
    expect(niceTicks(0, 2, 5, true)).toEqual([0, 1, 2]);
    expect(() => niceTicks(1, 1)).toThrow(/range: expected finite lo < hi/);
  });
});
