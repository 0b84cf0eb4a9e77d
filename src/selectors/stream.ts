// The byte streams under a selectors Socket: Node's net.Socket, the portable engine (the native one
// adopts its descriptor, see native-plane.ts). Socket keeps Python's semantics on top.

import { readFileSync } from 'node:fs';
import net from 'node:net';
import { descriptorOf } from '../native/descriptor.js';

export type Endpoint = readonly [host: string, port: number];

export interface StreamEvents {
  data(chunk: Buffer): void;
  end(): void;
  /** The send queue emptied. */
  drain(): void;
  error(err: NodeJS.ErrnoException): void;
  close(): void;
}

/** A connected byte stream. It starts paused: nothing is read until `resume()`. */
export interface ByteStream {
  /** Bytes accepted by `write` that the kernel has not taken yet. */
  readonly writableLength: number;
  readonly destroyed: boolean;
  /** The error a write met, set as soon as the kernel refused it (the 'error' event follows later). */
  readonly errored: NodeJS.ErrnoException | null;
  readonly paused: boolean;
  /** The OS descriptor, where known. */
  readonly fd: number | undefined;
  listen(events: StreamEvents): void;
  /** Queues `bytes`, which the stream may keep until they are sent. */
  write(bytes: Buffer): void;
  pause(): void;
  resume(): void;
  /** TCP_NODELAY (on by default, as everywhere in Node). */
  setNoDelay(on: boolean): void;
  /** SO_KEEPALIVE, with the kernel's default idle time before the first probe. */
  setKeepAlive(on: boolean): void;
  /** FIN after everything queued. */
  end(): void;
  /** FIN after everything queued, then close. */
  endAndClose(): void;
  destroy(): void;
  localEndpoint(): Endpoint | undefined;
  remoteEndpoint(): Endpoint | undefined;
}

/** A listening socket that hands over each new connection as a paused ByteStream. */
export interface ByteListener {
  readonly endpoint: Endpoint;
  readonly fd: number | undefined;
  close(): void;
}

export interface Transport {
  listen(
    host: string,
    port: number,
    backlog: number,
    onConnection: (stream: ByteStream) => void,
  ): Promise<ByteListener>;
  connect(host: string, port: number): Promise<ByteStream>;
}

// libuv sets the idle time along with SO_KEEPALIVE; Python's SO_KEEPALIVE leaves the kernel's.
const KEEPALIVE_IDLE_SECONDS = ((): number => {
  try {
    const seconds = Number.parseInt(readFileSync('/proc/sys/net/ipv4/tcp_keepalive_time', 'utf8'), 10);
    return seconds > 0 ? seconds : 7200;
  } catch {
    return 7200; // the Linux default, and the RFC 1122 minimum of two hours
  }
})();

class NetStream implements ByteStream {
  readonly #socket: net.Socket;

  constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.pause();
  }

  get writableLength(): number {
    return this.#socket.writableLength;
  }

  get destroyed(): boolean {
    return this.#socket.destroyed;
  }

  get errored(): NodeJS.ErrnoException | null {
    return this.#socket.errored as NodeJS.ErrnoException | null;
  }

  get paused(): boolean {
    return this.#socket.isPaused();
  }

  get fd(): number | undefined {
    return descriptorOf(this.#socket);
  }

  listen(events: StreamEvents): void {
    const socket = this.#socket;
    socket.removeAllListeners('error');
    socket.on('data', (chunk: Buffer) => events.data(chunk));
    socket.on('end', () => events.end());
    socket.on('drain', () => events.drain());
    socket.on('error', (err: NodeJS.ErrnoException) => events.error(err));
    socket.on('close', () => events.close());
  }

  write(bytes: Buffer): void {
    this.#socket.write(bytes);
  }

  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    this.#socket.resume();
  }

  setNoDelay(on: boolean): void {
    this.#socket.setNoDelay(on);
  }

  setKeepAlive(on: boolean): void {
    this.#socket.setKeepAlive(on, KEEPALIVE_IDLE_SECONDS * 1000);
  }

  end(): void {
    this.#socket.end();
  }

  endAndClose(): void {
    // The peer may still be sending: once our queued bytes are out, release everything.
    this.#socket.removeAllListeners('data');
    this.#socket.destroySoon();
  }

  destroy(): void {
    this.#socket.destroy();
  }

  localEndpoint(): Endpoint | undefined {
    const { localAddress, localPort } = this.#socket;
    return localAddress !== undefined && localPort !== undefined ? [localAddress, localPort] : undefined;
  }

  remoteEndpoint(): Endpoint | undefined {
    const { remoteAddress, remotePort } = this.#socket;
    return remoteAddress !== undefined && remotePort !== undefined ? [remoteAddress, remotePort] : undefined;
  }
}

export const transport: Transport = {
  async listen(host, port, backlog, onConnection) {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    server.on('connection', (socket) => {
      // Until accept() takes it, a reset is only noted (the Socket sees it as an ended stream).
      socket.on('error', () => {});
      onConnection(new NetStream(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, backlog }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // Accept errors (EMFILE...) are not this socket's failure; Node retries on the next connection.
    server.on('error', () => {});
    const address = server.address() as net.AddressInfo;
    return { endpoint: [address.address, address.port], fd: descriptorOf(server), close: () => server.close() };
  },
  connect(host, port) {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port, allowHalfOpen: true, noDelay: true });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        socket.on('error', () => {});
        resolve(new NetStream(socket));
      });
    });
  },
};
