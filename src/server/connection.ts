// One client connection: echo what arrives, queue what cannot be sent yet, pause on backpressure.

import type { Socket } from 'node:net';
import { systemErrorCode } from '../errors.js';
import { describeBytes, type Logger } from '../ops/log.js';
import { formatHostPort } from './address.js';
import type { ServerStats } from './stats.js';
import type { Transform } from './transforms.js';

/** What a connection needs from the server that owns it. */
export interface ConnectionContext {
  readonly transform: Transform;
  readonly stats: ServerStats;
  readonly log: Logger;
  /** Per-event log lines (open, data, close) are on; checked once per event, not per field. */
  readonly logEvents: boolean;
  connectionClosed(connection: Connection): void;
}

// Listeners are shared functions (one set for all connections, `this` is the socket) rather than
// closures per connection: less memory per idle connection, and V8 sees one call site shape.
const kConnection = Symbol('echoplex.connection');
type OwnedSocket = Socket & { [kConnection]: Connection };

// Resets and broken pipes are a peer's ordinary way of leaving, not a server fault.
const PEER_GONE_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ETIMEDOUT']);

export class Connection {
  readonly id: number;
  readonly socket: Socket;
  readonly remoteAddress: string;
  readonly remotePort: number;
  bytesReceived = 0;
  bytesSent = 0;
  /** Bytes received at the last shutdown sweep (see shutdown.ts). */
  bytesAtLastSweep = 0;
  /** Traffic seen by the last idle sweep, and how many sweeps in a row saw none (see idle.ts). */
  trafficAtLastIdleSweep = 0;
  quietSweeps = 0;
  #context: ConnectionContext;
  #closeReason: string | undefined;

  constructor(id: number, socket: Socket, remoteAddress: string, remotePort: number, context: ConnectionContext) {
    this.id = id;
    this.socket = socket;
    this.remoteAddress = remoteAddress;
    this.remotePort = remotePort;
    this.#context = context;
    (socket as OwnedSocket)[kConnection] = this;
    socket.on('data', onData);
    socket.on('drain', onDrain);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.on('close', onClose);
  }

  get peer(): string {
    return formatHostPort(this.remoteAddress, this.remotePort);
  }

  /** Bytes moved in either direction: received, plus handed to the kernel. */
  get trafficCount(): number {
    return this.bytesReceived + this.socket.bytesWritten - this.socket.writableLength;
  }

  /** Bytes queued in user space, waiting for the kernel to take them. */
  get pendingBytes(): number {
    return this.socket.writableLength;
  }

  /** Sends every queued byte, then FIN; the socket closes when the peer closes too. */
  finish(): void {
    if (!this.socket.writableEnded) this.socket.end();
  }

  /** Closes at once, dropping whatever is still queued. */
  abort(reason: string): void {
    this.#closeReason ??= reason;
    this.socket.destroy();
  }

  receive(chunk: Buffer): void {
    const context = this.#context;
    const socket = this.socket;
    this.bytesReceived += chunk.length;
    context.stats.bytesReceived += chunk.length;
    if (context.logEvents) {
      context.log.info(
        { event: 'data', conn: this.id, peer: this.peer, bytes: chunk.length },
        `received ${chunk.length} bytes from ${this.peer} (#${this.id}): ${describeBytes(chunk)}`,
      );
    }
    // After our FIN (graceful shutdown) there is nowhere to echo to; late input is dropped.
    if (socket.writableEnded) return;
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
    // write() returns false once the queue passes the socket's high-water mark (set to
    // maxBuffered by the server): stop reading until 'drain', so a client that never reads
    // cannot grow our memory.
    if (!socket.write(reply)) {
      socket.pause();
      context.stats.backpressurePauses++;
    }
  }

  peerEnded(): void {
    // Half-close: the peer sent FIN. end() flushes every queued byte before our own FIN.
    this.finish();
  }

  failed(err: Error): void {
    const code = systemErrorCode(err);
    const context = this.#context;
    if (code !== undefined && PEER_GONE_CODES.has(code)) {
      context.stats.errors.reset++;
      this.#closeReason ??= `reset by peer (${code})`;
    } else {
      context.stats.errors.socket++;
      this.#closeReason ??= `error: ${err.message}`;
      context.log.warn(
        { event: 'error', kind: 'socket', conn: this.id, peer: this.peer, err: err.message, code },
        `socket error on ${this.peer} (#${this.id}): ${err.message}`,
      );
    }
  }

  closed(): void {
    const context = this.#context;
    // Bytes still queued when the socket died never reached the peer: do not count them sent.
    const unsent = this.socket.writableLength;
    this.bytesSent -= unsent;
    context.stats.bytesSent -= unsent;
    if (context.logEvents) {
      const reason = this.#closeReason ?? 'closed';
      context.log.info(
        {
          event: 'close',
          conn: this.id,
          peer: this.peer,
          reason,
          bytesReceived: this.bytesReceived,
          bytesSent: this.bytesSent,
        },
        `connection from ${this.peer} ${reason} (#${this.id}, ${this.bytesReceived} bytes in, ${this.bytesSent} out)`,
      );
    }
    context.connectionClosed(this);
  }
}

function owner(socket: Socket): Connection {
  return (socket as OwnedSocket)[kConnection];
}

function onData(this: Socket, chunk: Buffer): void {
  owner(this).receive(chunk);
}

function onDrain(this: Socket): void {
  this.resume();
}

function onEnd(this: Socket): void {
  owner(this).peerEnded();
}

function onError(this: Socket, err: Error): void {
  owner(this).failed(err);
}

function onClose(this: Socket): void {
  owner(this).closed();
}
