// Several generators' runs as one: counts summed, percentiles from the merged histograms (never averaged), timelines aligned, and runs that cannot be one refused.

import { UsageError } from '../core/errors.js';
import { LatencyHistogram } from './histogram.js';
import { BENCH_ERROR_KINDS, emptyErrorCounts, type BenchResult, type DatagramCounts } from './settings.js';
import { checkThresholds, parseThreshold } from './thresholds.js';

export interface MergeOptions {
  /** `--threshold`s, checked against the merged figures. */
  thresholds?: readonly string[];
  /** Merge runs that differ in what they measured (or the same run twice) all the same. */
  force?: boolean;
}

/**
 * One result from `bench --json` runs of several generators against the same target, as if one
 * generator had made them all: messages and errors add up; latency percentiles come from the
 * sum of the latency histograms (averaging percentiles would be wrong); each run's timeline is
 * placed by its start time on the wall clock, and the merged window runs from the first start
 * to the last end, so that messages / duration is the rate shown, whether the runs measured one
 * window (`--start-at`) or followed each other. Runs that measured different things are refused
 * (a UsageError) unless `force`.
 */
export function mergeResults(results: readonly BenchResult[], options: MergeOptions = {}): BenchResult {
  const first = results[0];
  if (first === undefined) throw new UsageError('bench merge needs at least one result');
  if (!options.force) checkMergeable(results);
  const histogram = new LatencyHistogram();
  for (const result of results) histogram.addEncoded(result.latencyHistogram);
  const starts = results.map((result) => Date.parse(result.startedAt));
  const origin = Math.min(...starts);
  const end = Math.max(...results.map((result, index) => starts[index]! + result.durationSeconds * 1000));
  const durationSeconds = Math.max((end - origin) / 1000, 0.001);
  const timeline = mergeTimelines(
    results.map((result) => result.timeline),
    starts,
    origin,
    Math.max(1, Math.round(durationSeconds)),
  );
  const sum = (pick: (result: BenchResult) => number) => results.reduce((total, result) => total + pick(result), 0);
  const errorsByKind = emptyErrorCounts();
  for (const result of results)
    for (const kind of BENCH_ERROR_KINDS) errorsByKind[kind] += result.errorsByKind[kind] ?? 0;
  // The runs' own min and max are exact; a histogram keeps them only to its precision.
  const max = Math.max(...results.map((result) => result.latencyUs.max));
  const summary = histogram.summary();
  const latencyUs = {
    ...summary,
    p50: Math.min(summary.p50, max),
    p90: Math.min(summary.p90, max),
    p99: Math.min(summary.p99, max),
    p999: Math.min(summary.p999, max),
    min: Math.min(...results.map((result) => result.latencyUs.min)),
    max,
  };
  const messages = sum((result) => result.messages);
  const errors = sum((result) => result.errors);
  const messagesPerSecond = round(messages / durationSeconds);
  const churn = results.every((result) => result.connectsPerSecond !== null);
  const lags = results.map((result) => result.sendLagUs ?? null);
  return {
    target: [...new Set(results.map((result) => result.target))].join(', '),
    mode: first.mode,
    engine: first.engine,
    connections: sum((result) => result.connections),
    size: first.size,
    pipeline: first.pipeline,
    rate: results.every((result) => result.rate !== null) ? sum((result) => result.rate ?? 0) : null,
    expect: first.expect,
    expectPrefix: first.expectPrefix,
    lines: first.lines,
    warmupSeconds: Math.max(...results.map((result) => result.warmupSeconds)),
    durationSeconds: round(durationSeconds, 3),
    messages,
    messagesTotal: sum((result) => result.messagesTotal),
    messagesPerConnection: first.messagesPerConnection,
    connectsPerSecond: churn
      ? round(sum((result) => (result.connectsPerSecond ?? 0) * result.durationSeconds) / durationSeconds)
      : null,
    // Set-up times are summarized per run only; their percentiles cannot be added up.
    connectLatencyUs: null,
    messagesPerSecond,
    bytesPerSecond: Math.round((messages * first.size) / durationSeconds),
    latencyUs,
    errors,
    errorsByKind,
    mismatchedBytes: sum((result) => result.mismatchedBytes),
    // Each kind's cause from the first run that has one: the generators' first errors are alike.
    errorCauses: Object.assign(
      {},
      ...results.map((result) => result.errorCauses ?? {}).reverse(),
    ) as BenchResult['errorCauses'],
    timeline,
    errorTimeline: mergeTimelines(
      results.map((result) => result.errorTimeline ?? []),
      starts,
      origin,
      timeline.length,
    ),
    percentiles: histogram.curve(),
    latencyHistogram: histogram.encode(),
    startedAt: new Date(origin).toISOString(),
    thresholds: checkThresholds((options.thresholds ?? []).map(parseThreshold), {
      latencyUs,
      messages,
      errors,
      messagesPerSecond,
    }),
    // Each generator's own share of its own core: a sum would read as one core over 100%.
    loadCpuPercent: Math.max(...results.map((result) => result.loadCpuPercent)),
    generatorCpuPercent: results.map((result) => result.loadCpuPercent),
    ...(results.every((result) => result.loadMemory !== undefined) && {
      loadMemory: {
        rssGrowthBytes: sum((result) => result.loadMemory!.rssGrowthBytes),
        connections: sum((result) => result.loadMemory!.connections),
      },
    }),
    generatorSendLagUs: lags,
    verification: first.verification,
    // The worst generator's lag: its lateness is in the merged latencies.
    sendLagUs: lags.every((lag) => lag !== null)
      ? {
          p50: Math.max(...lags.map((lag) => lag!.p50)),
          p99: Math.max(...lags.map((lag) => lag!.p99)),
          max: Math.max(...lags.map((lag) => lag!.max)),
        }
      : null,
    datagrams: mergeDatagrams(results),
    instances: results.some((result) => result.instances) ? mergeInstances(results) : null,
    generators: results.length,
    // Results written before the field existed have none: they ran their whole window.
    stopped: results.some((result) => result.stopped === true),
  };
}

/** Per-second counts of several runs placed by their starts on one timeline of `length` seconds, every second a number. */
function mergeTimelines(
  timelines: readonly number[][],
  starts: readonly number[],
  origin: number,
  length: number,
): number[] {
  const merged: number[] = Array.from({ length }, () => 0);
  timelines.forEach((counts, index) => {
    const offset = Math.round((starts[index]! - origin) / 1000);
    counts.forEach((count, second) => {
      const at = Math.min(offset + second, length - 1);
      merged[at] = merged[at]! + (count ?? 0);
    });
  });
  return merged;
}

/** Runs that measured different things do not add up to one measurement: says which differ. */
function checkMergeable(results: readonly BenchResult[]): void {
  const differ = (what: string, pick: (result: BenchResult) => unknown) => {
    const values = new Set(results.map((result) => JSON.stringify(pick(result) ?? null)));
    if (values.size > 1)
      throw new UsageError(
        `bench merge: the runs differ in ${what} (${[...values].join(' vs ')}): they measured different things; --force merges them anyway`,
      );
  };
  differ('mode (closed and open loop)', (result) => result.mode);
  differ('target', (result) => result.target);
  differ('message size', (result) => result.size);
  differ('expected reply', (result) => [result.expect, result.expectPrefix, result.lines]);
  const seen = new Map<string, number>();
  results.forEach((result, index) => {
    const key = `${result.startedAt} ${result.latencyHistogram}`;
    const earlier = seen.get(key);
    if (earlier !== undefined)
      throw new UsageError(
        `bench merge: results ${earlier + 1} and ${index + 1} are the same run given twice; --force merges them anyway`,
      );
    seen.set(key, index);
  });
}

/** A `bench --json` result read from `text` (named `source` in errors), checked for what merging needs. */
export function parseResult(text: string, source: string): BenchResult {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${source}: not JSON (${(err as Error).message}); give the output of echoplex bench --json`);
  }
  const result = value as Partial<BenchResult>;
  if (
    typeof result !== 'object' ||
    result === null ||
    typeof result.latencyHistogram !== 'string' ||
    typeof result.startedAt !== 'string' ||
    !Array.isArray(result.timeline)
  ) {
    throw new UsageError(
      `${source}: not a result of echoplex bench --json (no latencyHistogram, startedAt or timeline)`,
    );
  }
  return {
    percentiles: [],
    thresholds: [],
    ...result,
    errorsByKind: { ...emptyErrorCounts(), ...result.errorsByKind },
  } as BenchResult;
}

function mergeDatagrams(results: readonly BenchResult[]): DatagramCounts | null {
  const all = results.map((result) => result.datagrams);
  if (all.some((counts) => counts === null || counts === undefined)) return null;
  const total: DatagramCounts = { sent: 0, received: 0, lost: 0, duplicates: 0, reordered: 0, late: 0 };
  for (const counts of all as DatagramCounts[])
    for (const key of Object.keys(total) as Array<keyof DatagramCounts>) total[key] += counts[key];
  return total;
}

function mergeInstances(results: readonly BenchResult[]): Record<string, number> {
  const total: Record<string, number> = {};
  for (const result of results)
    for (const [name, count] of Object.entries(result.instances ?? {})) total[name] = (total[name] ?? 0) + count;
  return total;
}

function round(value: number, digits = 1): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}
