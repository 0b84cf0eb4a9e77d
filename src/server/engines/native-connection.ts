// A connection the native engine serves: the JavaScript record of it, and the binding's calls it makes.

import { errorName } from '../../core/errors.js';
import { formatHostPort } from '../../core/address.js';
import { Connection, type ConnectionContext } from '../connection.js';
import { canonicalAddress } from '../limits.js';

/** An engine's own opaque object; one per server, so that counters stay per server. */
export type EngineHandle = { readonly __brand: 'echoplex.native.engine' };

/** What `send` sends: bytes as they are (a hello line, HTTP), or a WebSocket message. None is counted in C: JavaScript counts what it sends. */
export const SendKind = { Bytes: 0, Text: 1, Binary: 2 } as const;
export type SendKind = (typeof SendKind)[keyof typeof SendKind];

/**
 * Connections are named by number (an id the engine hands out, never reused while it could
 * still be held), not by an object each: an idle connection then costs its C struct and its
 * Connection, and nothing in between.
 */
export interface EchoBinding {
  /**
   * `onClose(id, status, bytesReceived, bytesSent[, closeCode, wsError])` runs once per
   * connection JavaScript heard of, after it closed; status is 0 or a negative errno, the counts
   * are final; WebSocket listeners' connections add the close code (0: none) and the protocol
   * error (native/websocket.h). `onData` has the bytes before a WebSocket upgrade;
   * `onTlsFailed` a handshake that did not finish.
   */
  createEngine(
    upper: boolean,
    maxBuffered: number,
    onClose: (
      id: number,
      status: number,
      bytesReceived: number,
      bytesSent: number,
      closeCode?: number,
      wsError?: number,
    ) => void,
    onAccept: OnAccept,
    onData: (id: number, bytes: Buffer) => void,
    onTlsFailed: (listenerId: number, address: string, port: number, reason: string) => void,
  ): EngineHandle;
  /** Takes over a duplicate of the connected TCP socket `fd` and echoes on it; the caller closes its own. Returns its id. Throws (code EMFILE, ...) if it cannot. */
  adopt(engine: EngineHandle, fd: number): number;
  /**
   * Accepts, from here on, the clients of the listening socket `fd` (on a duplicate: the caller
   * closes its own), each already served when onAccept hears of it (over TLS, once its
   * handshake is done). Returns the listener's id.
   */
  acceptOn(engine: EngineHandle, fd: number, tls: boolean, websocket: boolean): number;
  /** Closes that listening socket; its connections go on. Nothing once stopped. */
  stopAccepting(engine: EngineHandle, listenerId: number): void;
  /** Sends every pending byte, then FIN; nothing once closed. */
  finish(engine: EngineHandle, id: number): void;
  /** Closes at once, dropping pending bytes; nothing once closed. */
  destroy(engine: EngineHandle, id: number): void;
  /** Fills `out` with bytes received, sent, pending, and control frames; false (and `out` untouched) once closed. */
  counters(engine: EngineHandle, id: number, out: Float64Array): boolean;
  /** Fills `out` with the engine's bytes received, bytes sent, backpressure pauses, WebSocket messages. */
  totals(engine: EngineHandle, out: Float64Array): void;
  /** Why TLS cannot run in C in this process (OpenSSL 3 not exported by Node), or null. */
  tlsUnavailable(): string | null;
  /** The context TLS listeners serve with (PEM; ALPN in wire format). Throws ERR_TLS_CONTEXT with OpenSSL's reason. */
  setTls(
    engine: EngineHandle,
    cert: Buffer,
    key: Buffer,
    ca: Buffer | null,
    alpn: Buffer | null,
    handshakeTimeoutMs: number,
  ): void;
  /** The largest message WebSocket listeners take; a larger one closes with 1009. */
  setWebSocket(engine: EngineHandle, maxMessage: number): void;
  send(engine: EngineHandle, id: number, bytes: Buffer, kind: SendKind): void;
  /** Answers an upgrade with `response`; the connection then speaks frames, starting with `rest`. */
  upgrade(engine: EngineHandle, id: number, response: Buffer, rest: Buffer): void;
  /** A close frame with `code` after what is queued (FIN before the upgrade). */
  closeWebSocket(engine: EngineHandle, id: number, code: number): void;
  /** `[host, port]` the client reached; undefined once closed. */
  localAddress(engine: EngineHandle, id: number): [string, number] | undefined;
}

/**
 * `(listenerId, id, address, port[, tls])` for each client accepted in C (served from then on:
 * destroy it to turn it away), with what its TLS handshake settled; or `(listenerId, status)`
 * with a negative errno when accepting failed.
 */
export type OnAccept = (
  listenerId: number,
  idOrStatus: number,
  address?: string,
  port?: number,
  tls?: Array<string | null>,
) => void;

/** The engine as its connections call it: one object shared by all of them, not two fields each. */
export interface EngineRef {
  readonly binding: EchoBinding;
  readonly engine: EngineHandle;
}

/** What a TLS handshake settled, as the hello line shows it. */
export interface TlsDetails {
  protocol: string | null;
  cipher: string | null;
  sni: string | null;
  alpn: string | null;
}

/** Read by every connection's counter getters in turn: nothing keeps a reference across calls. */
export const counters = new Float64Array(4);

export class NativeConnection extends Connection {
  protected readonly engine: EngineRef;
  /** The engine's id for it. */
  readonly nativeId: number;
  /** What its TLS handshake settled; undefined on plain TCP. */
  tls: TlsDetails | undefined;
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
    this.engine = engine;
    this.nativeId = nativeId;
  }

  /** Fills `counters` from the engine; false once closed, when the base class holds the final counts. */
  protected readCounters(): boolean {
    return this.engine.binding.counters(this.engine.engine, this.nativeId, counters);
  }

  override get bytesReceived(): number {
    return this.readCounters() ? counters[0]! : this.receivedBytes;
  }

  override get bytesSent(): number {
    return this.readCounters() ? counters[1]! : this.sentBytes;
  }

  // The idle sweep reads this for every connection each time: one call into the engine, not three.
  override get trafficCount(): number {
    return this.readCounters() ? counters[0]! + counters[1]! - counters[2]! : this.receivedBytes + this.sentBytes;
  }

  protected get transportPendingBytes(): number {
    return this.readCounters() ? counters[2]! : 0;
  }

  // Input is held only for --delay and --fault stall, which choose the portable engine (choice.ts).
  protected holdInput(): void {
    throw new Error('a native connection has no delay to hold its input for');
  }

  protected releaseInput(): void {
    throw new Error('a native connection has no delay to hold its input for');
  }

  finish(): void {
    if (this.#writeEnded || this.#closing) return;
    this.#writeEnded = true;
    this.engine.binding.finish(this.engine.engine, this.nativeId);
  }

  protected localEndpoint(): string | undefined {
    const local = this.engine.binding.localAddress(this.engine.engine, this.nativeId);
    return local === undefined ? undefined : formatHostPort(canonicalAddress(local[0]), local[1]);
  }

  protected override transportDetails(): Record<string, unknown> {
    if (this.tls === undefined) return {};
    return { tls: { ...this.tls, clientSubject: this.clientCertificateSubject ?? null } };
  }

  // Faults choose the portable engine (choice.ts): no reset is asked of this one.
  protected reset(): void {
    this.destroy();
  }

  protected destroy(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.engine.binding.destroy(this.engine.engine, this.nativeId);
  }

  protected get outputEnded(): boolean {
    return this.#writeEnded || this.#closing;
  }

  /** Only the hello line is sent from JavaScript: the engine answers everything else itself. */
  protected send(reply: Buffer): void {
    this.engine.binding.send(this.engine.engine, this.nativeId, reply, SendKind.Bytes);
  }

  /** The engine closed the connection; `status` is the error that ended it, or 0; the counts are final. */
  nativeClosed(status: number, bytesReceived: number, bytesSent: number, _closeCode: number, _wsError: number): void {
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
