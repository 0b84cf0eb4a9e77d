// Pass/fail thresholds on a bench run, as a CI gate: `p99<2ms`, `errors<=10`, `error-rate<1%`, `rate>=50000`.

import { UsageError } from '../core/errors.js';
import type { LatencySummary } from './histogram.js';

export const LATENCY_METRICS = ['p50', 'p90', 'p99', 'p999', 'max'] as const;
type LatencyMetric = (typeof LATENCY_METRICS)[number];
type Metric = LatencyMetric | 'errors' | 'error-rate' | 'rate';
type Comparison = '<' | '<=' | '>' | '>=';

export interface Threshold {
  /** As written, for reports. */
  readonly expression: string;
  readonly metric: Metric;
  readonly comparison: Comparison;
  /** In the metric's unit: microseconds for latencies, a count, a percentage, messages per second. */
  readonly limit: number;
}

export interface ThresholdOutcome {
  expression: string;
  /** What was measured, in the metric's unit (microseconds for latencies). */
  value: number;
  ok: boolean;
}

/** What a threshold is checked against: the parts of a result it can name. */
export interface ThresholdSubject {
  latencyUs: LatencySummary;
  messages: number;
  errors: number;
  messagesPerSecond: number;
}

const DURATION_UNITS: Record<string, number> = { us: 1, µs: 1, ms: 1000, s: 1_000_000 };
const FORM =
  /^\s*(p50|p90|p99|p999|max|errors|error-rate|rate)\s*(<=|>=|<|>)\s*([0-9]+(?:\.[0-9]+)?)\s*(us|µs|ms|s|%)?\s*$/;

/** Parses one `--threshold`; a UsageError says what form it should take. */
export function parseThreshold(expression: string): Threshold {
  const match = FORM.exec(expression);
  if (match === null) {
    throw new UsageError(
      `--threshold "${expression}": expected p50|p90|p99|p999|max < DURATION (p99<2ms), errors<=N, error-rate<PERCENT (error-rate<1%) or rate>=N (messages per second)`,
    );
  }
  const [, metric, comparison, number, unit] = match as unknown as [
    string,
    Metric,
    Comparison,
    string,
    string | undefined,
  ];
  const amount = Number(number);
  if ((LATENCY_METRICS as readonly string[]).includes(metric)) {
    if (unit === undefined || unit === '%')
      throw new UsageError(`--threshold "${expression}": a latency needs a unit: us, ms or s (${metric}<2ms)`);
    return { expression: expression.trim(), metric, comparison, limit: amount * DURATION_UNITS[unit]! };
  }
  if (metric === 'error-rate') {
    if (unit !== undefined && unit !== '%')
      throw new UsageError(`--threshold "${expression}": an error rate is a percentage (error-rate<1%)`);
    if (amount > 100) throw new UsageError(`--threshold "${expression}": an error rate is a percentage from 0 to 100`);
    return { expression: expression.trim(), metric, comparison, limit: amount };
  }
  if (unit !== undefined)
    throw new UsageError(
      `--threshold "${expression}": ${metric} takes a plain number (${metric === 'rate' ? 'rate>=50000' : 'errors<=10'})`,
    );
  return { expression: expression.trim(), metric, comparison, limit: amount };
}

/** The measured value each threshold names, and whether it holds. */
export function checkThresholds(thresholds: readonly Threshold[], subject: ThresholdSubject): ThresholdOutcome[] {
  return thresholds.map((threshold) => {
    const value = measured(threshold.metric, subject);
    return { expression: threshold.expression, value, ok: holds(value, threshold.comparison, threshold.limit) };
  });
}

/** Whether any threshold speaks of errors: then it, not the mere presence of an error, decides. */
export function judgesErrors(outcomes: readonly ThresholdOutcome[]): boolean {
  return outcomes.some((outcome) => /^(errors|error-rate)\b/.test(outcome.expression));
}

/** `threshold p99<2ms broken: measured 3.410 ms` */
export function describeBroken(outcome: ThresholdOutcome): string {
  return `threshold ${outcome.expression} broken: measured ${formatValue(parseThreshold(outcome.expression).metric, outcome.value)}`;
}

function measured(metric: Metric, subject: ThresholdSubject): number {
  switch (metric) {
    case 'errors':
      return subject.errors;
    case 'error-rate': {
      // Of everything attempted in the run: replies that came, and errors instead of replies.
      const attempts = subject.messages + subject.errors;
      return attempts === 0 ? 0 : Math.round((subject.errors / attempts) * 100 * 1000) / 1000;
    }
    case 'rate':
      return subject.messagesPerSecond;
    default:
      return subject.latencyUs[metric];
  }
}

function holds(value: number, comparison: Comparison, limit: number): boolean {
  switch (comparison) {
    case '<':
      return value < limit;
    case '<=':
      return value <= limit;
    case '>':
      return value > limit;
    case '>=':
      return value >= limit;
  }
}

function formatValue(metric: Metric, value: number): string {
  if ((LATENCY_METRICS as readonly string[]).includes(metric))
    return value >= 1000 ? `${(value / 1000).toFixed(3)} ms` : `${value} us`;
  if (metric === 'error-rate') return `${value}%`;
  if (metric === 'rate') return `${value} msg/s`;
  return String(value);
}
