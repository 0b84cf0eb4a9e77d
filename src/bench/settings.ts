// What a bench run is asked for and what it reports: options, their defaults and checks, results.

import { chooseEngine, type EngineChoice, type EngineName } from '../native/engine.js';
import { EchoplexError, UsageError } from '../core/errors.js';
import type { CustomExpectation, TransformName } from '../protocol/transforms.js';
import { WRONG_REPLY_KINDS, type Verification } from './message.js';
import type { LatencySummary, PercentilePoint } from './histogram.js';
import { parseThreshold, type Threshold, type ThresholdOutcome } from './thresholds.js';
import { MAX_UDP_PAYLOAD, resolveTarget, type BenchTarget } from '../protocol/transports.js';

export interface BenchOptions extends Partial<BenchTarget> {
  /** Concurrent connections. Default 50. */
  connections?: number;
  /** Bytes per message. Default 64. */
  size?: number;
  /** Messages in flight per connection in the closed loop. Default 1. */
  pipeline?: number;
  /** Measured seconds (after warm-up). Default 10; ignored when `messages` is set. */
  durationSeconds?: number;
  /** Stop after this many measured messages instead of after a duration. */
  messages?: number;
  /** Seconds of load before measuring starts. Default 1 (0 when `messages` is set). */
  warmupSeconds?: number;
  /**
   * Pass/fail conditions on the result, each as `--threshold` takes it: `p99<2ms`, `errors<=10`,
   * `error-rate<1%`, `rate>=50000`. The result's `thresholds` says which held. Where one names
   * errors, it (rather than any error at all) decides whether errors fail the run.
   */
  thresholds?: readonly string[];
  /**
   * The server opens each connection with a hello line (`echoplex serve --hello`): read it, take
   * it off, and count connections per instance, to see how a balancer spreads them.
   */
  hello?: boolean;
  /**
   * Write the measured latencies to this file as an HdrHistogram interval log (one histogram
   * per second, microseconds), as wrk2 does, for HdrHistogram's log tools.
   */
  hdrLog?: string;
  /**
   * Begin the measured window at this moment (a Date, or milliseconds since the epoch), warming
   * up until then instead of for `warmupSeconds`: several generators then measure the same
   * window, and `echoplex bench merge` adds their results up.
   */
  startAt?: Date | number;
  /**
   * Asked once every connection is open: the measured window begins at the moment it resolves to
   * (milliseconds since the epoch), warming up until then. Generators that take different times
   * to connect (`bench --workers`, tens of thousands of connections each) then measure one window.
   */
  startWhen?: () => Promise<number>;
  /**
   * The number the first connection's messages carry (default 0). Generators of one run take
   * ranges apart (`bench --workers`), so that a reply crossed from one to another is caught.
   */
  firstConnection?: number;
  /** Random bytes (at least `size`) that every message is built from; generators of one run share them. */
  messageSeed?: Uint8Array;
  /** New connections per second while ramping up. Default: as fast as the server accepts. */
  connectRate?: number;
  /**
   * Closed loop: each connection closes after this many replies and a new one takes its place,
   * so the run measures connection set-up (accept, TLS handshakes, a proxy's connection table)
   * as well as echoes. Default: connections stay open for the whole run.
   */
  messagesPerConnection?: number;
  /** Open loop: total messages per second on a fixed schedule, latency from intended send time. */
  rate?: number;
  /** What the server should send back: a built-in transform, or one of your own. Default `echo`. */
  expect?: TransformName | CustomExpectation;
  /** Text the server puts before each reply (`echoplex serve --prefix`, Istio's tcp-echo-server). */
  expectPrefix?: string;
  /**
   * Make each message one line: printable ASCII ending in its only `\n`, for servers that
   * answer whole lines (random bytes would leave a line server holding a partial line).
   */
  lines?: boolean;
  /** Seconds a reply may take before the connection counts as timed out. Default 5. */
  timeoutSeconds?: number;
  /**
   * What carries the plain closed loop over TCP: `native` (native/bench_engine.c: read, verify,
   * time and answer in C, with the same results), `portable` (net.Socket), or `auto` (default:
   * native where the addon loads; ECHOPLEX_ENGINE sets this default). Every other kind of run
   * (open loop, TLS, UDP, Unix sockets, PROXY headers, replaced connections) is portable.
   */
  engine?: EngineChoice;
  /** Called about once a second while measuring. */
  onProgress?: (progress: BenchProgress) => void;
  /**
   * Stops the run early, as Ctrl-C does `echoplex bench`: the measured window ends at once, the
   * replies still owed are waited for as at the end of a duration, and the result says `stopped`.
   * With a rate schedule (`findMaxRate`, `runRamp`), no further step starts.
   */
  signal?: AbortSignal;
}

export interface BenchProgress {
  /** Seconds into the current phase: while measuring, into the measured window. */
  elapsedSeconds: number;
  phase: 'connecting' | 'warmup' | 'measuring' | 'draining';
  messagesPerSecond: number;
  errors: number;
}

/**
 * How a message can fail: its connection did not open (`connect`), closed (`closed`), or no
 * reply came in time (`timeout`); or a reply came and was wrong: another connection's message
 * (`crossed`), an earlier message of its own connection instead of the one owed (`stale`), a
 * later one before it (`reordered`), one already answered with nothing owed (`duplicated`), or
 * bytes that are no message's reply (`corrupt`). See message.ts for the rules.
 */
export const BENCH_ERROR_KINDS = ['connect', 'closed', 'timeout', ...WRONG_REPLY_KINDS] as const;
export type BenchErrorKind = (typeof BENCH_ERROR_KINDS)[number];

export function emptyErrorCounts(): Record<BenchErrorKind, number> {
  return Object.fromEntries(BENCH_ERROR_KINDS.map((kind) => [kind, 0])) as Record<BenchErrorKind, number>;
}

/** Whether any reply was wrong: never acceptable from an echo server, whatever the thresholds say. */
export function wrongReplies(errorsByKind: Readonly<Record<BenchErrorKind, number>>): number {
  let total = 0;
  for (const kind of WRONG_REPLY_KINDS) total += errorsByKind[kind] ?? 0;
  return total;
}

export interface BenchResult {
  target: string;
  mode: 'closed-loop' | 'open-loop';
  /** What carried the connections (see the `engine` option). */
  engine: EngineName;
  connections: number;
  size: number;
  pipeline: number;
  rate: number | null;
  /** `echo`, `upper`, or the label of a custom expectation (a transform module's path). */
  expect: string;
  expectPrefix: string | null;
  lines: boolean;
  warmupSeconds: number;
  durationSeconds: number;
  messages: number;
  /** With `messages` (`-n`): the good replies asked for. Fewer in `messages` means the run stopped short (exit 1). */
  messagesRequested?: number | null;
  /** Every verified reply of the run, warm-up and drain included: for CPU-per-message figures. */
  messagesTotal: number;
  messagesPerConnection: number | null;
  /** With `messagesPerConnection`: connections opened in the measured window, per second. */
  connectsPerSecond: number | null;
  /** With `messagesPerConnection`: from connect() to ready (TLS handshake included), for those. */
  connectLatencyUs: LatencySummary | null;
  messagesPerSecond: number;
  /** Payload bytes echoed per second, one direction. */
  bytesPerSecond: number;
  latencyUs: LatencySummary;
  errors: number;
  errorsByKind: Record<BenchErrorKind, number>;
  mismatchedBytes: number;
  /** The first reply that was wrong, its first bytes as Python's repr shows them: what the server sent instead. */
  firstWrongReply?: string | null;
  /**
   * Why the first connection that failed to open (`connect`) or was lost (`closed`) did, in
   * words, where the socket said: the counts alone do not tell a refusal from a reset.
   */
  errorCauses?: Partial<Record<'connect' | 'closed', string>>;
  /** Measured messages completed in each second of the run. */
  timeline: number[];
  /**
   * The latency of each second's messages (by when they were sent, as `timeline`), null for a
   * second without replies. Absent from merged results: seconds of several runs do not add up.
   */
  latencyTimeline?: Array<SecondLatency | null>;
  /** Errors counted in each second of the measured window. */
  errorTimeline?: number[];
  /** The latency percentile curve, for reports. */
  percentiles: PercentilePoint[];
  /**
   * The measured latencies (microseconds) as an HdrHistogram in its compressed base64 encoding
   * (V2), which any HdrHistogram library reads; `echoplex bench merge` adds these up exactly.
   */
  latencyHistogram: string;
  /** When the measured window began (ISO 8601), so that runs from several generators line up. */
  startedAt: string;
  /** Each threshold asked for, with what was measured (microseconds for latencies) and whether it held. */
  thresholds: ThresholdOutcome[];
  /** With `hello`: connections per instance, by the name in its hello line. */
  instances: Record<string, number> | null;
  /** Over UDP (with a built-in expectation): datagrams sent, received, lost, duplicated, reordered and late. */
  datagrams: DatagramCounts | null;
  /**
   * What each reply was checked against: `connection-and-sequence` (every message carries its
   * connection and sequence number, so crossed, stale, reordered and duplicated replies are told
   * apart), `sequence` (too small for a connection number: crossed replies look stale or
   * corrupt), `bytes` (too small for any id: a wrong reply that has the right bytes passes).
   */
  verification: Verification;
  /**
   * Open loop: how late the generator sent each measured message behind its schedule
   * (microseconds). Every latency includes it; near the latencies, it is the generator that shows.
   */
  sendLagUs: { p50: number; p99: number; max: number } | null;
  /** Set by `bench merge`: how many generators' runs this result adds up. */
  generators?: number;
  /** Set by `--find-max-rate` and `--ramp`: each rate tried, and the highest that held. */
  rateSearch?: RateSearch;
  /**
   * CPU this process used in the measured window (user + system, every thread), as a percentage
   * of one core. Near 100, the bench itself may be what limits the rate.
   */
  loadCpuPercent: number;
  /**
   * How much this process's resident memory grew from before the first connection to the end of
   * the window, with `connections` open then: what holding a connection costs the bench. Summed
   * over generators by `bench merge`.
   */
  loadMemory?: { rssGrowthBytes: number; connections: number };
  /** Set by `bench merge`: each generator's `loadCpuPercent`, in the order given. */
  generatorCpuPercent?: number[];
  /** Set by `bench merge`: each generator's `sendLagUs`, in the order given (a saturated one shows here). */
  generatorSendLagUs?: Array<{ p50: number; p99: number; max: number } | null>;
  /** The run was stopped early (`signal`, Ctrl-C): its window is shorter than was asked for. */
  stopped: boolean;
}

/** One second's latency, in microseconds. */
export interface SecondLatency {
  p50: number;
  p99: number;
  max: number;
}

/** Datagram accounting, for the run's result. */
export interface DatagramCounts {
  sent: number;
  /** Replies that came within the timeout, once each. */
  received: number;
  /** Datagrams whose reply never came. */
  lost: number;
  /** Replies to a datagram already answered. */
  duplicates: number;
  /** Replies that came after a reply to a later datagram. */
  reordered: number;
  /** Replies that came after their datagram had been counted lost (it is then not lost). */
  late: number;
}

export interface RateStep {
  /** Messages per second offered, on the open loop's fixed schedule. */
  rate: number;
  /** Every threshold held, nothing was lost, and the server kept up with the schedule. */
  ok: boolean;
  messagesPerSecond: number;
  errors: number;
  latencyUs: LatencySummary;
}

export interface RateSearch {
  /** The highest rate that was ok (null when none was). */
  maxRate: number | null;
  steps: RateStep[];
}

/** Thrown for settings that cannot work here, such as too few file descriptors. */
export class BenchSetupError extends EchoplexError {
  constructor(message: string) {
    super('ERR_ECHOPLEX_BENCH_SETUP', message);
  }
}

/** Bytes per message unless `size` says. */
export const DEFAULT_MESSAGE_SIZE = 64;

type OptionalSetting =
  | 'messages'
  | 'rate'
  | 'connectRate'
  | 'expectPrefix'
  | 'messagesPerConnection'
  | 'hdrLog'
  | 'firstConnection'
  | 'messageSeed';
/** BenchOptions with every default filled in. */
export type Settings = Required<
  Omit<
    BenchOptions,
    OptionalSetting | 'onProgress' | 'signal' | 'engine' | 'thresholds' | 'startAt' | 'startWhen' | keyof BenchTarget
  >
> &
  Pick<BenchOptions, OptionalSetting> & {
    target: BenchTarget;
    engine: EngineName;
    thresholds: Threshold[];
    startAt: number | undefined;
  };

/** Fills in the defaults and checks them; values no run can use throw a UsageError. */
export function resolveSettings(options: BenchOptions): Settings {
  const settings: Settings = {
    target: resolveTarget(options),
    connections: options.connections ?? 50,
    size: options.size ?? DEFAULT_MESSAGE_SIZE,
    pipeline: options.pipeline ?? 1,
    durationSeconds: options.durationSeconds ?? 10,
    warmupSeconds: options.warmupSeconds ?? (options.messages !== undefined ? 0 : 1),
    expect: options.expect ?? 'echo',
    expectPrefix: options.expectPrefix,
    lines: options.lines ?? false,
    timeoutSeconds: options.timeoutSeconds ?? 5,
    messages: options.messages,
    rate: options.rate,
    connectRate: options.connectRate,
    messagesPerConnection: options.messagesPerConnection,
    engine: chooseEngine(options.engine),
    thresholds: (options.thresholds ?? []).map(parseThreshold),
    hdrLog: options.hdrLog,
    firstConnection: options.firstConnection,
    messageSeed: options.messageSeed,
    hello: options.hello ?? false,
    startAt: options.startAt === undefined ? undefined : Number(options.startAt),
  };
  validate(settings);
  return settings;
}

/** Values no run can use are usage errors (the CLI exits 2), named as the CLI names them. */
function validate(settings: Settings): void {
  const positive = (flag: string, value: number | undefined) => {
    if (value !== undefined && !(Number.isFinite(value) && value > 0))
      throw new UsageError(`${flag} must be more than 0, got ${value}`);
  };
  positive('--connections', settings.connections);
  positive('--size', settings.size);
  positive('--pipeline', settings.pipeline);
  positive('--duration', settings.durationSeconds);
  positive('--messages', settings.messages);
  positive('--rate', settings.rate);
  positive('--connect-rate', settings.connectRate);
  positive('--messages-per-connection', settings.messagesPerConnection);
  positive('--timeout', settings.timeoutSeconds);
  if (settings.messagesPerConnection !== undefined) {
    if (!Number.isInteger(settings.messagesPerConnection))
      throw new UsageError(`--messages-per-connection must be a whole number, got ${settings.messagesPerConnection}`);
    if (settings.rate !== undefined)
      throw new UsageError('--messages-per-connection applies to the closed loop, not with --rate');
    if (settings.target.udp) throw new UsageError('--messages-per-connection needs connections: not with --udp');
  }
  if (settings.target.udp && settings.size > MAX_UDP_PAYLOAD)
    throw new UsageError(`--size: a UDP message holds at most ${MAX_UDP_PAYLOAD} bytes, got ${settings.size}`);
  if (!(settings.warmupSeconds >= 0))
    throw new UsageError(`--warmup must be 0 or more seconds, got ${settings.warmupSeconds}`);
  if (settings.target.websocket !== undefined && settings.target.proxyProtocol !== undefined)
    throw new UsageError(
      '--proxy-protocol: not with a WebSocket target (put a proxy that sends the header in front instead)',
    );
  if (settings.hello && settings.target.udp)
    throw new UsageError('--hello reads the first line of a stream: not with --udp');
  if (settings.target.udp && settings.target.proxyProtocol !== undefined)
    throw new UsageError('--proxy-protocol opens a stream with a header: not with --udp');
  if (settings.startAt !== undefined) {
    if (!Number.isFinite(settings.startAt))
      throw new UsageError('--start-at must be a time (ISO 8601, or milliseconds since the epoch)');
    if (settings.startAt < Date.now())
      throw new UsageError(`--start-at ${new Date(settings.startAt).toISOString()} has already passed`);
    if (settings.messages !== undefined)
      throw new UsageError('--start-at measures a window of --duration, not a number of --messages');
  }
}
