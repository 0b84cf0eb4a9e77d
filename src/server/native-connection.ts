// A connection echoed by the native engine (native/echo_engine.c): JavaScript sees it open and close, no message in between.

import { Connection, type ConnectionContext } from './connection.js';
import type { EngineHandle, NativeEngineBinding, NativeHandle } from './native-engine.js';
import { errorName, type TcpHandle } from './raw-tcp.js';
import type { ServerStats } from './stats.js';

/**
 * One server's native engine: it adopts accepted TCP connections and keeps their byte counts,
 * which the server adds to its own counters when they are read.
 */
export class NativeEcho {
  readonly #binding: NativeEngineBinding;
  readonly #engine: EngineHandle;
  readonly #totals = new Float64Array(3);

  constructor(binding: NativeEngineBinding, options: { upper: boolean; maxBuffered: number }) {
    this.#binding = binding;
    this.#engine = binding.createEngine(options.upper, options.maxBuffered, onNativeClose);
  }

  /**
   * Hands the accepted `handle` to the engine and closes the JavaScript side of it. Throws
   * (EMFILE when descriptors run out, say) with the handle untouched, for the caller to serve
   * it another way.
   */
  adopt(id: number, handle: TcpHandle, remoteAddress: string, remotePort: number, context: ConnectionContext): NativeConnection {
    const connection = new NativeConnection(id, remoteAddress, remotePort, context, this.#binding, this.#engine, handle);
    handle.close();
    return connection;
  }

  /** Adds the engine's byte counts and backpressure pauses to `stats` (a copy being reported). */
  addTotalsTo(stats: ServerStats): ServerStats {
    this.#binding.totals(this.#engine, this.#totals);
    stats.bytesReceived += this.#totals[0]!;
    stats.bytesSent += this.#totals[1]!;
    stats.backpressurePauses += this.#totals[2]!;
    return stats;
  }
}

/** Read by every connection's counter getters in turn: nothing keeps a reference across calls. */
const counters = new Float64Array(3);

export class NativeConnection extends Connection {
  readonly #binding: NativeEngineBinding;
  readonly #native: NativeHandle;
  /** Kept alive while any of its connections is: its close handler must outlive them. */
  readonly #engine: EngineHandle;
  #writeEnded = false;
  #closing = false;

  constructor(id: number, remoteAddress: string, remotePort: number, context: ConnectionContext, binding: NativeEngineBinding, engine: EngineHandle, handle: TcpHandle) {
    super(id, remoteAddress, remotePort, context);
    this.#binding = binding;
    this.#engine = engine;
    this.#native = binding.adopt(this.#engine, handle.fd, this);
  }

  override get bytesReceived(): number {
    this.#binding.counters(this.#native, counters);
    return counters[0]!;
  }

  override get bytesSent(): number {
    this.#binding.counters(this.#native, counters);
    return counters[1]!;
  }

  // The idle sweep reads this for every connection each time: one call into the engine, not three.
  override get trafficCount(): number {
    this.#binding.counters(this.#native, counters);
    return counters[0]! + counters[1]! - counters[2]!;
  }

  protected get transportPendingBytes(): number {
    this.#binding.counters(this.#native, counters);
    return counters[2]!;
  }

  // Input is held only for --delay, and the engine never takes a delayed connection (server.ts).
  protected holdInput(): void {
    throw new Error('a native connection has no delay to hold its input for');
  }

  protected releaseInput(): void {
    throw new Error('a native connection has no delay to hold its input for');
  }

  finish(): void {
    if (this.#writeEnded || this.#closing) return;
    this.#writeEnded = true;
    this.#binding.finish(this.#native);
  }

  protected destroy(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#binding.destroy(this.#native);
  }

  protected get outputEnded(): boolean {
    return this.#writeEnded || this.#closing;
  }

  protected send(): void {
    // Only received() and inputEnded() send, and the engine answers in their place.
    throw new Error('a native connection is answered by its engine, not from JavaScript');
  }

  /** The engine closed the connection; `status` is the error that ended it, or 0. */
  nativeClosed(status: number): void {
    this.#closing = true;
    if (status < 0) {
      const code = errorName(status);
      this.failed(code, `${code} (${status})`);
    }
    // The engine's counts already leave out what was never sent.
    this.closed(0);
  }
}

function onNativeClose(token: object, status: number): void {
  (token as NativeConnection).nativeClosed(status);
}
