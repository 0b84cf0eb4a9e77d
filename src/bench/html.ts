// A self-contained HTML report: the settings, the verdicts and charts drawn by uPlot, inlined, so that the file opens with no network.
//
// uPlot (MIT) draws on a canvas with logarithmic axes, legends below the plot and gaps for
// missing points; hand-drawn SVG got each of those wrong. It is read from its package when a
// report is written and inlined whole, with the run's figures as JSON beside it.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { BenchResult } from './settings.js';
import {
  describeConnects,
  describeEngine,
  describeLoadCpu,
  describeSendLag,
  describeSettings,
  describeVerification,
  errorSummary,
  formatBytesPerSecond,
  passed,
} from './report.js';
import { describeBroken } from './thresholds.js';
import { counted } from '../core/errors.js';

const require = createRequire(import.meta.url);
let library: { script: string; style: string } | undefined;

/** uPlot's script and style, read once. */
function uplot(): { script: string; style: string } {
  library ??= {
    script: readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8'),
    style: readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8'),
  };
  return library;
}

export function renderHtmlReport(result: BenchResult, generatedAt = new Date()): string {
  const l = result.latencyUs;
  const ok = passed(result);
  const rows: Array<[string, string]> = [
    ['Target', describeSettings(result)],
    ['Mode', result.mode],
    [
      'Measured',
      `${result.durationSeconds} s after ${result.warmupSeconds} s warm-up${result.stopped ? ' (stopped early)' : ''}`,
    ],
    [
      'Messages',
      `${result.messages.toLocaleString('en-US')} (${Math.round(result.messagesPerSecond).toLocaleString('en-US')} msg/s)`,
    ],
    ['Throughput', `${formatBytesPerSecond(result.bytesPerSecond)} each way`],
    [
      'Latency',
      `p50 ${duration(l.p50)}, p90 ${duration(l.p90)}, p99 ${duration(l.p99)}, p99.9 ${duration(l.p999)}, max ${duration(l.max)}`,
    ],
    ...(result.sendLagUs ? [['Send lag', describeSendLag(result)] as [string, string]] : []),
    ...(result.connectLatencyUs !== null
      ? [['Connections', describeConnects(result, duration, ', ')] as [string, string]]
      : []),
    ['Errors', errorSummary(result)],
    ['Checked', describeVerification(result)],
    ['Mismatched bytes', String(result.mismatchedBytes)],
    ['Bench CPU', `${describeLoadCpu(result)}, ${describeEngine(result)}`],
    ...(result.generators !== undefined
      ? [['Generators', `${counted(result.generators, 'run')} merged`] as [string, string]]
      : []),
  ];
  const { script, style } = uplot();
  const data = {
    timeline: result.timeline,
    errorTimeline: result.errorTimeline ?? null,
    latencyTimeline: result.latencyTimeline ?? null,
    percentiles: result.percentiles.filter((p) => p.percentile < 100),
    steps: result.rateSearch ? [...result.rateSearch.steps].sort((a, b) => a.rate - b.rate) : null,
  };
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>echoplex bench report</title>
<style>${style}</style>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1b1f24; max-width: 960px; }
  h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 32px; }
  table.facts, table.steps { border-collapse: collapse; }
  table.facts td, table.steps td, table.steps th { padding: 3px 12px 3px 0; vertical-align: top; text-align: left; }
  table.facts td:first-child { color: #57606a; white-space: nowrap; }
  table.steps td.n { text-align: right; }
  .verdict { font-size: 16px; font-weight: bold; padding: 8px 12px; border-radius: 6px; display: inline-block; }
  .pass { color: #1a7f37; background: #dafbe1; } .fail { color: #cf222e; background: #ffebe9; }
  .broke { color: #cf222e; } .held { color: #1a7f37; }
  .note { color: #57606a; }
  .chart { margin: 8px 0 4px; }
</style>
</head>
<body>
<h1>echoplex bench report</h1>
<p class="note">Generated ${escapeHtml(generatedAt.toISOString())}</p>
<p class="verdict ${ok ? 'pass' : 'fail'}">${ok ? 'PASS: every reply verified' : `FAIL: ${escapeHtml(errorSummary(result))} errors`}</p>
<table class="facts">
${rows.map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td>${escapeHtml(v)}</td></tr>`).join('\n')}
</table>
${thresholdTable(result)}
<h2>Messages and errors per second</h2>
<div class="chart" id="throughput"></div>
<h2>Latency over time</h2>
${data.latencyTimeline ? '<div class="chart" id="latency-time"></div>' : '<p class="note">Per-second latency is kept by each generator; merged runs show their latency by percentile only.</p>'}
<h2>Latency by percentile</h2>
${data.percentiles.length > 0 ? '<div class="chart" id="percentiles"></div>' : '<p class="note">No latency samples.</p>'}
${result.rateSearch ? rateSection(result) : ''}
<script>${script}</script>
<script>
const data = ${JSON.stringify(data).replace(/</g, '\\u003c')};
${CHART_SCRIPT}
</script>
</body>
</html>
`;
}

function thresholdTable(result: BenchResult): string {
  if (result.thresholds.length === 0) return '';
  const rows = result.thresholds.map(
    (t) =>
      `<tr><td>${escapeHtml(t.expression)}</td><td class="${t.ok ? 'held' : 'broke'}">${t.ok ? 'held' : escapeHtml(describeBroken(t).replace(/^threshold .* broken: /, 'BROKEN: '))}</td></tr>`,
  );
  return `<h2>Thresholds</h2>\n<table class="steps"><tr><th>threshold</th><th>verdict</th></tr>\n${rows.join('\n')}\n</table>`;
}

function rateSection(result: BenchResult): string {
  const search = result.rateSearch!;
  const steps = [...search.steps].sort((a, b) => a.rate - b.rate);
  const rows = steps.map(
    (s) =>
      `<tr><td class="n">${s.rate.toLocaleString('en-US')}</td><td class="n">${Math.round(s.messagesPerSecond).toLocaleString('en-US')}</td><td class="n">${duration(s.latencyUs.p50)}</td><td class="n">${duration(s.latencyUs.p99)}</td><td class="n">${duration(s.latencyUs.p999)}</td><td class="n">${s.errors}</td><td class="${s.ok ? 'held' : 'broke'}">${s.ok ? 'held' : 'broke'}</td></tr>`,
  );
  return `<h2>Latency against offered rate</h2>
<p>${escapeHtml(search.maxRate === null ? 'No rate held.' : `Highest rate that held: ${search.maxRate.toLocaleString('en-US')} msg/s.`)}</p>
<div class="chart" id="rates"></div>
<table class="steps"><tr><th>offered msg/s</th><th>achieved msg/s</th><th>p50</th><th>p99</th><th>p99.9</th><th>errors</th><th>verdict</th></tr>
${rows.join('\n')}
</table>`;
}

/** Runs in the page: one uPlot per chart, from `data`. Durations are microseconds. */
const CHART_SCRIPT = String.raw`
const WIDTH = 900, HEIGHT = 300;
const us = (v) => v == null ? '' : v >= 1e6 ? (v / 1e6).toPrecision(3) + ' s' : v >= 1e3 ? (v / 1e3).toPrecision(3) + ' ms' : Math.round(v) + ' µs';
const count = (v) => v == null ? '' : v >= 1e6 ? +(v / 1e6).toFixed(2) + 'M' : v >= 1e3 ? +(v / 1e3).toFixed(1) + 'k' : String(+v.toFixed(1));
const colors = { blue: '#0969da', amber: '#bf8700', red: '#cf222e', grey: '#57606a' };
const seconds = data.timeline.map((_, i) => i + 1);
// Whole seconds on the time axes, and a scale from 0 for counts, so that a dip is not drawn as a fall to nothing.
const wholeSeconds = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600];
const fromZero = (u, min, max) => [0, Math.max(1, max * 1.1)];
function chart(id, options, values) {
  const element = document.getElementById(id);
  if (element) new uPlot({ width: WIDTH, height: HEIGHT, ...options }, values, element);
}
chart('throughput', {
  scales: { x: { time: false }, y: { range: fromZero }, errors: { range: fromZero } },
  axes: [
    { label: 'second of the measured window', incrs: wholeSeconds },
    { label: 'messages / s', values: (u, vals) => vals.map(count), size: 70 },
    { scale: 'errors', side: 1, label: 'errors / s', grid: { show: false }, values: (u, vals) => vals.map(count) },
  ],
  series: [
    { label: 'second' },
    { label: 'messages / s', stroke: colors.blue, width: 2, value: (u, v) => count(v) },
    { label: 'errors / s', stroke: colors.red, width: 2, scale: 'errors', value: (u, v) => count(v) },
  ],
}, [seconds, data.timeline, data.errorTimeline ?? data.timeline.map(() => null)]);
if (data.latencyTimeline) {
  const pick = (key) => data.latencyTimeline.map((s) => (s ? Math.max(1, s[key]) : null));
  chart('latency-time', {
    scales: { x: { time: false }, y: { distr: 3 } },
    axes: [{ label: 'second of the measured window (by send time)', incrs: wholeSeconds }, { label: 'latency (log scale)', values: (u, vals) => vals.map(us), size: 80 }],
    series: [
      { label: 'second' },
      { label: 'p50', stroke: colors.blue, width: 2, value: (u, v) => us(v) },
      { label: 'p99', stroke: colors.amber, width: 2, value: (u, v) => us(v) },
      { label: 'max', stroke: colors.red, width: 2, value: (u, v) => us(v) },
    ],
  }, [data.latencyTimeline.map((_, i) => i + 1), pick('p50'), pick('p99'), pick('max')]);
}
if (data.percentiles.length > 0) {
  // HdrHistogram's plot: x is log10(1/(1-p)), so 90%, 99%, 99.9% are evenly spaced.
  const nines = data.percentiles.map((p) => Math.log10(1 / (1 - p.percentile / 100)));
  const label = (n) => n === 0 ? '0%' : (100 * (1 - Math.pow(10, -n))).toFixed(Math.max(0, Math.round(n) - 2)) + '%';
  chart('percentiles', {
    scales: { x: { time: false, range: (u, min, max) => [0, Math.max(3, Math.ceil(max))] } },
    axes: [
      { label: 'percentile', splits: (u, axis, min, max) => Array.from({ length: Math.floor(max) + 1 }, (_, i) => i), values: (u, vals) => vals.map(label) },
      { label: 'latency', values: (u, vals) => vals.map(us), size: 80 },
    ],
    series: [{ label: 'percentile', value: (u, v) => v == null ? '' : 'p' + (100 * (1 - Math.pow(10, -v))).toPrecision(6) }, { label: 'latency', stroke: colors.blue, width: 2, value: (u, v) => us(v), points: { show: true, size: 4 } }],
  }, [nines, data.percentiles.map((p) => p.valueUs)]);
}
if (data.steps) {
  const pick = (key) => data.steps.map((s) => Math.max(1, s.latencyUs[key]));
  chart('rates', {
    scales: { x: { time: false, distr: 3 }, y: { distr: 3 } },
    axes: [{ label: 'offered messages / s (log scale)', values: (u, vals) => vals.map(count) }, { label: 'latency (log scale)', values: (u, vals) => vals.map(us), size: 80 }],
    series: [
      { label: 'offered msg/s', value: (u, v) => count(v) },
      { label: 'p50', stroke: colors.blue, width: 2, value: (u, v) => us(v), points: { show: true, size: 6 } },
      { label: 'p99', stroke: colors.amber, width: 2, value: (u, v) => us(v), points: { show: true, size: 6 } },
      { label: 'p99.9', stroke: colors.red, width: 2, value: (u, v) => us(v), points: { show: true, size: 6 } },
    ],
  }, [data.steps.map((s) => s.rate), pick('p50'), pick('p99'), pick('p999')]);
}
document.body.dataset.charts = String(document.querySelectorAll('.uplot').length);
`;

/** `412 us`, `3.41 ms`. */
function duration(us: number): string {
  return us >= 1000 ? `${(us / 1000).toFixed(us >= 100_000 ? 0 : 2)} ms` : `${us} us`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
