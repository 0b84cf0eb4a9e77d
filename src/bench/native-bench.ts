// The bench's native engine (native/bench_engine.c): closed-loop TCP connections read, verified,
// timed and answered in C; this file keeps the run's accounting in step with it.

import { performance } from 'node:perf_hooks';
import { addonBinding } from '../native/addon.js';
import type { LoadConnection, Run, RunEngine } from './run.js';
import type { BenchErrorKind } from './settings.js';

type BenchHandle = { readonly __brand: 'echoplex.native.bench' };
type BenchConnectionHandle = { readonly __brand: 'echoplex.native.bench-connection' };

interface NativeBenchBinding {
  /**
   * `onReplies(count)` (with `receiver` as `this`) runs once per turn of the event loop, or when
   * `batch` is full, with `count` (sent at, received at) pairs at the start of `batch`.
   * `onClose(token, status, owed)` runs once per adopted connection, after it closed.
   */
  createBench(
    receiver: object,
    payload: Buffer,
    expected: Buffer,
    burstMessages: number,
    batch: Float64Array,
    clockOffsetMs: number,
    onReplies: (count: number) => void,
    onClose: (token: object, status: number, owed: number) => void,
  ): BenchHandle;
  /** Takes over a duplicate of the connected TCP socket `fd`; the caller closes its own. Throws (code EMFILE, ...) if it cannot. */
  adoptBench(bench: BenchHandle, fd: number, token: object): BenchConnectionHandle;
  /** Sends up to `count` messages stamped `stamp`; returns how many the send budget allowed. */
  benchSend(connection: BenchConnectionHandle, count: number, stamp: number): number;
  benchDestroy(connection: BenchConnectionHandle): void;
  /** Fills `out` with replies owed and the oldest one's send time. */
  benchInFlight(connection: BenchConnectionHandle, out: Float64Array): void;
  /** Whether replies are answered, and how many messages may still be sent. */
  benchSetSending(bench: BenchHandle, sending: boolean, budget: number): void;
  /** Fills `out` with messages sent, send budget left, mismatched bytes, mismatches. */
  benchTotals(bench: BenchHandle, out: Float64Array): void;
  closeBench(bench: BenchHandle): void;
}

const FUNCTIONS = ['createBench', 'adoptBench', 'benchSend', 'benchDestroy', 'benchInFlight', 'benchSetSending', 'benchTotals', 'closeBench'] as const;

const binding = addonBinding<NativeBenchBinding>(FUNCTIONS);

/** Whether the addon with the bench engine was built. */
export const nativeBenchAvailable = binding !== undefined;

/** Pairs handed over per call at most; a turn's replies rarely fill it. */
const BATCH_PAIRS = 4096;

/**
 * One run's engine. The run's counters that the engine moves (messages in flight, the send
 * budget, mismatches) are brought up to date by `sync()` before the run reads them.
 */
export class NativeBench implements RunEngine {
  readonly #binding: NativeBenchBinding;
  readonly #handle: BenchHandle;
  readonly #run: Run;
  readonly #batch = new Float64Array(2 * BATCH_PAIRS);
  readonly #totals = new Float64Array(4);
  #sentSeen = 0;
  #mismatchedBytesSeen = 0;
  #mismatchesSeen = 0;

  /** Undefined where the addon was not built. */
  static create(run: Run, payload: Buffer, expected: Buffer, burstMessages: number): NativeBench | undefined {
    return binding === undefined ? undefined : new NativeBench(binding, run, payload, expected, burstMessages);
  }

  private constructor(nativeBinding: NativeBenchBinding, run: Run, payload: Buffer, expected: Buffer, burstMessages: number) {
    this.#binding = nativeBinding;
    this.#run = run;
    // The engine stamps with uv_hrtime; performance.now() is the same clock from another origin.
    const clockOffsetMs = performance.now() - Number(process.hrtime.bigint()) / 1e6;
    this.#handle = nativeBinding.createBench(this, payload, expected, burstMessages, this.#batch, clockOffsetMs, this.#onReplies, onClose);
  }

  /** Opens a connection on the engine from a connected descriptor (the caller closes its own). */
  adopt(fd: number): NativeBenchConnection {
    const connection = new NativeBenchConnection(this.#run, this, this.#binding);
    connection.handle = this.#binding.adoptBench(this.#handle, fd, connection);
    return connection;
  }

  /** Tells the engine whether to answer replies, and how many messages may still go. */
  setSending(sending: boolean, budget: number): void {
    this.#binding.benchSetSending(this.#handle, sending, budget);
  }

  /** Brings the run's in-flight count, send budget and mismatches up to the engine's. */
  sync(): void {
    const totals = this.#totals;
    this.#binding.benchTotals(this.#handle, totals);
    const run = this.#run;
    run.inFlight += totals[0]! - this.#sentSeen;
    this.#sentSeen = totals[0]!;
    run.sendBudget = totals[1]!;
    run.mismatchedBytes += totals[2]! - this.#mismatchedBytesSeen;
    this.#mismatchedBytesSeen = totals[2]!;
    run.errorsByKind.mismatch += totals[3]! - this.#mismatchesSeen;
    this.#mismatchesSeen = totals[3]!;
  }

  close(): void {
    this.sync();
    this.#binding.closeBench(this.#handle);
  }

  readonly #onReplies = (count: number): void => {
    this.sync();
    const batch = this.#batch;
    const run = this.#run;
    for (let i = 0; i < 2 * count; i += 2) run.completed(batch[i + 1]!, batch[i]!);
  };
}

function onClose(this: NativeBenchConnection, _token: object, status: number, owed: number): void {
  this.closed(status, owed);
}

/** A connection the engine carries: JavaScript sends its first messages and hears when it closes. */
export class NativeBenchConnection implements LoadConnection {
  handle: BenchConnectionHandle | undefined;
  #failed = false;
  readonly #inFlight = new Float64Array(2);

  constructor(
    private readonly run: Run,
    private readonly engine: NativeBench,
    private readonly binding: NativeBenchBinding,
  ) {}

  get failed(): boolean {
    return this.#failed;
  }

  /** Connections are replaced only with messagesPerConnection, which the engine does not take. */
  get spent(): boolean {
    return false;
  }

  send(count: number, stamp: number): void {
    if (this.#failed || this.handle === undefined) return;
    this.binding.benchSend(this.handle, count, stamp);
  }

  isOverdue(now: number, limitMs: number): boolean {
    const figures = this.#readInFlight();
    return figures[0]! > 0 && now - figures[1]! > limitMs;
  }

  fail(kind: BenchErrorKind): void {
    if (this.#failed) return;
    // Replies the engine already has are recorded first; what is still owed is lost.
    this.engine.sync();
    this.#lose(kind, this.#readInFlight()[0]!);
    this.destroy();
  }

  retire(): void {
    if (this.#failed) return;
    this.#failed = true;
    this.run.live.delete(this);
    this.destroy();
  }

  destroy(): void {
    if (this.handle !== undefined) this.binding.benchDestroy(this.handle);
  }

  /** From the engine: the connection closed (the server left, a write failed, or we destroyed it). */
  closed(_status: number, owed: number): void {
    if (this.#failed || this.run.phase === 'done') return;
    // The server going away before the run is over is an error, whatever was in flight.
    this.engine.sync();
    this.#lose('closed', owed);
  }

  #lose(kind: BenchErrorKind, owed: number): void {
    this.#failed = true;
    this.run.errorsByKind[kind]++;
    this.run.live.delete(this);
    this.run.lost(owed);
  }

  #readInFlight(): Float64Array {
    if (this.handle !== undefined) this.binding.benchInFlight(this.handle, this.#inFlight);
    return this.#inFlight;
  }
}
