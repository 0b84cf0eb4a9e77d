// The native engine (native/echo_engine.c): C echoes plain TCP connections; JavaScript sees each open and close.

import type net from 'node:net';
import { errorName } from '../../core/errors.js';
import { addonBinding, platformConstants } from '../../native/addon.js';
import { descriptorOf } from '../../native/descriptor.js';
import { Connection, type ConnectionContext } from '../connection.js';
import type { ServerStats } from '../stats.js';
import type { AcceptHandler, ServerEngine } from './engine.js';
import { portableEngine } from './portable.js';

/** An engine's own opaque object; one per server, so that counters stay per server. */
type EngineHandle = { readonly __brand: 'echoplex.native.engine' };

/**
 * Connections are named by number (an id the engine hands out, never reused while it could
 * still be held), not by an object each: an idle connection then costs its C struct and its
 * Connection, and nothing in between.
 */
interface EchoBinding {
  /**
   * `onClose(id, status, bytesReceived, bytesSent)` runs once per adopted connection, after it
   * closed; status is 0 or a negative errno, the counts are final. The id names nothing after.
   */
  createEngine(
    upper: boolean,
    maxBuffered: number,
    onClose: (id: number, status: number, bytesReceived: number, bytesSent: number) => void,
    onAccept: OnAccept,
  ): EngineHandle;
  /** Takes over a duplicate of the connected TCP socket `fd` and echoes on it; the caller closes its own. Returns its id. Throws (code EMFILE, ...) if it cannot. */
  adopt(engine: EngineHandle, fd: number): number;
  /**
   * Accepts, from here on, the clients of the listening socket `fd` (on a duplicate: the caller
   * closes its own), each already echoed on when onAccept hears of it. Returns the listener's id.
   */
  acceptOn(engine: EngineHandle, fd: number): number;
  /** Closes that listening socket; its connections go on. Nothing once stopped. */
  stopAccepting(engine: EngineHandle, listenerId: number): void;
  /** Sends every pending byte, then FIN; nothing once closed. */
  finish(engine: EngineHandle, id: number): void;
  /** Closes at once, dropping pending bytes; nothing once closed. */
  destroy(engine: EngineHandle, id: number): void;
  /** Fills `out` with bytes received, bytes sent, bytes pending; false (and `out` untouched) once closed. */
  counters(engine: EngineHandle, id: number, out: Float64Array): boolean;
  /** Fills `out` with the engine's bytes received, bytes sent, backpressure pauses. */
  totals(engine: EngineHandle, out: Float64Array): void;
}

/**
 * `(listenerId, id, address, port)` for each client accepted in C (served from then on: destroy
 * it to turn it away), or `(listenerId, status)` with a negative errno when accepting failed.
 */
type OnAccept = (listenerId: number, idOrStatus: number, address?: string, port?: number) => void;

const binding = addonBinding<EchoBinding>([
  'createEngine',
  'adopt',
  'acceptOn',
  'stopAccepting',
  'finish',
  'destroy',
  'counters',
  'totals',
]);

/** The engine as its connections call it: one object shared by all of them, not two fields each. */
interface EngineRef {
  readonly binding: EchoBinding;
  readonly engine: EngineHandle;
}

/** Who hears of a listener's clients, and what they are served with. */
interface Acceptor {
  context: ConnectionContext;
  handler: AcceptHandler;
}

/** What the C side can do by itself: the built-in transforms on raw chunks. */
export interface NativeEchoSettings {
  upper: boolean;
  maxBuffered: number;
}

/**
 * One server's native engine: it adopts accepted TCP connections and keeps their byte counts,
 * which the server adds to its own counters when they are read. A socket it cannot take (no
 * descriptor left for its duplicate, say) is served by the portable engine instead.
 */
export class NativeEcho implements ServerEngine {
  readonly name = 'native';
  /** The binding and this server's engine in it, as every call takes them. */
  readonly #ref: EngineRef;
  readonly #totals = new Float64Array(3);
  /**
   * Open connections by their id's slot index, until their close callback: the engine hands out
   * the lowest free slots, so this stays a dense array, a word per connection (a Map costs several).
   */
  readonly #connections: Array<NativeConnection | undefined> = [];
  readonly #slots: number;
  /** Listening sockets accepted on in C, by listener id. */
  readonly #acceptors = new Map<number, Acceptor>();
  /**
   * The address the last client was shown by: clients mostly come from a few addresses, and
   * each would otherwise hold its own copy of the same string.
   */
  #lastAddress = '';

  /** Undefined where the addon lacks the echo engine. */
  static create(settings: NativeEchoSettings): NativeEcho | undefined {
    return binding === undefined ? undefined : new NativeEcho(binding, settings);
  }

  private constructor(echoBinding: EchoBinding, settings: NativeEchoSettings) {
    this.#slots = platformConstants()!.SLOT_INDEX_LIMIT;
    const engine = echoBinding.createEngine(
      settings.upper,
      settings.maxBuffered,
      (id, status, received, sent) => {
        const slot = id % this.#slots;
        const connection = this.#connections[slot];
        if (connection?.nativeId !== id) return;
        this.#connections[slot] = undefined;
        connection.nativeClosed(status, received, sent);
      },
      (listenerId, idOrStatus, address, port) => this.#accepted(listenerId, idOrStatus, address, port),
    );
    this.#ref = { binding: echoBinding, engine };
  }

  /** `address`, as the string the last client was shown by where it is the same. */
  #shown(address: string): string {
    if (address === this.#lastAddress) return this.#lastAddress;
    this.#lastAddress = address;
    return address;
  }

  #track(connection: NativeConnection): NativeConnection {
    this.#connections[connection.nativeId % this.#slots] = connection;
    return connection;
  }

  acceptOn(server: net.Server, context: ConnectionContext, handler: AcceptHandler): (() => void) | undefined {
    const fd = descriptorOf(server);
    if (fd === undefined) return undefined;
    let listenerId: number;
    try {
      listenerId = this.#ref.binding.acceptOn(this.#ref.engine, fd);
    } catch {
      return undefined;
    }
    this.#acceptors.set(listenerId, { context, handler });
    return () => {
      if (!this.#acceptors.delete(listenerId)) return;
      this.#ref.binding.stopAccepting(this.#ref.engine, listenerId);
    };
  }

  #accepted(listenerId: number, idOrStatus: number, address: string | undefined, port: number | undefined): void {
    const acceptor = this.#acceptors.get(listenerId);
    if (address === undefined || port === undefined) {
      const code = errorName(idOrStatus);
      acceptor?.handler.failed(Object.assign(new Error(`accept failed: ${code}`), { code }));
      return;
    }
    const nativeId = idOrStatus;
    const turnAway = () => this.#ref.binding.destroy(this.#ref.engine, nativeId);
    if (acceptor === undefined) {
      turnAway();
      return;
    }
    acceptor.handler.accepted(
      address,
      port,
      (id, shownAddress) =>
        this.#track(new NativeConnection(id, this.#shown(shownAddress), port, acceptor.context, this.#ref, nativeId)),
      turnAway,
    );
  }

  adopt(
    id: number,
    socket: net.Socket,
    remoteAddress: string,
    remotePort: number,
    context: ConnectionContext,
  ): Connection {
    const fd = descriptorOf(socket);
    if (fd !== undefined) {
      try {
        const nativeId = this.#ref.binding.adopt(this.#ref.engine, fd);
        const connection = this.#track(
          new NativeConnection(id, this.#shown(remoteAddress), remotePort, context, this.#ref, nativeId),
        );
        // The engine holds its own duplicate: closing ours sends nothing to the peer.
        socket.destroy();
        return connection;
      } catch {
        // The socket is untouched; it is served the portable way.
      }
    }
    return portableEngine.adopt(id, socket, remoteAddress, remotePort, context);
  }

  addTotalsTo(stats: ServerStats): ServerStats {
    this.#ref.binding.totals(this.#ref.engine, this.#totals);
    stats.bytesReceived += this.#totals[0]!;
    stats.bytesSent += this.#totals[1]!;
    stats.backpressurePauses += this.#totals[2]!;
    return stats;
  }
}

/** Read by every connection's counter getters in turn: nothing keeps a reference across calls. */
const counters = new Float64Array(3);

export class NativeConnection extends Connection {
  readonly #engine: EngineRef;
  /** The engine's id for it. */
  readonly nativeId: number;
  #writeEnded = false;
  #closing = false;

  constructor(
    id: number,
    remoteAddress: string,
    remotePort: number,
    context: ConnectionContext,
    engine: EngineRef,
    nativeId: number,
  ) {
    super(id, remoteAddress, remotePort, context);
    this.#engine = engine;
    this.nativeId = nativeId;
  }

  /** Fills `counters` from the engine; false once closed, when the base class holds the final counts. */
  #read(): boolean {
    return this.#engine.binding.counters(this.#engine.engine, this.nativeId, counters);
  }

  override get bytesReceived(): number {
    return this.#read() ? counters[0]! : this.receivedBytes;
  }

  override get bytesSent(): number {
    return this.#read() ? counters[1]! : this.sentBytes;
  }

  // The idle sweep reads this for every connection each time: one call into the engine, not three.
  override get trafficCount(): number {
    return this.#read() ? counters[0]! + counters[1]! - counters[2]! : this.receivedBytes + this.sentBytes;
  }

  protected get transportPendingBytes(): number {
    return this.#read() ? counters[2]! : 0;
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
    this.#engine.binding.finish(this.#engine.engine, this.nativeId);
  }

  // The hello line keeps connections on the portable engine (server.ts): not asked of this one.
  protected localEndpoint(): string | undefined {
    return undefined;
  }

  // Faults keep connections on the portable engine (server.ts): no reset is asked of this one.
  protected reset(): void {
    this.destroy();
  }

  protected destroy(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#engine.binding.destroy(this.#engine.engine, this.nativeId);
  }

  protected get outputEnded(): boolean {
    return this.#writeEnded || this.#closing;
  }

  protected send(): void {
    // Only received() and inputEnded() send, and the engine answers in their place.
    throw new Error('a native connection is answered by its engine, not from JavaScript');
  }

  /** The engine closed the connection; `status` is the error that ended it, or 0; the counts are final. */
  nativeClosed(status: number, bytesReceived: number, bytesSent: number): void {
    this.#closing = true;
    this.receivedBytes = bytesReceived;
    this.sentBytes = bytesSent;
    if (status < 0) {
      const code = errorName(status);
      this.failed(code, `${code} (${status})`);
    }
    // The engine's counts already leave out what was never sent.
    this.closed(0);
  }
}
