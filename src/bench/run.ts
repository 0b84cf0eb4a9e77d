// The state one bench run shares across its connections: phases, the measured window, counts.

import { performance } from 'node:perf_hooks';
import type { BenchTarget } from '../protocol/transports.js';
import type { IntervalLog } from './hdr-log.js';
import { LatencyHistogram } from './histogram.js';
import type { MessageCodec } from './message.js';
import {
  BENCH_ERROR_KINDS,
  emptyErrorCounts,
  type BenchErrorKind,
  type BenchProgress,
  type DatagramCounts,
  type Settings,
} from './settings.js';

export type Phase = BenchProgress['phase'] | 'done';

const READ_BUFFER_BYTES = 64 * 1024;

/** What a run asks of a connection, whichever engine carries it (connection.ts, native-bench.ts). */
export interface LoadConnection {
  readonly failed: boolean;
  /** Sent its last message and has every reply: time to make way for a new connection. */
  readonly spent: boolean;
  /** Sends `count` messages, stamping each with `stamp` (now, or its intended time in the open loop). */
  send(count: number, stamp: number): void;
  /** Its oldest reply has been owed for more than `limitMs`. */
  isOverdue(now: number, limitMs: number): boolean;
  /** Counts an error of `kind` and closes; replies still owed are lost. */
  fail(kind: BenchErrorKind): void;
  /** Closes a connection that has done its share; not an error. */
  retire(): void;
  /** Closes at once, as the run ends. */
  destroy(): void;
}

/** What a run asks of the native engine carrying its connections (native-bench.ts). */
export interface RunEngine {
  /** Brings what the engine has done since into the run's counts. */
  sync(): void;
  /** Whether the engine answers each reply with a new message (the closed loop), and how many messages may still be sent. */
  setSending(answering: boolean, budget: number): void;
  /**
   * Opens a connection to `target` (its host already an address); `opening` hears once whether
   * it opened (after any TLS and WebSocket handshakes) or failed, and why.
   */
  open(
    target: BenchTarget,
    opening: { opened(connection: LoadConnection): void; failed(err: NodeJS.ErrnoException): void },
  ): LoadConnection;
  close(): void;
}

/** State shared by all connections of one run. */
export class Run {
  #phase: Phase = 'connecting';
  warmupStartedAt = 0;
  measureStartedAt = 0;
  measureEndedAt = 0;
  /** CPU microseconds this process used between the two. */
  measuredCpuMicros = 0;
  #cpuAtStart: NodeJS.CpuUsage | undefined;
  /** Resident memory before the first connection, and with the connections open at the window's end. */
  rssBeforeConnecting = process.memoryUsage.rss();
  rssWithConnections = 0;
  /** Connections open when the window ended. */
  openAtEnd = 0;
  measured = 0;
  completedTotal = 0;
  /** Replies owed across all connections; when it reaches 0 the run may be over. */
  inFlight = 0;
  /** Sends still allowed: unbounded, except while measuring a fixed number of messages (set with setSendBudget). */
  sendBudget = Number.POSITIVE_INFINITY;
  /** The native engine carrying this run's connections, if it does (see native-bench.ts). */
  engine: RunEngine | undefined;
  mismatchedBytes = 0;
  descriptorsExhausted = false;
  /** A connect found no local port left for its source address (EADDRNOTAVAIL). */
  portsExhausted = false;
  /** Connections that opened, over the run; with none, the first connect error says why. */
  connectionsOpened = 0;
  /** Connections begun, replacements included: the next one's index among the sources and ports. */
  connectionsStarted = 0;
  firstConnectError: NodeJS.ErrnoException | undefined;
  /** The first error an open connection failed with (over UDP, a refused port shows only here). */
  firstSocketError: NodeJS.ErrnoException | undefined;
  readonly errorsByKind: Record<BenchErrorKind, number> = emptyErrorCounts();
  /** The first reply that was not right, to show what the server sent instead. */
  firstWrongReply: Buffer | undefined;
  /** The number the next connection's messages carry (message.ts). */
  nextConnection = 0;
  /** Open loop: how late each measured message went out behind its schedule. */
  readonly sendLag = new LatencyHistogram();
  /** With `hello`: connections per instance that answered. */
  readonly instances = new Map<string, number>();
  /** Over UDP: every datagram's fate (see datagram.ts). */
  readonly datagrams: DatagramCounts = { sent: 0, received: 0, lost: 0, duplicates: 0, reordered: 0, late: 0 };
  /** With --hdr-log: the measured latencies again, second by second. */
  intervalLog: IntervalLog | undefined;
  /** Connection set-up times, when connections are replaced during the run. */
  readonly connectHistogram = new LatencyHistogram();
  /** Connections still opening: the run is not out of connections while any are. */
  connecting = 0;
  readonly timeline: number[] = [];
  /**
   * The measured latencies of each second (by send time, as `timeline`), for the report's
   * latency over time. They add up to the run's histogram: each latency is recorded once.
   */
  readonly secondHistograms: LatencyHistogram[] = [];

  /** Every measured latency: the sum of the seconds' histograms. */
  get histogram(): LatencyHistogram {
    const all = new LatencyHistogram();
    for (const second of this.secondHistograms) if (second !== undefined) all.add(second);
    return all;
  }
  /** Errors counted in each second of the measured window (by when they were counted). */
  readonly errorTimeline: number[] = [];
  readonly live = new Set<LoadConnection>();
  // One read buffer for every socket: onread hands us bytes synchronously, so none outlive a callback.
  readonly readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  finish: () => void = () => {};

  /** Over WebSocket: messages go (and replies must come) as binary, unless the run sends text. */
  readonly sendsBinary: boolean;

  constructor(
    readonly options: Settings,
    /** Every message of the run and the reply it must come back as (message.ts). */
    readonly codec: MessageCodec,
  ) {
    this.sendsBinary = !options.target.websocket?.text;
  }

  get errors(): number {
    let total = 0;
    for (const kind of BENCH_ERROR_KINDS) total += this.errorsByKind[kind];
    return total;
  }

  get phase(): Phase {
    return this.#phase;
  }

  set phase(phase: Phase) {
    this.#phase = phase;
    if (this.engine === undefined) return;
    // The engine's budget is the current one: take it before handing it back.
    this.engine.sync();
    this.#tellEngine();
  }

  get sending(): boolean {
    return this.#phase === 'warmup' || this.#phase === 'measuring';
  }

  setSendBudget(messages: number): void {
    this.sendBudget = messages;
    this.#tellEngine();
  }

  /** The engine answers replies in the closed loop; in the open loop the schedule sends through it. */
  #tellEngine(): void {
    this.engine?.setSending(this.sending && this.options.rate === undefined, this.sendBudget);
  }

  /** Brings what the native engine has done since into the counts (a no-op without one). */
  syncEngine(): void {
    this.engine?.sync();
  }

  // Closed loop: replies read in this event-loop turn, answered together once the turn's reads are done.
  readonly #toAnswer: LoadConnection[] = [];
  readonly #toAnswerCounts: number[] = [];

  /**
   * Queues `count` new messages on `connection` for the end of this turn. Sending them in one
   * pass after every readable socket has been read lets the server find a batch of connections
   * ready at once, rather than being woken once per message: less kernel time per message on
   * both sides (against the C epoll server, about 5% more messages per second from one core).
   */
  answerLater(connection: LoadConnection, count: number): void {
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
    // Errors of the warm-up are in the totals, not in the measured seconds.
    this.#errorsSeen = this.errors;
    this.#cpuAtStart = process.cpuUsage();
  }

  #errorsSeen = 0;
  /** Counts the errors since the last call against the measured second `now` falls in. */
  countErrors(now: number): void {
    if (this.measureStartedAt === 0) return;
    const second = Math.max(0, Math.floor((now - this.measureStartedAt) / 1000 - 1e-9));
    const errors = this.errors;
    this.errorTimeline[second] = (this.errorTimeline[second] ?? 0) + errors - this.#errorsSeen;
    this.#errorsSeen = errors;
  }

  /** Closes the measured window (the first call wins). */
  endMeasuring(now: number): void {
    if (this.measureEndedAt !== 0) return;
    this.measureEndedAt = now;
    this.countErrors(now);
    this.rssWithConnections = process.memoryUsage.rss();
    this.openAtEnd = this.live.size;
    if (this.#cpuAtStart === undefined) return;
    const used = process.cpuUsage(this.#cpuAtStart);
    this.measuredCpuMicros = used.user + used.system;
  }

  /** Whether a message sent at `sentAt` falls in the measured window (so far). */
  inWindow(sentAt: number): boolean {
    return (
      this.measureStartedAt !== 0 &&
      sentAt >= this.measureStartedAt &&
      (this.measureEndedAt === 0 || sentAt < this.measureEndedAt)
    );
  }

  /** A message counts when it was sent inside the measured window, whenever its reply lands. */
  completed(now: number, sentAt: number): void {
    this.inFlight--;
    this.completedTotal++;
    if (this.inWindow(sentAt)) {
      this.measured++;
      this.intervalLog?.recordMicros((now - sentAt) * 1000);
      const second = Math.floor((sentAt - this.measureStartedAt) / 1000);
      this.timeline[second] = (this.timeline[second] ?? 0) + 1;
      (this.secondHistograms[second] ??= new LatencyHistogram()).recordMicros((now - sentAt) * 1000);
    }
    if (this.inFlight === 0) this.#maybeDone(now);
  }

  /** A wrong reply took the place of an owed one: no latency, and the error is counted by its kind. */
  answeredWrongly(): void {
    this.inFlight--;
    if (this.inFlight === 0) this.#maybeDone(performance.now());
  }

  /**
   * Set by the load generator with `messagesPerConnection`: opens a connection in place of one
   * that failed, so that churn keeps its connections (returns false once it gives up).
   */
  replaceFailed: (() => boolean) | undefined;

  /**
   * A connection died with `owed` replies outstanding. With `-n`, what it owed goes back to the
   * send budget, to be sent again on a replacement or a connection still open: `-n` counts
   * replies that came, not messages that went.
   */
  lost(owed: number, failed = false): void {
    this.inFlight -= owed;
    if (failed && this.phase === 'measuring' && Number.isFinite(this.sendBudget)) {
      this.sendBudget += owed;
      this.#tellEngine();
      const replaced = this.replaceFailed?.() === true;
      if (!replaced && owed > 0) {
        const survivor = this.live.values().next().value;
        survivor?.send(owed, performance.now());
      }
    } else if (failed) {
      this.replaceFailed?.();
    }
    if (this.inFlight === 0 || this.live.size === 0) this.#maybeDone(performance.now());
  }

  /** A replacement connection opened `connectMs` after it was asked for. */
  replaced(startedAt: number, connectMs: number): void {
    if (this.phase === 'measuring' && startedAt >= this.measureStartedAt)
      this.connectHistogram.recordMicros(connectMs * 1000);
  }

  #maybeDone(now: number): void {
    if (this.live.size === 0 && this.connecting === 0 && this.phase !== 'connecting') return this.finish();
    if (this.phase === 'draining') return this.finish();
    if (this.phase === 'measuring' && this.sendBudget === 0 && this.inFlight === 0) {
      this.endMeasuring(now);
      this.finish();
    }
  }
}
