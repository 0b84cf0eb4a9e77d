// The load generator: connections that send framed messages, verify every byte, time each reply.

import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { EchoplexError } from '../errors.js';
import { formatHostPort } from '../server/address.js';
import { builtInTransform, type TransformName } from '../server/transforms.js';
import { LatencyHistogram, type LatencySummary, type PercentilePoint } from './histogram.js';
import { checkDescriptorBudget } from '../ops/descriptors.js';
import { MAX_UDP_PAYLOAD } from '../server/udp.js';
import { describeTarget, openBenchSocket, type BenchSocket, type BenchTarget } from './transports.js';

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
  /** What the server should send back. Default `echo`. */
  expect?: TransformName;
  /** Text the server puts before each reply (`echoplex serve --prefix`, Istio's tcp-echo-server). */
  expectPrefix?: string;
  /**
   * Make each message one line: printable ASCII ending in its only `\n`, for servers that
   * answer whole lines (random bytes would leave a line server holding a partial line).
   */
  lines?: boolean;
  /** Seconds a reply may take before the connection counts as timed out. Default 5. */
  timeoutSeconds?: number;
  /** Called about once a second while measuring. */
  onProgress?: (progress: BenchProgress) => void;
}

export interface BenchProgress {
  elapsedSeconds: number;
  phase: 'connecting' | 'warmup' | 'measuring' | 'draining';
  messagesPerSecond: number;
  errors: number;
}

export type BenchErrorKind = 'connect' | 'closed' | 'timeout' | 'mismatch';

export interface BenchResult {
  target: string;
  mode: 'closed-loop' | 'open-loop';
  connections: number;
  size: number;
  pipeline: number;
  rate: number | null;
  expect: TransformName;
  expectPrefix: string | null;
  lines: boolean;
  warmupSeconds: number;
  durationSeconds: number;
  messages: number;
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
  /** Measured messages completed in each second of the run. */
  timeline: number[];
  /** The latency percentile curve, for reports. */
  percentiles: PercentilePoint[];
  /**
   * CPU this process used in the measured window (user + system, every thread), as a percentage
   * of one core. Near 100, the bench itself may be what limits the rate.
   */
  loadCpuPercent: number;
}

/** Thrown for settings that cannot work here, such as too few file descriptors. */
export class BenchSetupError extends EchoplexError {
  constructor(message: string) {
    super('ERR_ECHOPLEX_BENCH_SETUP', message);
  }
}

type Phase = BenchProgress['phase'] | 'done';

const MAX_CONNECTS_IN_FLIGHT = 256;
const SWEEP_MS = 100;
const READ_BUFFER_BYTES = 64 * 1024;

type OptionalSetting = 'messages' | 'rate' | 'connectRate' | 'expectPrefix' | 'messagesPerConnection';
type Settings = Required<Omit<BenchOptions, OptionalSetting | 'onProgress' | keyof BenchTarget>> & Pick<BenchOptions, OptionalSetting> & { target: BenchTarget };

/** State shared by all connections of one run. */
class Run {
  phase: Phase = 'connecting';
  measureStartedAt = 0;
  measureEndedAt = 0;
  /** CPU microseconds this process used between the two. */
  measuredCpuMicros = 0;
  #cpuAtStart: NodeJS.CpuUsage | undefined;
  measured = 0;
  completedTotal = 0;
  /** Replies owed across all connections; when it reaches 0 the run may be over. */
  inFlight = 0;
  /** Sends still allowed: unbounded, except while measuring a fixed number of messages. */
  sendBudget = Number.POSITIVE_INFINITY;
  mismatchedBytes = 0;
  descriptorsExhausted = false;
  readonly errorsByKind: Record<BenchErrorKind, number> = { connect: 0, closed: 0, timeout: 0, mismatch: 0 };
  readonly histogram = new LatencyHistogram();
  /** Connection set-up times, when connections are replaced during the run. */
  readonly connectHistogram = new LatencyHistogram();
  /** Connections still opening, each with its canceller: the run is not out of connections while any are. */
  readonly connecting = new Set<() => void>();
  readonly timeline: number[] = [];
  readonly live = new Set<BenchConnection>();
  // One read buffer for every socket: onread hands us bytes synchronously, so none outlive a callback.
  readonly readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  finish: () => void = () => {};

  /** `burstOf[n]`: n messages back to back, for every n up to the burst's length; sends make no views. */
  readonly burstOf: Buffer[] = [];

  constructor(
    readonly options: Settings,
    readonly payload: Buffer,
    readonly expected: Buffer,
    burst: Buffer,
  ) {
    for (let n = 1; n * payload.length <= burst.length; n++) this.burstOf[n] = burst.subarray(0, n * payload.length);
  }

  get errors(): number {
    const e = this.errorsByKind;
    return e.connect + e.closed + e.timeout + e.mismatch;
  }

  get sending(): boolean {
    return this.phase === 'warmup' || this.phase === 'measuring';
  }

  // Closed loop: replies read in this event-loop turn, answered together once the turn's reads are done.
  readonly #toAnswer: BenchConnection[] = [];
  readonly #toAnswerCounts: number[] = [];

  /**
   * Queues `count` new messages on `connection` for the end of this turn. Sending them in one
   * pass after every readable socket has been read lets the server find a batch of connections
   * ready at once, rather than being woken once per message: less kernel time per message on
   * both sides (against the C epoll server, about 5% more messages per second from one core).
   */
  answerLater(connection: BenchConnection, count: number): void {
    if (this.#toAnswer.length === 0) setImmediate(this.#answerAll);
    this.#toAnswer.push(connection);
    this.#toAnswerCounts.push(count);
  }

  readonly #answerAll = (): void => {
    const now = performance.now();
    const connections = this.#toAnswer;
    const counts = this.#toAnswerCounts;
    for (let i = 0; i < connections.length && this.sending; i++) connections[i]!.send(counts[i]!, now);
    connections.length = 0;
    counts.length = 0;
  };

  startMeasuring(): void {
    this.phase = 'measuring';
    this.measureStartedAt = performance.now();
    this.#cpuAtStart = process.cpuUsage();
  }

  /** Closes the measured window (the first call wins). */
  endMeasuring(now: number): void {
    if (this.measureEndedAt !== 0) return;
    this.measureEndedAt = now;
    if (this.#cpuAtStart === undefined) return;
    const used = process.cpuUsage(this.#cpuAtStart);
    this.measuredCpuMicros = used.user + used.system;
  }

  /** A message counts when it was sent inside the measured window, whenever its reply lands. */
  completed(now: number, sentAt: number): void {
    this.inFlight--;
    this.completedTotal++;
    if (this.measureStartedAt !== 0 && sentAt >= this.measureStartedAt && (this.measureEndedAt === 0 || sentAt < this.measureEndedAt)) {
      this.measured++;
      this.histogram.recordMicros((now - sentAt) * 1000);
      const second = Math.floor((sentAt - this.measureStartedAt) / 1000);
      this.timeline[second] = (this.timeline[second] ?? 0) + 1;
    }
    if (this.inFlight === 0) this.#maybeDone(now);
  }

  /** A connection died with `owed` replies outstanding. */
  lost(owed: number): void {
    this.inFlight -= owed;
    if (this.inFlight === 0 || this.live.size === 0) this.#maybeDone(performance.now());
  }

  /** A replacement connection opened `connectMs` after it was asked for. */
  replaced(startedAt: number, connectMs: number): void {
    if (this.phase === 'measuring' && startedAt >= this.measureStartedAt) this.connectHistogram.recordMicros(connectMs * 1000);
  }

  #maybeDone(now: number): void {
    if (this.live.size === 0 && this.connecting.size === 0 && this.phase !== 'connecting') return this.finish();
    if (this.phase === 'draining') return this.finish();
    if (this.phase === 'measuring' && this.sendBudget === 0 && this.inFlight === 0) {
      this.endMeasuring(now);
      this.finish();
    }
  }
}

/** One connection: a FIFO of send times, and where in the current reply the bytes have reached. */
class BenchConnection {
  readonly socket: BenchSocket;
  #run: Run;
  #offsetInReply = 0;
  #sendTimes: Float64Array;
  #head = 0;
  #count = 0;
  #failed = false;
  /** Messages this connection may still send, with `messagesPerConnection`; else unbounded. */
  #quota: number;

  constructor(run: Run, socket: BenchSocket) {
    this.#run = run;
    this.socket = socket;
    this.#sendTimes = new Float64Array(Math.max(4, run.options.pipeline));
    this.#quota = run.options.messagesPerConnection ?? Number.POSITIVE_INFINITY;
  }

  /** Sent its last message and has every reply: time to make way for a new connection. */
  get spent(): boolean {
    return this.#quota === 0 && this.#count === 0;
  }

  get inFlight(): number {
    return this.#count;
  }

  get oldestSendTime(): number {
    return this.#sendTimes[this.#head]!;
  }

  /** Sends `count` messages, stamping each with `stamp` (now, or its intended time in the open loop). */
  send(count: number, stamp: number): void {
    const run = this.#run;
    count = Math.min(count, run.sendBudget, this.#quota);
    if (count <= 0 || this.#failed) return;
    run.sendBudget -= count;
    this.#quota -= count;
    run.inFlight += count;
    for (let i = 0; i < count; i++) this.#push(stamp);
    const { burstOf, payload } = run;
    if (this.socket.datagrams) {
      for (let i = 0; i < count; i++) this.socket.write(payload);
      return;
    }
    const most = burstOf.length - 1;
    for (let left = count; left > 0; left -= most) this.socket.write(burstOf[Math.min(left, most)]!);
  }

  /** Verifies and frames received bytes; returns how many replies completed. */
  receive(bytes: Buffer, length: number, now: number): number {
    const run = this.#run;
    const expected = run.expected;
    const size = expected.length;
    let completed = 0;
    let offset = 0;
    while (offset < length) {
      if (this.#count === 0) {
        // Bytes nobody asked for: the server sent more than it was sent.
        run.mismatchedBytes += length - offset;
        run.errorsByKind.mismatch++;
        return completed;
      }
      const take = Math.min(size - this.#offsetInReply, length - offset);
      if (bytes.compare(expected, this.#offsetInReply, this.#offsetInReply + take, offset, offset + take) !== 0) {
        this.#countMismatch(bytes, offset, take);
      }
      offset += take;
      this.#offsetInReply += take;
      if (this.#offsetInReply === size) {
        this.#offsetInReply = 0;
        run.completed(now, this.#shift());
        completed++;
      }
    }
    return completed;
  }

  /** Closes a connection that has done its share; not an error. */
  retire(): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#run.live.delete(this);
    this.socket.destroy();
  }

  fail(kind: BenchErrorKind): void {
    if (this.#failed) return;
    this.#failed = true;
    const run = this.#run;
    run.errorsByKind[kind]++;
    run.live.delete(this);
    const owed = this.#count;
    this.#count = 0;
    this.socket.destroy();
    run.lost(owed);
  }

  get failed(): boolean {
    return this.#failed;
  }

  #countMismatch(bytes: Buffer, offset: number, take: number): void {
    const run = this.#run;
    let differing = 0;
    for (let i = 0; i < take; i++) if (bytes[offset + i] !== run.expected[this.#offsetInReply + i]) differing++;
    if (differing > 0) {
      run.mismatchedBytes += differing;
      run.errorsByKind.mismatch++;
    }
  }

  #push(stamp: number): void {
    if (this.#count === this.#sendTimes.length) this.#grow();
    this.#sendTimes[(this.#head + this.#count) % this.#sendTimes.length] = stamp;
    this.#count++;
  }

  #shift(): number {
    const stamp = this.#sendTimes[this.#head]!;
    this.#head = (this.#head + 1) % this.#sendTimes.length;
    this.#count--;
    return stamp;
  }

  #grow(): void {
    const bigger = new Float64Array(this.#sendTimes.length * 2);
    for (let i = 0; i < this.#count; i++) bigger[i] = this.#sendTimes[(this.#head + i) % this.#sendTimes.length]!;
    this.#sendTimes = bigger;
    this.#head = 0;
  }
}

/** Runs one benchmark against a TCP echo server and resolves with its verified results. */
export async function runBench(options: BenchOptions = {}): Promise<BenchResult> {
  const settings: Settings = {
    target: {
      host: options.host ?? '127.0.0.1',
      port: options.port ?? 1234,
      ...(options.unix !== undefined && { unix: options.unix }),
      ...(options.tls !== undefined && { tls: options.tls }),
      ...(options.tlsInsecure !== undefined && { tlsInsecure: options.tlsInsecure }),
      ...(options.tlsCa !== undefined && { tlsCa: options.tlsCa }),
      ...(options.udp !== undefined && { udp: options.udp }),
      ...(options.proxyProtocol !== undefined && { proxyProtocol: options.proxyProtocol }),
    },
    connections: options.connections ?? 50,
    size: options.size ?? 64,
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
  };
  validate(settings);
  checkDescriptorBudget(settings.connections);

  const payload = settings.lines ? randomLine(settings.size) : randomBytes(settings.size);
  const reply = builtInTransform(settings.expect)(Buffer.from(payload));
  const expected = settings.expectPrefix ? Buffer.concat([Buffer.from(settings.expectPrefix), reply]) : reply;
  const burst = Buffer.concat(Array.from({ length: Math.max(settings.pipeline, 16) }, () => payload));
  const run = new Run(settings, payload, expected, burst);

  await new Promise<void>((resolve) => {
    const stops: Array<() => void> = [];
    run.finish = () => {
      if (run.phase === 'done') return;
      run.endMeasuring(performance.now());
      run.phase = 'done';
      for (const stop of stops) stop();
      for (const connection of run.live) connection.socket.destroy();
      for (const cancel of [...run.connecting]) cancel();
      resolve();
    };
    const sweep = setInterval(() => sweepTimeouts(run), SWEEP_MS);
    stops.push(() => clearInterval(sweep));
    if (options.onProgress) stops.push(startProgress(run, options.onProgress));
    void connectAll(run).then(() => {
      if (run.phase === 'done') return;
      if (run.live.size === 0 || run.descriptorsExhausted) return run.finish();
      stops.push(startPhases(run));
    });
  });

  if (run.descriptorsExhausted) {
    throw new BenchSetupError(`ran out of file descriptors opening ${settings.connections} connections: raise the limit with \`ulimit -n\``);
  }
  const durationSeconds = Math.max(run.measureEndedAt - (run.measureStartedAt || run.measureEndedAt), 1) / 1000;
  return {
    target: describeTarget(settings.target),
    mode: settings.rate !== undefined ? 'open-loop' : 'closed-loop',
    connections: settings.connections,
    size: settings.size,
    pipeline: settings.pipeline,
    rate: settings.rate ?? null,
    expect: settings.expect,
    expectPrefix: settings.expectPrefix ?? null,
    lines: settings.lines,
    warmupSeconds: settings.warmupSeconds,
    durationSeconds: round(durationSeconds, 3),
    messages: run.measured,
    messagesTotal: run.completedTotal,
    messagesPerConnection: settings.messagesPerConnection ?? null,
    connectsPerSecond: settings.messagesPerConnection !== undefined ? round(run.connectHistogram.count / durationSeconds, 1) : null,
    connectLatencyUs: settings.messagesPerConnection !== undefined ? run.connectHistogram.summary() : null,
    messagesPerSecond: round(run.measured / durationSeconds, 1),
    bytesPerSecond: Math.round((run.measured * settings.size) / durationSeconds),
    latencyUs: run.histogram.summary(),
    errors: run.errors,
    errorsByKind: { ...run.errorsByKind },
    mismatchedBytes: run.mismatchedBytes,
    timeline: wholeSeconds(run.timeline, durationSeconds),
    percentiles: run.histogram.curve(),
    loadCpuPercent: round((run.measuredCpuMicros / (durationSeconds * 1e6)) * 100, 1),
  };
}

/** `size` bytes: random printable ASCII (space to tilde), then the line's one `\n`. */
function randomLine(size: number): Buffer {
  const line = randomBytes(size);
  for (let i = 0; i < size - 1; i++) line[i] = 0x20 + (line[i]! % 95);
  line[size - 1] = 0x0a;
  return line;
}

function validate(settings: Settings): void {
  const positive = (name: string, value: number | undefined) => {
    if (value !== undefined && !(Number.isFinite(value) && value > 0)) throw new BenchSetupError(`${name} must be a positive number, got ${value}`);
  };
  positive('connections', settings.connections);
  positive('size', settings.size);
  positive('pipeline', settings.pipeline);
  positive('duration', settings.durationSeconds);
  positive('messages', settings.messages);
  positive('rate', settings.rate);
  positive('connect rate', settings.connectRate);
  positive('messages per connection', settings.messagesPerConnection);
  if (settings.messagesPerConnection !== undefined) {
    if (!Number.isInteger(settings.messagesPerConnection)) throw new BenchSetupError(`messages per connection must be a whole number, got ${settings.messagesPerConnection}`);
    if (settings.rate !== undefined) throw new BenchSetupError('messages per connection applies to the closed loop, not with a rate');
    if (settings.target.udp) throw new BenchSetupError('messages per connection needs connections: not with UDP');
  }
  positive('timeout', settings.timeoutSeconds);
  if (settings.target.udp && settings.size > MAX_UDP_PAYLOAD) throw new BenchSetupError(`a UDP message holds at most ${MAX_UDP_PAYLOAD} bytes, got --size ${settings.size}`);
  if (!(settings.warmupSeconds >= 0)) throw new BenchSetupError(`warm-up must be 0 or more seconds, got ${settings.warmupSeconds}`);
}

/** Opens every connection, with bounded concurrency or at a fixed rate; resolves once all have settled. */
function connectAll(run: Run): Promise<void> {
  const { connections, connectRate } = run.options;
  let started = 0;
  let settled = 0;
  return new Promise<void>((resolve) => {
    const settle = () => {
      settled++;
      if (settled === connections) resolve();
      else if (connectRate === undefined) startNext();
    };
    const startNext = () => {
      if (started >= connections || run.phase === 'done') return;
      started++;
      openConnection(run, settle);
    };
    if (connectRate === undefined) {
      for (let i = 0; i < Math.min(MAX_CONNECTS_IN_FLIGHT, connections); i++) startNext();
      return;
    }
    const begin = performance.now();
    const tick = () => {
      const due = Math.min(connections, Math.floor(((performance.now() - begin) / 1000) * connectRate) + 1);
      while (started < due) startNext();
      if (started < connections && run.phase !== 'done') setTimeout(tick, Math.max(1, 1000 / connectRate));
    };
    tick();
  });
}

/**
 * Opens one connection. `settled` runs once it is live or has failed to open. A replacement
 * (for one retired by messagesPerConnection) starts sending as soon as it is live.
 */
function openConnection(run: Run, settled: () => void, replacement = false): void {
  const closedLoop = run.options.rate === undefined;
  const startedAt = performance.now();
  let connection: BenchConnection | undefined;
  /** Ends the connecting state, once, however it ends. */
  const stopConnecting = (): boolean => {
    if (!run.connecting.delete(cancel)) return false;
    clearTimeout(deadline);
    return true;
  };
  const cancel = () => {
    if (stopConnecting()) socket.destroy();
  };
  const connectFailed = (err?: NodeJS.ErrnoException) => {
    if (!stopConnecting()) return;
    run.errorsByKind.connect++;
    if (err?.code === 'EMFILE' || err?.code === 'ENFILE') run.descriptorsExhausted = true;
    socket.destroy();
    settled();
    if (replacement) run.lost(0);
  };
  // A connect that neither succeeds nor fails (a SYN into a black hole) fails after --timeout.
  const deadline = setTimeout(connectFailed, run.options.timeoutSeconds * 1000);
  run.connecting.add(cancel);
  const socket = openBenchSocket(run.options.target, run.readBuffer, {
    connected: () => {
      if (!stopConnecting()) return;
      connection = new BenchConnection(run, socket);
      run.live.add(connection);
      if (replacement) {
        const now = performance.now();
        run.replaced(startedAt, now - startedAt);
        if (run.sending) connection.send(run.options.pipeline, now);
      }
      settled();
    },
    data: (bytes, length) => {
      if (connection === undefined || connection.failed) return;
      const done = connection.receive(bytes, length, performance.now());
      if (connection.spent) return replace(run, connection);
      if (done > 0 && closedLoop && run.sending) run.answerLater(connection, done);
    },
    error: (err) => {
      if (connection !== undefined) return connection.fail('closed');
      connectFailed(err);
    },
    closed: () => {
      // The server going away before the run is over is an error, whatever was in flight.
      if (connection !== undefined && run.phase !== 'done') connection.fail('closed');
    },
  });
}

/** Retires a connection that has sent its share, and opens a new one while the run still sends. */
function replace(run: Run, connection: BenchConnection): void {
  connection.retire();
  if (run.sending) openConnection(run, () => {}, true);
  else run.lost(0);
}

/** Warm-up, then the measured window, then waiting for replies still owed. Returns a canceller. */
function startPhases(run: Run): () => void {
  const { warmupSeconds, durationSeconds, messages, pipeline, rate } = run.options;
  const timers: NodeJS.Timeout[] = [];
  let stopOpenLoop: (() => void) | undefined;
  const beginMeasuring = () => {
    run.startMeasuring();
    if (messages !== undefined) {
      run.sendBudget = messages;
    } else {
      timers.push(setTimeout(beginDraining, durationSeconds * 1000));
    }
  };
  const beginDraining = () => {
    run.phase = 'draining';
    run.endMeasuring(performance.now());
    if (run.inFlight === 0) run.finish();
  };
  if (warmupSeconds > 0) {
    run.phase = 'warmup';
    timers.push(setTimeout(beginMeasuring, warmupSeconds * 1000));
  } else {
    beginMeasuring();
  }
  if (rate !== undefined) {
    stopOpenLoop = startOpenLoop(run, rate);
  } else {
    const now = performance.now();
    for (const connection of run.live) connection.send(pipeline, now);
  }
  return () => {
    for (const timer of timers) clearTimeout(timer);
    stopOpenLoop?.();
  };
}

/** Closes connections whose oldest reply is overdue. */
function sweepTimeouts(run: Run): void {
  const now = performance.now();
  const limitMs = run.options.timeoutSeconds * 1000;
  for (const connection of [...run.live]) {
    if (connection.inFlight > 0 && now - connection.oldestSendTime > limitMs) connection.fail('timeout');
  }
}

/** Sends on a fixed schedule across all connections, whatever the replies are doing. */
function startOpenLoop(run: Run, rate: number): () => void {
  const begin = performance.now();
  let scheduled = 0;
  let cursor = 0;
  const timer = setInterval(() => {
    if (!run.sending || run.live.size === 0) return;
    const due = Math.floor(((performance.now() - begin) / 1000) * rate);
    const connections = [...run.live];
    while (scheduled < due && run.sendBudget > 0) {
      // Latency counts from when the message should have gone out, so a stall cannot hide.
      const intended = begin + (scheduled * 1000) / rate;
      connections[cursor++ % connections.length]!.send(1, intended);
      scheduled++;
    }
  }, 1);
  return () => clearInterval(timer);
}

function startProgress(run: Run, onProgress: (progress: BenchProgress) => void): () => void {
  const begin = performance.now();
  let lastMeasured = 0;
  let lastAt = begin;
  const timer = setInterval(() => {
    if (run.phase === 'done') return;
    const now = performance.now();
    const rate = ((run.measured - lastMeasured) * 1000) / (now - lastAt);
    lastMeasured = run.measured;
    lastAt = now;
    onProgress({ elapsedSeconds: (now - begin) / 1000, phase: run.phase, messagesPerSecond: rate, errors: run.errors });
  }, 1000);
  return () => clearInterval(timer);
}

/** Per-second counts, with a last fraction of a second folded into the final whole second. */
function wholeSeconds(timeline: number[], durationSeconds: number): number[] {
  const seconds = Math.max(1, Math.round(durationSeconds));
  const counts = Array.from({ length: seconds }, (_, i) => timeline[i] ?? 0);
  for (let i = seconds; i < timeline.length; i++) counts[seconds - 1]! += timeline[i] ?? 0;
  return counts;
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}
