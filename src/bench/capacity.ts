// Capacity search (--find-max-rate) and stepped schedules (--ramp): open-loop runs at chosen rates, each judged by the thresholds.

import { UsageError } from '../core/errors.js';
import { passed } from './report.js';
import type { BenchOptions, BenchResult, RateStep } from './settings.js';

export type RunStep = (options: BenchOptions) => Promise<BenchResult>;

/** Below this share of the offered rate, a step did not keep up, whatever its latencies. */
const KEPT_UP = 0.95;
/** The search stops when the highest ok rate and the lowest failing one are this close. */
const PRECISION = 1.05;
const MAX_STEPS = 24;

/**
 * Finds the highest open-loop rate at which every threshold holds and nothing is lost: from
 * `options.rate` (default 1000/s) it doubles while steps pass, then bisects between the last
 * that passed and the first that failed, to within 5%. Each step is a whole run (connect,
 * warm-up, measured window). Resolves with the best step's result and `rateSearch`.
 */
export async function findMaxRate(
  options: BenchOptions,
  runStep: RunStep,
  onStep?: (step: RateStep) => void,
): Promise<BenchResult> {
  if ((options.thresholds ?? []).length === 0)
    throw new UsageError('--find-max-rate needs at least one --threshold to judge each step by (p99<5ms, say)');
  const steps: RateStep[] = [];
  let best: BenchResult | undefined;
  let last: BenchResult | undefined;
  const tryRate = async (rate: number): Promise<boolean> => {
    const result = await runStep({ ...options, rate });
    const step = stepOf(rate, result);
    steps.push(step);
    onStep?.(step);
    last = result;
    if (step.ok) best = result;
    return step.ok;
  };
  let low = 0;
  let high: number | undefined;
  let rate = Math.max(1, Math.round(options.rate ?? 1000));
  const stopped = () => options.signal?.aborted === true;
  // Up by doubling until a step fails.
  while (high === undefined && steps.length < MAX_STEPS && !stopped()) {
    if (await tryRate(rate)) {
      low = rate;
      rate *= 2;
    } else {
      high = rate;
    }
  }
  // Then halve the gap until it is within the precision (or nothing passes at all).
  while (
    high !== undefined &&
    steps.length < MAX_STEPS &&
    !stopped() &&
    (low === 0 ? high > 1 : high / low > PRECISION)
  ) {
    const middle = low === 0 ? Math.floor(high / 2) : Math.round((low + high) / 2);
    if (middle <= low || middle >= high) break;
    if (await tryRate(middle)) low = middle;
    else high = middle;
  }
  return { ...(best ?? last!), rateSearch: { maxRate: low === 0 ? null : low, steps } };
}

/** `FROM:TO:STEPS`: STEPS rates evenly from FROM to TO. */
export function parseRamp(value: string): { from: number; to: number; steps: number } {
  const match = /^(\d+):(\d+):(\d+)$/.exec(value.trim());
  const [from, to, steps] = match === null ? [] : [Number(match[1]), Number(match[2]), Number(match[3])];
  if (from === undefined || to === undefined || steps === undefined || from < 1 || to < from || steps < 1) {
    throw new UsageError(
      `--ramp "${value}": expected FROM:TO:STEPS, rates in messages per second with 1 <= FROM <= TO (1000:20000:5)`,
    );
  }
  return { from, to, steps };
}

/** Runs each rate of a ramp in turn; resolves with the last step's result and every step in `rateSearch`. */
export async function runRamp(
  options: BenchOptions,
  ramp: { from: number; to: number; steps: number },
  runStep: RunStep,
  onStep?: (step: RateStep) => void,
): Promise<BenchResult> {
  const steps: RateStep[] = [];
  let last: BenchResult | undefined;
  for (let i = 0; i < ramp.steps && !(i > 0 && options.signal?.aborted); i++) {
    const rate = ramp.steps === 1 ? ramp.from : Math.round(ramp.from + ((ramp.to - ramp.from) * i) / (ramp.steps - 1));
    last = await runStep({ ...options, rate });
    const step = stepOf(rate, last);
    steps.push(step);
    onStep?.(step);
  }
  const passing = steps.filter((step) => step.ok);
  return {
    ...last!,
    rateSearch: { maxRate: passing.length === 0 ? null : Math.max(...passing.map((step) => step.rate)), steps },
  };
}

function stepOf(rate: number, result: BenchResult): RateStep {
  const ok =
    passed(result) &&
    result.errors === 0 &&
    result.thresholds.every((outcome) => outcome.ok) &&
    result.messagesPerSecond >= rate * KEPT_UP;
  return { rate, ok, messagesPerSecond: result.messagesPerSecond, errors: result.errors, latencyUs: result.latencyUs };
}
