// Faults on purpose (--fault): a backend that resets, closes, stalls, truncates, drops or delays, reproducibly with a seed.

import { UsageError } from '../core/errors.js';

/** What can happen to a stream connection at its first message, or to a datagram. */
export type FaultKind = 'reset' | 'close' | 'stall' | 'truncate' | 'drop' | 'delay';
export const FAULT_KINDS: readonly FaultKind[] = ['reset', 'close', 'stall', 'truncate', 'drop', 'delay'];

/** A connection's fate, decided once when it opens. */
export type ConnectionFault =
  { kind: 'reset' } | { kind: 'close' } | { kind: 'truncate' } | { kind: 'stall'; seconds: number };

export interface FaultSpec {
  /** Fractions (0-1) of connections: a connection meets at most one of these. */
  reset: number;
  close: number;
  truncate: number;
  stall: { fraction: number; seconds: number };
  /** Fraction of datagrams not answered. */
  drop: number;
  /** Reply delays and their weights; every chunk and datagram draws one. */
  delay: Array<{ ms: number; weight: number }>;
}

export function emptyFaultSpec(): FaultSpec {
  return { reset: 0, close: 0, truncate: 0, stall: { fraction: 0, seconds: 0 }, drop: 0, delay: [] };
}

const DURATION = /^(\d+(?:\.\d+)?)(us|ms|s)$/;
const DURATION_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000 };

/**
 * `reset=0.1`, `close=0.05`, `stall=0.1:2` (fraction:seconds), `truncate=0.01`, `drop=0.2`,
 * `delay=10ms:90,500ms:10` (duration:weight pairs); several in one value separated by spaces or
 * `;`, or given as several values. A UsageError names the part that is wrong.
 */
export function parseFaults(values: readonly string[]): FaultSpec {
  const spec = emptyFaultSpec();
  for (const part of values.flatMap((value) => value.split(/[;\s]+/)).filter(Boolean)) {
    const [kind, value] = part.split('=', 2) as [string, string | undefined];
    if (value === undefined || value === '')
      throw new UsageError(`--fault "${part}": expected KIND=VALUE, KIND one of ${FAULT_KINDS.join(', ')}`);
    switch (kind) {
      case 'reset':
      case 'close':
      case 'truncate':
      case 'drop':
        spec[kind] = fraction(value, part);
        break;
      case 'stall': {
        const [share, seconds] = value.split(':');
        const time = Number(seconds);
        if (seconds === undefined || !(Number.isFinite(time) && time > 0))
          throw new UsageError(`--fault "${part}": stall takes FRACTION:SECONDS (stall=0.1:2)`);
        spec.stall = { fraction: fraction(share ?? '', part), seconds: time };
        break;
      }
      case 'delay':
        spec.delay = value.split(',').map((entry) => {
          const [duration, weight] = entry.split(':');
          const match = DURATION.exec(duration ?? '');
          const share = weight === undefined ? 1 : Number(weight);
          if (match === null || !(Number.isFinite(share) && share > 0))
            throw new UsageError(
              `--fault "${part}": delay takes DURATION:WEIGHT pairs (delay=10ms:90,500ms:10), at "${entry}"`,
            );
          return { ms: Number(match[1]) * DURATION_MS[match[2]!]!, weight: share };
        });
        break;
      default:
        throw new UsageError(`--fault "${part}": unknown fault "${kind}"; one of ${FAULT_KINDS.join(', ')}`);
    }
  }
  const connectionShare = spec.reset + spec.close + spec.truncate + spec.stall.fraction;
  if (connectionShare > 1)
    throw new UsageError(
      `--fault: reset, close, truncate and stall fractions add up to ${connectionShare}; a connection meets one fault at most, so at most 1`,
    );
  return spec;
}

/** The spec as `--fault` would take it back (for GET /admin/faults and logs). */
export function formatFaults(spec: FaultSpec): string {
  const parts: string[] = [];
  for (const kind of ['reset', 'close', 'truncate'] as const) if (spec[kind] > 0) parts.push(`${kind}=${spec[kind]}`);
  if (spec.stall.fraction > 0) parts.push(`stall=${spec.stall.fraction}:${spec.stall.seconds}`);
  if (spec.drop > 0) parts.push(`drop=${spec.drop}`);
  if (spec.delay.length > 0) parts.push(`delay=${spec.delay.map((d) => `${d.ms}ms:${d.weight}`).join(',')}`);
  return parts.join(' ');
}

function fraction(value: string, part: string): number {
  const number = Number(value);
  if (value === '' || !(number >= 0 && number <= 1))
    throw new UsageError(`--fault "${part}": a fraction from 0 to 1 (0.1 for one in ten), got "${value}"`);
  return number;
}

/**
 * The live fault set with its random source: a seeded generator (mulberry32), so that the same
 * seed and the same order of connections and datagrams give the same faults.
 */
export class Faults {
  #spec: FaultSpec;
  #state: number;
  readonly seed: number;

  constructor(spec: FaultSpec, seed = Math.floor(Math.random() * 2 ** 32)) {
    this.#spec = spec;
    this.seed = seed >>> 0;
    this.#state = this.seed;
  }

  get spec(): FaultSpec {
    return this.#spec;
  }

  /** Replaces the fault set (POST /admin/faults); the random sequence goes on. */
  replace(spec: FaultSpec): void {
    this.#spec = spec;
  }

  /** Whether any stream-connection fault could happen. */
  get touchesConnections(): boolean {
    const s = this.#spec;
    return s.reset + s.close + s.truncate + s.stall.fraction > 0 || s.delay.length > 0;
  }

  /** One draw per connection, when it opens. */
  connectionFault(): ConnectionFault | undefined {
    const s = this.#spec;
    if (s.reset + s.close + s.truncate + s.stall.fraction === 0) return undefined;
    let u = this.#next();
    if ((u -= s.reset) < 0) return { kind: 'reset' };
    if ((u -= s.close) < 0) return { kind: 'close' };
    if ((u -= s.truncate) < 0) return { kind: 'truncate' };
    if ((u -= s.stall.fraction) < 0) return { kind: 'stall', seconds: s.stall.seconds };
    return undefined;
  }

  /** One draw per datagram. */
  dropsDatagram(): boolean {
    return this.#spec.drop > 0 && this.#next() < this.#spec.drop;
  }

  /** Milliseconds to hold a reply, drawn from the delay distribution (0 without one). */
  delayMs(): number {
    const delays = this.#spec.delay;
    if (delays.length === 0) return 0;
    const total = delays.reduce((sum, d) => sum + d.weight, 0);
    let u = this.#next() * total;
    for (const d of delays) if ((u -= d.weight) < 0) return d.ms;
    return delays[delays.length - 1]!.ms;
  }

  #next(): number {
    // mulberry32: small, fast, and the same sequence for the same seed everywhere.
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}
