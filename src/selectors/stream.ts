// The byte streams under a selectors Socket: libuv's TCP handle directly where this Node offers
// it (see server/raw-tcp.ts), Node's net.Socket otherwise. Socket keeps Python's semantics on top.

import { readFileSync } from 'node:fs';
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import { errorName, rawTcp, writeToHandle, WRITE_DONE, type RawTcp, type ShutdownRequest, type TcpHandle, type WriteRequest } from '../server/raw-tcp.js';

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
  listen(host: string, port: number, backlog: number, onConnection: (stream: ByteStream) => void): Promise<ByteListener>;
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

function systemError(status: number, syscall: string): NodeJS.ErrnoException {
  const code = errorName(status);
  return Object.assign(new Error(`${syscall} ${code}`), { code, errno: status, syscall });
}

// ---- libuv's TCP handle --------------------------------------------------------------------

const kOwner = Symbol('echoplex.selectors.rawStream');
type OwnedHandle = TcpHandle & { [kOwner]: RawStream };
const READ_BUFFER_BYTES = 64 * 1024;
let sharedReadBuffer: Buffer | undefined;

class RawStream implements ByteStream {
  readonly #handle: TcpHandle;
  readonly #raw: RawTcp;
  #events: StreamEvents | undefined;
  #pending = 0;
  #reading = false;
  #ended = false;
  #closeWhenFlushed = false;
  #shutdownWhenFlushed = false;
  #destroyed = false;
  #local: Endpoint | undefined;
  #remote: Endpoint | undefined;

  constructor(handle: TcpHandle, raw: RawTcp) {
    this.#handle = handle;
    this.#raw = raw;
    (handle as OwnedHandle)[kOwner] = this;
    handle.onread = onRawRead;
    handle.setNoDelay(true);
    sharedReadBuffer ??= Buffer.allocUnsafe(READ_BUFFER_BYTES);
    handle.useUserBuffer(sharedReadBuffer);
  }

  get writableLength(): number {
    return this.#pending;
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  get paused(): boolean {
    return !this.#reading;
  }

  get fd(): number | undefined {
    const fd = (this.#handle as unknown as { fd?: unknown }).fd;
    return typeof fd === 'number' && fd >= 0 ? fd : undefined;
  }

  listen(events: StreamEvents): void {
    this.#events = events;
  }

  write(bytes: Buffer): void {
    if (this.#destroyed || bytes.length === 0) return;
    const result = writeToHandle(this.#raw, this.#handle, bytes, this, onRawWriteComplete);
    if (result === WRITE_DONE) return;
    if (result < 0) return this.#fail(result, 'write');
    this.#pending += bytes.length;
  }

  writeComplete(req: WriteRequest, status: number): void {
    this.#pending -= req.bytes;
    req.buffer = null;
    if (this.#destroyed) return;
    if (status < 0) return this.#fail(status, 'write');
    if (this.#pending > 0) return;
    if (this.#shutdownWhenFlushed) this.#shutdown();
    this.#events?.drain();
  }

  pause(): void {
    if (!this.#reading) return;
    this.#handle.readStop();
    this.#reading = false;
  }

  resume(): void {
    if (this.#reading || this.#destroyed || this.#ended) return;
    const status = this.#handle.readStart();
    if (status < 0) return this.#fail(status, 'read');
    this.#reading = true;
  }

  setNoDelay(on: boolean): void {
    if (!this.#destroyed) this.#handle.setNoDelay(on);
  }

  setKeepAlive(on: boolean): void {
    if (!this.#destroyed) this.#handle.setKeepAlive(on, KEEPALIVE_IDLE_SECONDS);
  }

  end(): void {
    if (this.#destroyed) return;
    if (this.#pending === 0) this.#shutdown();
    else this.#shutdownWhenFlushed = true;
  }

  endAndClose(): void {
    this.#closeWhenFlushed = true;
    this.end();
  }

  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#reading = false;
    this.#handle.close(() => this.#events?.close());
  }

  localEndpoint(): Endpoint | undefined {
    return (this.#local ??= endpointOf(this.#handle, 'getsockname'));
  }

  remoteEndpoint(): Endpoint | undefined {
    return (this.#remote ??= endpointOf(this.#handle, 'getpeername'));
  }

  onRead(): void {
    const nread = this.#raw.lastReadResult();
    if (nread > 0) {
      // Copied: the chunk waits for recv() while the shared buffer takes the next read.
      this.#events?.data(Buffer.from(sharedReadBuffer!.subarray(0, nread)));
    } else if (nread === this.#raw.EOF) {
      this.#ended = true;
      this.pause();
      this.#events?.end();
    } else if (nread < 0) {
      this.#fail(nread, 'read');
    }
  }

  #shutdown(): void {
    this.#shutdownWhenFlushed = false;
    const req = this.#raw.newShutdownRequest();
    req.handle = this.#handle;
    req.owner = this;
    req.oncomplete = onRawShutdownComplete;
    if (this.#handle.shutdown(req) < 0 && this.#closeWhenFlushed) this.destroy();
  }

  shutdownComplete(): void {
    if (this.#closeWhenFlushed) this.destroy();
  }

  #fail(status: number, syscall: string): void {
    if (this.#destroyed) return;
    this.#events?.error(systemError(status, syscall));
    this.destroy();
  }
}

function onRawRead(this: TcpHandle): void {
  (this as OwnedHandle)[kOwner].onRead();
}

function onRawWriteComplete(this: WriteRequest, status: number): void {
  (this.owner as RawStream).writeComplete(this, status);
}

function onRawShutdownComplete(this: ShutdownRequest): void {
  (this.owner as RawStream).shutdownComplete();
}

function endpointOf(handle: TcpHandle, which: 'getsockname' | 'getpeername'): Endpoint | undefined {
  const out: Record<string, unknown> = {};
  if (handle[which](out) !== 0) return undefined;
  return [out['address'] as string, out['port'] as number];
}

async function resolveHost(host: string): Promise<string> {
  return net.isIP(host) ? host : (await lookup(host)).address;
}

function rawTransport(raw: RawTcp): Transport {
  return {
    async listen(host, port, backlog, onConnection) {
      const ip = await resolveHost(host);
      const handle = raw.newServerHandle();
      let status = net.isIPv6(ip) ? handle.bind6(ip, port, 0) : handle.bind(ip, port);
      if (status === 0) status = handle.listen(backlog);
      if (status < 0) {
        handle.close();
        throw systemError(status, 'listen');
      }
      // Accept errors (EMFILE...) are not the listening socket's failure: libuv retries.
      handle.onconnection = (accepted: number, client?: TcpHandle) => {
        if (accepted === 0 && client !== undefined) onConnection(new RawStream(client, raw));
      };
      let open = true;
      return {
        endpoint: endpointOf(handle, 'getsockname')!,
        fd: (handle as unknown as { fd?: number }).fd,
        close: () => {
          if (!open) return;
          open = false;
          handle.close();
        },
      };
    },
    async connect(host, port) {
      const ip = await resolveHost(host);
      const handle = raw.newClientHandle();
      const req = raw.newConnectRequest();
      return new Promise<ByteStream>((resolve, reject) => {
        req.oncomplete = (status) => {
          if (status < 0) {
            handle.close();
            reject(systemError(status, 'connect'));
          } else {
            resolve(new RawStream(handle, raw));
          }
        };
        const status = net.isIPv6(ip) ? handle.connect6(req, ip, port) : handle.connect(req, ip, port);
        if (status < 0) {
          handle.close();
          reject(systemError(status, 'connect'));
        }
      });
    },
  };
}

// ---- net.Socket ---------------------------------------------------------------------------

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

  get paused(): boolean {
    return this.#socket.isPaused();
  }

  get fd(): number | undefined {
    const fd = (this.#socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
    return typeof fd === 'number' && fd >= 0 ? fd : undefined;
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

const netTransport: Transport = {
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
    const fd = (server as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
    return { endpoint: [address.address, address.port], fd: typeof fd === 'number' ? fd : undefined, close: () => server.close() };
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

/** libuv's handles where available (`ECHOPLEX_NO_RAW_TCP=1` turns them off), net.Socket otherwise. */
export const transport: Transport = rawTcp !== undefined ? rawTransport(rawTcp) : netTransport;
