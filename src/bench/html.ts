// A self-contained HTML report: inline SVG charts and the settings, viewable with no network.

import type { BenchResult, RateSearch } from './settings.js';
import { describeConnects, describeEngine, describeLoadCpu, describeSettings, errorSummary, formatBytesPerSecond, passed } from './report.js';

const WIDTH = 720;
const HEIGHT = 280;
const MARGIN = { left: 70, right: 20, top: 20, bottom: 45 };

export function renderHtmlReport(result: BenchResult, generatedAt = new Date()): string {
  const l = result.latencyUs;
  const rows: Array<[string, string]> = [
    ['Target', describeSettings(result)],
    ['Mode', result.mode],
    ['Measured', `${result.durationSeconds} s after ${result.warmupSeconds} s warm-up${result.stopped ? ' (stopped early)' : ''}`],
    ['Messages', `${result.messages.toLocaleString('en-US')} (${Math.round(result.messagesPerSecond).toLocaleString('en-US')} msg/s)`],
    ['Throughput', `${formatBytesPerSecond(result.bytesPerSecond)} each way`],
    ['Latency', `p50 ${l.p50} us, p90 ${l.p90} us, p99 ${l.p99} us, p99.9 ${l.p999} us, max ${l.max} us`],
    ...(result.connectLatencyUs !== null ? [['Connections', describeConnects(result, (us) => `${us} us`, ', ')] as [string, string]] : []),
    ['Errors', errorSummary(result)],
    ['Mismatched bytes', String(result.mismatchedBytes)],
    ['Bench CPU', `${describeLoadCpu(result)}, ${describeEngine(result)}`],
    ['Verdict', passed(result) ? 'PASS: every byte verified' : 'FAIL'],
  ];
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>echoplex bench report</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1b1f24; }
  h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
  table { border-collapse: collapse; } td { padding: 3px 12px 3px 0; vertical-align: top; }
  td:first-child { color: #57606a; }
  svg { background: #fafbfc; border: 1px solid #d0d7de; }
  .axis { stroke: #57606a; } .grid { stroke: #e1e4e8; } .label { fill: #57606a; font-size: 11px; }
  .series { fill: none; stroke: #0969da; stroke-width: 2; } .dot { fill: #0969da; }
  .fail { color: #cf222e; font-weight: bold; } .pass { color: #1a7f37; font-weight: bold; }
</style>
</head>
<body>
<h1>echoplex bench report</h1>
<p>Generated ${escapeHtml(generatedAt.toISOString())}</p>
<table>
${rows.map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td${k === 'Verdict' ? ` class="${passed(result) ? 'pass' : 'fail'}"` : ''}>${escapeHtml(v)}</td></tr>`).join('\n')}
</table>
<h2>Throughput per second</h2>
${throughputChart(result.timeline)}
<h2>Latency by percentile</h2>
${percentileChart(result)}
${result.rateSearch ? `<h2>Latency against offered rate</h2>\n<p>${escapeHtml(result.rateSearch.maxRate === null ? 'No rate held.' : `Highest rate that held: ${result.rateSearch.maxRate.toLocaleString('en-US')} msg/s.`)}</p>\n${rateChart(result.rateSearch)}` : ''}
</body>
</html>
`;
}

function throughputChart(timeline: number[]): string {
  if (timeline.length === 0) return '<p>No measured messages.</p>';
  const max = Math.max(...timeline, 1);
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (i: number) => MARGIN.left + (timeline.length === 1 ? plotW / 2 : (i / (timeline.length - 1)) * plotW);
  const y = (v: number) => MARGIN.top + plotH - (v / max) * plotH;
  const points = timeline.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  const yTicks = niceTicks(max, 4);
  const xStep = Math.max(1, Math.ceil(timeline.length / 10));
  return svg(
    [
      ...yTicks.map((t) => gridLine(y(t), formatCount(t))),
      ...timeline.map((_, i) => (i % xStep === 0 ? `<text class="label" x="${x(i)}" y="${HEIGHT - 25}" text-anchor="middle">${i + 1}</text>` : '')),
      `<text class="label" x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 6}" text-anchor="middle">second of the measured run</text>`,
      `<text class="label" x="14" y="${MARGIN.top + plotH / 2}" transform="rotate(-90 14 ${MARGIN.top + plotH / 2})" text-anchor="middle">messages / s</text>`,
      `<polyline class="series" points="${points}"/>`,
      ...timeline.map((v, i) => `<circle class="dot" cx="${x(i).toFixed(1)}" cy="${y(v).toFixed(1)}" r="2.5"><title>second ${i + 1}: ${v} msg</title></circle>`),
    ].join('\n'),
  );
}

/** HdrHistogram's plot: x is 1/(1-p) on a log scale, so 90%, 99%, 99.9% are evenly spaced. */
function percentileChart(result: BenchResult): string {
  const points = result.percentiles.filter((p) => p.percentile < 100);
  if (points.length === 0) return '<p>No latency samples.</p>';
  const maxNines = Math.max(3, Math.ceil(Math.log10(1 / (1 - points[points.length - 1]!.percentile / 100))));
  const maxValue = Math.max(...result.percentiles.map((p) => p.valueUs), 1);
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (percentile: number) => MARGIN.left + (Math.log10(1 / (1 - percentile / 100)) / maxNines) * plotW;
  const y = (v: number) => MARGIN.top + plotH - (v / maxValue) * plotH;
  const path = points.map((p) => `${x(p.percentile).toFixed(1)},${y(p.valueUs).toFixed(1)}`).join(' ');
  const xLabels = Array.from({ length: maxNines + 1 }, (_, nines) => {
    const percentile = 100 * (1 - 10 ** -nines);
    const label = nines === 0 ? '0%' : `${percentile.toFixed(Math.max(0, nines - 2))}%`;
    return `<line class="grid" x1="${x(percentile)}" x2="${x(percentile)}" y1="${MARGIN.top}" y2="${MARGIN.top + plotH}"/><text class="label" x="${x(percentile)}" y="${HEIGHT - 25}" text-anchor="middle">${label}</text>`;
  });
  return svg(
    [
      ...niceTicks(maxValue, 4).map((t) => gridLine(y(t), `${formatCount(t)} us`)),
      ...xLabels,
      `<text class="label" x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 6}" text-anchor="middle">percentile (log scale of 1/(1-p))</text>`,
      `<polyline class="series" points="${path}"/>`,
      ...points.map((p) => `<circle class="dot" cx="${x(p.percentile).toFixed(1)}" cy="${y(p.valueUs).toFixed(1)}" r="2"><title>p${p.percentile.toFixed(4)}: ${p.valueUs} us</title></circle>`),
    ].join('\n'),
  );
}

const RATE_SERIES = [
  { key: 'p50', color: '#0969da' },
  { key: 'p99', color: '#bf8700' },
  { key: 'p999', color: '#cf222e' },
] as const;

/** The latency-versus-throughput curve of a capacity search: where latency breaks away. */
function rateChart(search: RateSearch): string {
  const steps = [...search.steps].sort((a, b) => a.rate - b.rate);
  const maxRate = Math.max(...steps.map((s) => s.rate), 1);
  const maxValue = Math.max(...steps.map((s) => s.latencyUs.p999), 1);
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (rate: number) => MARGIN.left + (rate / maxRate) * plotW;
  const y = (v: number) => MARGIN.top + plotH - (v / maxValue) * plotH;
  const series = RATE_SERIES.map(({ key, color }) => {
    const points = steps.map((s) => `${x(s.rate).toFixed(1)},${y(s.latencyUs[key]).toFixed(1)}`).join(' ');
    const dots = steps.map((s) => `<circle cx="${x(s.rate).toFixed(1)}" cy="${y(s.latencyUs[key]).toFixed(1)}" r="3" fill="${s.ok ? color : '#ffffff'}" stroke="${color}"><title>${s.rate} msg/s offered: ${key} ${s.latencyUs[key]} us${s.ok ? '' : ' (broke)'}</title></circle>`);
    return [`<polyline class="series" style="stroke: ${color}" points="${points}"/>`, ...dots].join('\n');
  });
  const legend = RATE_SERIES.map(({ key, color }, i) => `<text class="label" x="${MARGIN.left + 10 + i * 70}" y="${MARGIN.top + 12}" fill="${color}" style="fill: ${color}">${key}</text>`);
  return svg(
    [
      ...niceTicks(maxValue, 4).map((t) => gridLine(y(t), `${formatCount(t)} us`)),
      ...niceTicks(maxRate, 5).map((t) => `<text class="label" x="${x(t).toFixed(1)}" y="${HEIGHT - 25}" text-anchor="middle">${formatCount(t)}</text>`),
      `<text class="label" x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 6}" text-anchor="middle">offered messages / s (hollow: a step that broke)</text>`,
      ...series,
      ...legend,
    ].join('\n'),
  );
}

function svg(body: string): string {
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}">
<line class="axis" x1="${MARGIN.left}" x2="${MARGIN.left}" y1="${MARGIN.top}" y2="${MARGIN.top + plotH}"/>
<line class="axis" x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${MARGIN.top + plotH}" y2="${MARGIN.top + plotH}"/>
${body}
</svg>`;
}

function gridLine(y: number, label: string): string {
  return `<line class="grid" x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}"/><text class="label" x="${MARGIN.left - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end">${label}</text>`;
}

function niceTicks(max: number, count: number): number[] {
  const raw = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let t = 0; t <= max + 1e-9; t += step) ticks.push(t);
  return ticks;
}

function formatCount(value: number): string {
  if (value >= 1e6) return `${+(value / 1e6).toFixed(1)}M`;
  if (value >= 1e3) return `${+(value / 1e3).toFixed(1)}k`;
  return String(+value.toFixed(1));
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
