// The portable engine: a connection on Node's documented net.Socket, for every transport and setting.

import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { formatHostPort } from '../../core/address.js';
import { canonicalAddress } from '../limits.js';
import { systemErrorCode } from '../../core/errors.js';
import { Connection, type ConnectionContext } from '../connection.js';
import type { ServerEngine } from './engine.js';

export const portableEngine: ServerEngine = {
  name: 'portable',
  adopt: (id, socket, remoteAddress, remotePort, context) =>
    new StreamConnection(id, socket, remoteAddress, remotePort, context),
  addTotalsTo: (stats) => stats,
};

// Listeners are shared functions (one set for all connections, `this` is the socket) rather than
// closures per connection: less memory per idle connection, and V8 sees one call site shape.
const kConnection = Symbol('echoplex.connection');
type OwnedSocket = Socket & { [kConnection]: StreamConnection };

export class StreamConnection extends Connection {
  readonly socket: Socket;

  constructor(id: number, socket: Socket, remoteAddress: string, remotePort: number, context: ConnectionContext) {
    super(id, remoteAddress, remotePort, context);
    this.socket = socket;
    (socket as OwnedSocket)[kConnection] = this;
    socket.on('data', onData);
    socket.on('drain', onDrain);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.on('close', onClose);
    // Plain TCP and Unix listeners hand sockets over paused, so that the native engine could
    // take them before a byte was read: this one is ours, start reading.
    socket.resume();
  }

  protected get transportPendingBytes(): number {
    return this.socket.writableLength;
  }

  protected holdInput(): void {
    this.socket.pause();
  }

  protected releaseInput(): void {
    // A full write queue keeps it paused until 'drain'.
    if (!this.socket.writableNeedDrain) this.socket.resume();
  }

  /** The write queue drained: read again, unless delayed chunks still hold input. */
  static onDrain(socket: Socket): void {
    if (!owner(socket).inputHeld) socket.resume();
  }

  finish(): void {
    if (!this.socket.writableEnded) this.socket.end();
  }

  protected destroy(): void {
    this.socket.destroy();
  }

  protected localEndpoint(): string | undefined {
    return StreamConnection.localEndpointOf(this.socket);
  }

  protected override transportDetails(): Record<string, unknown> {
    return StreamConnection.transportDetailsOf(this.socket, this.clientCertificateSubject);
  }

  /** The address `socket`'s client reached, as `host:port` (a path for Unix sockets). */
  static localEndpointOf(socket: Socket): string | undefined {
    const { localAddress, localPort } = socket;
    if (localAddress === undefined) return undefined;
    return localPort === undefined ? localAddress : formatHostPort(canonicalAddress(localAddress), localPort);
  }

  /** What the hello line says of a TLS socket; nothing for a plain one. */
  static transportDetailsOf(socket: Socket, clientSubject: string | undefined): Record<string, unknown> {
    if (!(socket instanceof TLSSocket)) return {};
    return {
      tls: {
        protocol: socket.getProtocol(),
        cipher: socket.getCipher()?.name ?? null,
        sni: (socket as TLSSocket & { servername?: string | false }).servername || null,
        alpn: socket.alpnProtocol || null,
        clientSubject: clientSubject ?? null,
      },
    };
  }

  protected reset(): void {
    // SO_LINGER 0 and close: the peer gets a TCP RST. (A TLS socket resets the TCP under it.)
    this.socket.resetAndDestroy();
  }

  protected get outputEnded(): boolean {
    return this.socket.writableEnded;
  }

  protected send(reply: Buffer): void {
    // write() returns false once the queue passes the socket's high-water mark (set to
    // maxBuffered by the server): stop reading until 'drain', so a client that never reads
    // cannot grow our memory.
    if (!this.socket.write(reply)) {
      this.socket.pause();
      this.context.stats.backpressurePauses++;
    }
  }

  static onData(socket: Socket, chunk: Buffer): void {
    owner(socket).received(chunk);
  }

  static onEnd(socket: Socket): void {
    owner(socket).inputEnded();
  }

  static onError(socket: Socket, err: Error): void {
    owner(socket).failed(systemErrorCode(err), err.message);
  }

  static onClose(socket: Socket): void {
    // Bytes still queued when the socket died never reached the peer.
    owner(socket).closed(socket.writableLength);
  }
}

function owner(socket: Socket): StreamConnection {
  return (socket as OwnedSocket)[kConnection];
}

function onData(this: Socket, chunk: Buffer): void {
  StreamConnection.onData(this, chunk);
}

function onDrain(this: Socket): void {
  StreamConnection.onDrain(this);
}

function onEnd(this: Socket): void {
  // Half-close: the peer sent FIN. end() flushes every queued byte before our own FIN.
  StreamConnection.onEnd(this);
}

function onError(this: Socket, err: Error): void {
  StreamConnection.onError(this, err);
}

function onClose(this: Socket): void {
  StreamConnection.onClose(this);
}
