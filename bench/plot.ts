/**
 * A small hand-written SVG line chart for benchmark results (no dependency): panels stacked
 * vertically, sharing the x axis, each with its own y axis, gridlines, a legend and one polyline
 * per series. Used by the soak (bench/soak.ts) for RSS per worker and lag per consumer group.
 */

export interface Series {
  name: string;
  /** [x, y] points, x ascending. */
  points: Array<[number, number]>;
}

export interface Panel {
  title: string;
  yLabel: string;
  series: Series[];
  /** Shade x < shadeUntil (e.g. a warm-up), with this caption. */
  shade?: { until: number; label: string };
}

export interface Chart {
  title: string;
  xLabel: string;
  panels: Panel[];
  width?: number;
  panelHeight?: number;
}

/** Colour-blind-safe palette (Okabe-Ito), one colour per series index. */
const COLOURS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const fmt = (n: number) => (Math.abs(n) >= 1000 ? n.toLocaleString('en', { maximumFractionDigits: 0 }) : String(Math.round(n * 100) / 100));

/** About `count` round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart). */
export function ticks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.round(v / step) * step);
  return out;
}

export function lineChartSvg(chart: Chart): string {
  const width = chart.width ?? 960;
  const panelHeight = chart.panelHeight ?? 300;
  const margin = { left: 80, right: 240, top: 64, gap: 64, bottom: 50 };
  const plotW = width - margin.left - margin.right;
  const height = margin.top + chart.panels.length * (panelHeight + margin.gap) - margin.gap + margin.bottom;
  const xs = chart.panels.flatMap((p) => p.series.flatMap((s) => s.points.map(([x]) => x)));
  const xMin = Math.min(0, ...xs);
  const xMax = Math.max(xMin + 1, ...xs);
  const xTicks = ticks(xMin, xMax, 8);
  const sx = (x: number) => margin.left + ((x - xMin) / (xMax - xMin)) * plotW;

  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${esc(chart.title)}</text>`,
  ];
  chart.panels.forEach((panel, i) => {
    const top = margin.top + i * (panelHeight + margin.gap);
    const bottom = top + panelHeight;
    const ys = panel.series.flatMap((s) => s.points.map(([, y]) => y));
    const yMax = Math.max(1, ...ys) * 1.05;
    const yTicks = ticks(0, yMax, 5);
    const top2 = Math.max(yMax, yTicks.at(-1)!);
    const sy = (y: number) => bottom - (y / top2) * panelHeight;
    out.push(`<text x="${margin.left}" y="${top - 10}" font-size="14" font-weight="bold">${esc(panel.title)}</text>`);
    if (panel.shade && panel.shade.until > xMin) {
      const w = sx(Math.min(panel.shade.until, xMax)) - sx(xMin);
      out.push(`<rect x="${sx(xMin)}" y="${top}" width="${w}" height="${panelHeight}" fill="#eeeeee"/>`);
      out.push(`<text x="${sx(xMin) + 4}" y="${top + 14}" fill="#777777">${esc(panel.shade.label)}</text>`);
    }
    for (const y of yTicks) {
      out.push(`<line x1="${margin.left}" x2="${margin.left + plotW}" y1="${sy(y)}" y2="${sy(y)}" stroke="#dddddd"/>`);
      out.push(`<text x="${margin.left - 6}" y="${sy(y) + 4}" text-anchor="end">${fmt(y)}</text>`);
    }
    for (const x of xTicks) {
      out.push(`<line x1="${sx(x)}" x2="${sx(x)}" y1="${top}" y2="${bottom}" stroke="#f0f0f0"/>`);
      out.push(`<text x="${sx(x)}" y="${bottom + 16}" text-anchor="middle">${fmt(x)}</text>`);
    }
    out.push(`<rect x="${margin.left}" y="${top}" width="${plotW}" height="${panelHeight}" fill="none" stroke="#444444"/>`);
    out.push(`<text transform="translate(${margin.left - 58} ${top + panelHeight / 2}) rotate(-90)" text-anchor="middle">${esc(panel.yLabel)}</text>`);
    out.push(`<text x="${margin.left + plotW / 2}" y="${bottom + 34}" text-anchor="middle">${esc(chart.xLabel)}</text>`);
    panel.series.forEach((s, j) => {
      const colour = COLOURS[j % COLOURS.length]!;
      const pts = s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
      if (s.points.length) out.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${pts}"><title>${esc(s.name)}</title></polyline>`);
      const ly = top + 16 + j * 20;
      out.push(`<line x1="${margin.left + plotW + 14}" x2="${margin.left + plotW + 38}" y1="${ly - 4}" y2="${ly - 4}" stroke="${colour}" stroke-width="3"/>`);
      out.push(`<text x="${margin.left + plotW + 44}" y="${ly}">${esc(s.name)}</text>`);
    });
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
