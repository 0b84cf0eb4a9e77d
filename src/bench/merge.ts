// Several generators' runs as one: counts summed, percentiles from the merged histograms (never averaged), timelines aligned.

import { UsageError } from '../core/errors.js';
import { LatencyHistogram } from './histogram.js';
import type { BenchErrorKind, BenchResult, DatagramCounts } from './settings.js';
import { checkThresholds, parseThreshold } from './thresholds.js';

/**
 * One result from `bench --json` runs of several generators against the same target, as if one
 * generator had made them all: messages, errors and rates add up; latency percentiles come from
 * the sum of the latency histograms (averaging percentiles would be wrong); each run's timeline
 * is placed by its start time. `thresholds` are checked against the merged figures.
 */
export function mergeResults(results: readonly BenchResult[], thresholds: readonly string[] = []): BenchResult {
  const first = results[0];
  if (first === undefined) throw new UsageError('bench merge needs at least one result');
  const histogram = new LatencyHistogram();
  for (const result of results) histogram.addEncoded(result.latencyHistogram);
  const starts = results.map((result) => Date.parse(result.startedAt));
  const origin = Math.min(...starts);
  const timeline: number[] = [];
  results.forEach((result, index) => {
    const offset = Math.round((starts[index]! - origin) / 1000);
    result.timeline.forEach((count, second) => {
      timeline[offset + second] = (timeline[offset + second] ?? 0) + count;
    });
  });
  const end = Math.max(...results.map((result, index) => starts[index]! + result.durationSeconds * 1000));
  const sum = (pick: (result: BenchResult) => number) => results.reduce((total, result) => total + pick(result), 0);
  const errorsByKind = { connect: 0, closed: 0, timeout: 0, mismatch: 0 } satisfies Record<BenchErrorKind, number>;
  for (const result of results) for (const kind of Object.keys(errorsByKind) as BenchErrorKind[]) errorsByKind[kind] += result.errorsByKind[kind];
  // The runs' own min and max are exact; a histogram keeps them only to its precision.
  const latencyUs = {
    ...histogram.summary(),
    min: Math.min(...results.map((result) => result.latencyUs.min)),
    max: Math.max(...results.map((result) => result.latencyUs.max)),
  };
  const messages = sum((result) => result.messages);
  const errors = sum((result) => result.errors);
  const messagesPerSecond = round(sum((result) => result.messagesPerSecond));
  const churn = results.every((result) => result.connectsPerSecond !== null);
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
    durationSeconds: round((end - origin) / 1000),
    messages,
    messagesTotal: sum((result) => result.messagesTotal),
    messagesPerConnection: first.messagesPerConnection,
    connectsPerSecond: churn ? round(sum((result) => result.connectsPerSecond ?? 0)) : null,
    // Set-up times are summarized per run only; their percentiles cannot be added up.
    connectLatencyUs: null,
    messagesPerSecond,
    bytesPerSecond: sum((result) => result.bytesPerSecond),
    latencyUs,
    errors,
    errorsByKind,
    mismatchedBytes: sum((result) => result.mismatchedBytes),
    timeline,
    percentiles: histogram.curve(),
    latencyHistogram: histogram.encode(),
    startedAt: new Date(origin).toISOString(),
    thresholds: checkThresholds(thresholds.map(parseThreshold), { latencyUs, messages, errors, messagesPerSecond }),
    loadCpuPercent: round(sum((result) => result.loadCpuPercent)),
    datagrams: mergeDatagrams(results),
    instances: results.some((result) => result.instances) ? mergeInstances(results) : null,
    generators: results.length,
    // Results written before the field existed have none: they ran their whole window.
    stopped: results.some((result) => result.stopped === true),
  };
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
  if (typeof result !== 'object' || result === null || typeof result.latencyHistogram !== 'string' || typeof result.startedAt !== 'string' || !Array.isArray(result.timeline)) {
    throw new UsageError(`${source}: not a result of echoplex bench --json (no latencyHistogram, startedAt or timeline)`);
  }
  return { percentiles: [], thresholds: [], ...result } as BenchResult;
}

function mergeDatagrams(results: readonly BenchResult[]): DatagramCounts | null {
  const all = results.map((result) => result.datagrams);
  if (all.some((counts) => counts === null || counts === undefined)) return null;
  const total: DatagramCounts = { sent: 0, received: 0, lost: 0, duplicates: 0, reordered: 0, late: 0 };
  for (const counts of all as DatagramCounts[]) for (const key of Object.keys(total) as Array<keyof DatagramCounts>) total[key] += counts[key];
  return total;
}

function mergeInstances(results: readonly BenchResult[]): Record<string, number> {
  const total: Record<string, number> = {};
  for (const result of results) for (const [name, count] of Object.entries(result.instances ?? {})) total[name] = (total[name] ?? 0) + count;
  return total;
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
