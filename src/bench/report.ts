// Renders bench results for people: a compact table, and the failure summary behind exit status 1.

import { counted } from '../core/errors.js';
import { wrongReplies, type BenchResult, type DatagramCounts, type RateSearch } from './settings.js';
import { judgesErrors, type ThresholdOutcome } from './thresholds.js';

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });

export function formatBytesPerSecond(bytesPerSecond: number): string {
  const units = ['B/s', 'KB/s', 'MB/s', 'GB/s'];
  let value = bytesPerSecond;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${decimal.format(value)} ${units[unit]}`;
}

export function describeSettings(result: BenchResult): string {
  const churn =
    result.messagesPerConnection !== null
      ? `, a new connection every ${integer.format(result.messagesPerConnection)} messages`
      : '';
  const load =
    result.rate !== null ? `open loop at ${integer.format(result.rate)} msg/s` : `pipeline ${result.pipeline}${churn}`;
  return `${result.target}, ${counted(result.connections, 'connection')}, ${result.size}-byte ${result.lines ? 'lines' : 'messages'}, ${load}, expect ${result.expectPrefix !== null ? `${JSON.stringify(result.expectPrefix)} + ` : ''}${result.expect}`;
}

export function formatTable(result: BenchResult): string {
  const l = result.latencyUs;
  const rows: Array<[string, string]> = [
    ['target', describeSettings(result)],
    [
      'measured',
      `${seconds(result.durationSeconds)} s after ${seconds(result.warmupSeconds)} s warm-up${result.stopped ? ' (stopped early)' : ''}`,
    ],
    ['messages', `${integer.format(result.messages)}  (${integer.format(result.messagesPerSecond)} msg/s)`],
    ['throughput', `${formatBytesPerSecond(result.bytesPerSecond)} each way`],
    ['latency', `p50 ${us(l.p50)}  p90 ${us(l.p90)}  p99 ${us(l.p99)}  p99.9 ${us(l.p999)}  max ${us(l.max)}`],
    ...(result.sendLagUs ? [['send lag', describeSendLag(result)] as [string, string]] : []),
    ...(result.connectLatencyUs !== null ? [['connects', describeConnects(result, us)] as [string, string]] : []),
    ['errors', errorSummary(result)],
    ['checked', describeVerification(result)],
    ['mismatched', `${integer.format(result.mismatchedBytes)} bytes`],
    ...(result.datagrams ? [['datagrams', describeDatagrams(result.datagrams)] as [string, string]] : []),
    ...(result.instances ? [['instances', describeInstances(result.instances)] as [string, string]] : []),
    ['bench CPU', `${describeLoadCpu(result)}, ${describeEngine(result)}`],
    ...(result.loadMemory !== undefined && result.loadMemory.connections >= MEMORY_SHOWN_FROM
      ? [['bench memory', describeLoadMemory(result.loadMemory)] as [string, string]]
      : []),
    ...(result.generators !== undefined
      ? [
          [
            'generators',
            `${result.generators} ${result.generators === 1 ? 'run' : 'runs'} merged: counts summed, percentiles from their summed histograms`,
          ] as [string, string],
        ]
      : []),
    ...(result.thresholds.length > 0
      ? [
          ['thresholds', result.thresholds.map((t) => `${t.expression} ${t.ok ? 'held' : 'BROKEN'}`).join(', ')] as [
            string,
            string,
          ],
        ]
      : []),
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  return (
    rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n') +
    '\n' +
    (result.rateSearch ? formatRateSearch(result.rateSearch) : '')
  );
}

/** `a: 25 connections, b: 25` */
export function describeInstances(instances: Record<string, number>): string {
  const entries = Object.entries(instances).sort(([a], [b]) => a.localeCompare(b));
  if (entries.length === 0) return 'no hello line read';
  return entries.map(([name, count]) => `${name}: ${integer.format(count)}`).join(', ') + ' connections';
}

/** `1,000 sent, 978 received, 20 lost, 2 late, 5 duplicates, 7 reordered` */
export function describeDatagrams(d: DatagramCounts): string {
  return `${integer.format(d.sent)} sent, ${integer.format(d.received)} received, ${integer.format(d.lost)} lost, ${integer.format(d.late)} late, ${integer.format(d.duplicates)} duplicates, ${integer.format(d.reordered)} reordered`;
}

/** The steps of --find-max-rate or --ramp, one line each, and the highest rate that held. */
export function formatRateSearch(search: RateSearch): string {
  const lines = ['', 'offered msg/s   achieved msg/s   p50       p99       p99.9     errors  verdict'];
  for (const step of [...search.steps].sort((a, b) => a.rate - b.rate)) {
    const l = step.latencyUs;
    lines.push(
      `${integer.format(step.rate).padStart(13)}   ${integer.format(step.messagesPerSecond).padStart(14)}   ${us(l.p50).padEnd(8)}  ${us(l.p99).padEnd(8)}  ${us(l.p999).padEnd(8)}  ${String(step.errors).padStart(6)}  ${step.ok ? 'held' : 'broke'}`,
    );
  }
  lines.push(
    '',
    search.maxRate === null
      ? 'max rate: none of the rates tried held'
      : `max rate: ${integer.format(search.maxRate)} msg/s (every threshold held, nothing lost)`,
  );
  return lines.join('\n') + '\n';
}

export function errorSummary(result: BenchResult): string {
  if (result.errors === 0) return '0';
  const parts = Object.entries(result.errorsByKind)
    .filter(([, count]) => count > 0)
    .map(([kind, count]) => `${kind} ${count}`);
  return `${result.errors} (${parts.join(', ')})`;
}

/** `1,234/s, set-up p50 ... max ...`, for runs that replace their connections. */
export function describeConnects(result: BenchResult, format: (us: number) => string, separator = '  '): string {
  const c = result.connectLatencyUs;
  if (c === null) return '';
  return `${integer.format(result.connectsPerSecond ?? 0)}/s, set-up p50 ${format(c.p50)}${separator}p99 ${format(c.p99)}${separator}max ${format(c.max)}`;
}

/**
 * True when every reply was right and nothing was lost (or a threshold allows the losses). A
 * wrong reply fails the run whatever the thresholds say: an echo server never sends one.
 */
export function passed(result: BenchResult): boolean {
  return (
    result.mismatchedBytes === 0 &&
    wrongReplies(result.errorsByKind) === 0 &&
    shortBy(result) === 0 &&
    (result.errors === 0 || judgesErrors(result.thresholds))
  );
}

/**
 * With `-n`: how many of the replies asked for are neither among the good ones nor counted as an
 * error (a lost datagram is a timeout, judged by the thresholds): the run ended without them. A
 * run stopped with Ctrl-C owes none.
 */
export function shortBy(result: BenchResult): number {
  const requested = result.messagesRequested ?? null;
  return requested === null || result.stopped ? 0 : Math.max(0, requested - result.messages - result.errors);
}

/** The thresholds that did not hold. */
export function brokenThresholds(result: BenchResult): ThresholdOutcome[] {
  return result.thresholds.filter((outcome) => !outcome.ok);
}

/** Which engine carried the connections, for the CPU figure's reader. */
export function describeEngine(result: BenchResult): string {
  return `${result.engine} engine`;
}

/** `p50 3us  p99 40us  max 210us behind schedule`, with a warning when the generator shows in the latencies. */
export function describeSendLag(result: BenchResult): string {
  const lag = result.sendLagUs;
  if (lag === null) return '';
  const each = result.generatorSendLagUs;
  const perGenerator =
    each !== undefined && each.length > 1
      ? ` (worst generator; p99 by generator: ${each.map((one) => (one === null ? '-' : us(one.p99))).join(', ')})`
      : '';
  const text = `p50 ${us(lag.p50)}  p99 ${us(lag.p99)}  max ${us(lag.max)} behind schedule${perGenerator}`;
  return generatorShows(result)
    ? `${text} (the generator's own lateness is a large part of these latencies: fewer msg/s per generator, or a core of its own)`
    : text;
}

/**
 * The generator, not the server, is what shows in the latencies: its lateness behind the
 * schedule is a tenth or more of the latency at the same percentile (and over 50 us).
 */
export function generatorShows(result: BenchResult): boolean {
  const lag = result.sendLagUs;
  if (lag === null || result.messages === 0) return false;
  const l = result.latencyUs;
  return (lag.p50 > 50 && lag.p50 * 10 >= l.p50) || (lag.p99 > 50 && lag.p99 * 10 >= l.p99);
}

/** What every reply was checked for, by what the message size leaves room for. */
export function describeVerification(result: BenchResult): string {
  switch (result.verification) {
    case 'sequence':
      return 'every reply against its message by sequence number (too small to carry the connection: a crossed reply shows as stale or corrupt)';
    case 'bytes':
      return 'every reply byte for byte (too small to carry an id: a wrong reply with the right bytes passes)';
    default:
      return 'every reply against its own message (connection and sequence number)';
  }
}

/** Past this share of one core, the load generator is likely what sets the rate. */
const LOAD_CPU_WARNING_PERCENT = 90;

/** `97% of one core`, with a warning when the bench itself is likely the limit (of a rate there was). */
export function describeLoadCpu(result: BenchResult): string {
  const perGenerator = result.generatorCpuPercent;
  const text =
    perGenerator !== undefined && perGenerator.length > 1
      ? `${perGenerator.map((percent) => `${integer.format(percent)}%`).join(', ')} of a core each`
      : `${integer.format(result.loadCpuPercent)}% of one core`;
  // Only over a window long enough for a CPU share to mean anything: one with replies, of a second
  // or more. The open loop spends its waits for the next send time on the CPU, so its share says
  // nothing of a limit: its send lag does.
  if (result.mode === 'open-loop') return `${text} (waiting for send times included: see send lag)`;
  const meaningful = result.messages > 0 && result.durationSeconds >= 1;
  return result.loadCpuPercent >= LOAD_CPU_WARNING_PERCENT && meaningful
    ? `${text} (the bench may be what limits the rate: give it a core of its own)`
    : text;
}

/** Below this many connections, the growth of the heap outweighs what the connections hold. */
const MEMORY_SHOWN_FROM = 1000;

/** `0.61 kB per connection open (RSS +61 MB with 100,000)`. */
function describeLoadMemory(memory: NonNullable<BenchResult['loadMemory']>): string {
  const perConnection = memory.rssGrowthBytes / memory.connections / 1000;
  const growthMb = decimal.format(memory.rssGrowthBytes / 1e6);
  return `${decimal.format(perConnection)} kB per connection open (RSS ${memory.rssGrowthBytes >= 0 ? '+' : ''}${growthMb} MB with ${integer.format(memory.connections)} open)`;
}

/** `10`, `1.5`, `0.043`: a short window is not shown as `0 s`. */
function seconds(value: number): string {
  return value >= 1 || value === 0 ? decimal.format(value) : String(Number(value.toPrecision(2)));
}

function us(value: number): string {
  return value >= 10_000 ? `${decimal.format(value / 1000)}ms` : `${integer.format(value)}us`;
}
