// One client connection: what every transport shares (counters, transform, logs, failures).

import { describeBytes, type Logger } from '../ops/log.js';
import { formatHostPort } from './address.js';
import type { ServerStats } from './stats.js';
import type { Transform } from './transforms.js';

/** What a connection needs from the server that owns it. */
export interface ConnectionContext {
  readonly transform: Transform;
  /** The transform is a built-in one: it keeps no reference to a chunk once it returns. */
  readonly transformIsBuiltIn: boolean;
  readonly stats: ServerStats;
  readonly log: Logger;
  /** Per-event log lines (open, data, close) are on; checked once per event, not per field. */
  readonly logEvents: boolean;
  /** Unsent bytes above which a connection stops reading until its peer catches up. */
  readonly maxBuffered: number;
  connectionClosed(connection: Connection): void;
}

// Resets and broken pipes are a peer's ordinary way of leaving, not a server fault.
const PEER_GONE_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ETIMEDOUT']);

/**
 * The transport-independent half of a connection. Subclasses move bytes (a net.Socket, or
 * libuv's TCP handle directly) and call `received`, `failed` and `closed`; this class keeps
 * the counters, applies the transform, and writes the log lines.
 */
export abstract class Connection {
  readonly id: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Bytes received, and bytes accepted for sending (minus any dropped at an abrupt close). */
  bytesReceived = 0;
  bytesSent = 0;
  /** Bytes received at the last shutdown sweep (see shutdown.ts). */
  bytesAtLastSweep = 0;
  /** Traffic seen by the last idle sweep, and how many sweeps in a row saw none (see idle.ts). */
  trafficAtLastIdleSweep = 0;
  quietSweeps = 0;
  protected readonly context: ConnectionContext;
  #closeReason: string | undefined;

  constructor(id: number, remoteAddress: string, remotePort: number, context: ConnectionContext) {
    this.id = id;
    this.remoteAddress = remoteAddress;
    this.remotePort = remotePort;
    this.context = context;
  }

  get peer(): string {
    return formatHostPort(this.remoteAddress, this.remotePort);
  }

  /** Bytes moved in either direction: received, plus handed to the kernel. */
  get trafficCount(): number {
    return this.bytesReceived + this.bytesSent - this.pendingBytes;
  }

  /** Bytes accepted for sending that the kernel has not taken yet. */
  abstract get pendingBytes(): number;

  /** Sends every pending byte, then FIN; the connection closes once the peer closes too. */
  abstract finish(): void;

  /** Closes at once, dropping whatever is still pending. */
  abort(reason: string): void {
    this.#closeReason ??= reason;
    this.destroy();
  }

  protected abstract destroy(): void;

  /** True once our side has sent FIN: late input is dropped, there is nowhere to echo it. */
  protected abstract get outputEnded(): boolean;

  /** Queues `reply` for sending; the subclass applies backpressure past `maxBuffered`. */
  protected abstract send(reply: Buffer): void;

  /** Handles one received chunk, which the connection owns (the transform may change it in place). */
  protected received(chunk: Buffer): void {
    const context = this.context;
    this.bytesReceived += chunk.length;
    context.stats.bytesReceived += chunk.length;
    if (context.logEvents) {
      context.log.info(
        { event: 'data', conn: this.id, peer: this.peer, bytes: chunk.length },
        `received ${chunk.length} bytes from ${this.peer} (#${this.id}): ${describeBytes(chunk)}`,
      );
    }
    if (this.outputEnded) return;
    let reply: Buffer;
    try {
      reply = context.transform(chunk);
    } catch (err) {
      context.stats.errors.transform++;
      context.log.error(
        { event: 'error', kind: 'transform', conn: this.id, peer: this.peer, err: String(err) },
        `transform failed for ${this.peer} (#${this.id}), closing it: ${String(err)}`,
      );
      this.abort('transform error');
      return;
    }
    this.bytesSent += reply.length;
    context.stats.bytesSent += reply.length;
    this.send(reply);
  }

  /** Counts a transport error by kind; the subclass closes the connection. */
  protected failed(code: string | undefined, message: string): void {
    const context = this.context;
    if (code !== undefined && PEER_GONE_CODES.has(code)) {
      context.stats.errors.reset++;
      this.#closeReason ??= `reset by peer (${code})`;
    } else {
      context.stats.errors.socket++;
      this.#closeReason ??= `error: ${message}`;
      context.log.warn(
        { event: 'error', kind: 'socket', conn: this.id, peer: this.peer, err: message, code },
        `socket error on ${this.peer} (#${this.id}): ${message}`,
      );
    }
  }

  /** Called once, when the transport has closed; `unsent` bytes never reached the peer. */
  protected closed(unsent: number): void {
    const context = this.context;
    this.bytesSent -= unsent;
    context.stats.bytesSent -= unsent;
    if (context.logEvents) {
      const reason = this.#closeReason ?? 'closed';
      context.log.info(
        { event: 'close', conn: this.id, peer: this.peer, reason, bytesReceived: this.bytesReceived, bytesSent: this.bytesSent },
        `connection from ${this.peer} ${reason} (#${this.id}, ${this.bytesReceived} bytes in, ${this.bytesSent} out)`,
      );
    }
    context.connectionClosed(this);
  }
}
