// Python-style non-blocking sockets: their life cycle on Node's listeners, their bytes through a data plane (native or streams).

import { isIPv6 } from 'node:net';
import { inspect } from 'node:util';
import { chooseEngine, type EngineChoice } from '../native/engine.js';
import {
  BlockingIOError,
  BrokenPipeError,
  ERRNO,
  fromSystemError,
  OSError,
  TimeoutError,
  ValueError,
} from './errors.js';
import { NativePlane } from './native-plane.js';
import { READABLE, SHUT_RD, SHUT_RDWR, SHUT_WR, StreamPlane, WRITABLE, type DataPlane } from './plane.js';
import { transport, type ByteListener, type ByteStream } from './stream.js';

export { READABLE, SHUT_RD, SHUT_RDWR, SHUT_WR, SOCKET_BUFFER_BYTES, WRITABLE } from './plane.js';

let engineChoice: EngineChoice | undefined;

/**
 * Which engine carries the sockets connected from now on: `native` (the addon: recv and send are
 * the kernel's own), `portable` (Node's net.Socket), or `auto` (native where the addon loads).
 * Undefined goes back to the default, the ECHOPLEX_ENGINE variable or `auto`. Sockets already
 * connected keep theirs. Asking for `native` where the addon is missing throws a UsageError.
 */
export function useEngine(choice: EngineChoice | undefined): void {
  if (choice !== undefined) chooseEngine(choice);
  engineChoice = choice;
}

export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
// Socket options, with Linux's values, for setsockopt/getsockopt.
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_TYPE = 3;
export const SO_ERROR = 4;
export const SO_KEEPALIVE = 9;
export const IPPROTO_TCP = 6;
export const TCP_NODELAY = 1;

/** `[host, port]`, as Python's socket addresses for AF_INET and AF_INET6. */
export type Address = readonly [host: string, port: number];

const KERNEL_BACKLOG_FLOOR = 511;

/** What a selector needs from anything it watches (kept off the public surface by symbols). */
export const kReadiness = Symbol('echoplex.selectors.readiness');
export const kWatch = Symbol('echoplex.selectors.watch');
export const kUnwatch = Symbol('echoplex.selectors.unwatch');
export const kPendingError = Symbol('echoplex.selectors.pendingError');
/** Which data plane a connected socket uses ('native' or 'stream'), for tests and diagnostics. */
export const kPlane = Symbol('echoplex.selectors.plane');

export interface Selectable {
  fileno(): number;
  /** Which of the `wanted` readiness bits (READABLE, WRITABLE) hold now. */
  [kReadiness](wanted: number): number;
  [kPendingError](): boolean;
  [kWatch](listener: () => void): void;
  [kUnwatch](listener: () => void): void;
}

export function isSelectable(value: unknown): value is Selectable {
  return typeof value === 'object' && value !== null && kReadiness in value && kWatch in value;
}

// Descriptors for sockets that have no OS handle yet (before bind/connect), far above real ones.
let nextSyntheticFd = 1 << 20;

/** Live sockets by descriptor, so a selector can be given `sock.fileno()` instead of `sock`. */
const socketsByFd = new Map<number, Socket>();

export function socketForFd(fd: number): Socket | undefined {
  return socketsByFd.get(fd);
}

/** `failed`: a connect that did not succeed (Linux leaves such a socket unusable). */
type State = 'new' | 'connecting' | 'connected' | 'failed' | 'listening' | 'closed';

/**
 * A stream socket with Python's non-blocking semantics. Every operation that Python would
 * perform without blocking is synchronous here (`recv`, `send`, `accept`, `close`); the two that
 * must wait for the network in Node (`listen`, `connect`) return Promises. Readiness is level-
 * triggered: a selector sees READ while `recv` would return data, end-of-stream or an error (or
 * `accept` a connection), and WRITE while `send` would accept at least one byte.
 */
export class Socket implements Selectable, Disposable {
  readonly family: number;
  readonly type: number;
  #state: State = 'new';
  /** A connected socket's reads and writes: native system calls where the addon was built, Node's streams otherwise. */
  #plane: DataPlane | undefined;
  #listener: ByteListener | undefined;
  #boundTo: Address | undefined;
  #peer: Address | undefined;
  #fd: number;
  /** Python's timeout: null blocks (the default), 0 never waits, t > 0 waits at most t seconds. */
  #timeout: number | null = null;
  /** A non-blocking connect that failed: its error, for the one getsockopt(SO_ERROR) or call that asks. */
  #connectError: OSError | undefined;
  /** The failed connect was non-blocking: Linux then gives recv end of stream, not ENOTCONN. */
  #failedInBackground = false;
  // Listening side: connections accepted by Node, waiting for accept().
  #backlog: ByteStream[] = [];
  readonly #watchers = new Set<() => void>();
  #connectedText: string | undefined;
  // Options as setsockopt left them; an accepted socket starts with its listener's.
  #reuseAddress = false;
  #keepAlive = false;
  #noDelay = true;

  constructor(family: number = AF_INET, type: number = SOCK_STREAM) {
    if (type !== SOCK_STREAM) throw new OSError('EINVAL', ERRNO.EINVAL, 'only SOCK_STREAM sockets are supported');
    this.family = family;
    this.type = type;
    this.#fd = nextSyntheticFd++;
  }

  /** Wraps an accepted connection; it starts reading into its buffer now. */
  static #fromAccepted(stream: ByteStream, family: number, listener: Socket): Socket {
    const socket = new Socket(family);
    socket.#keepAlive = listener.#keepAlive;
    socket.#noDelay = listener.#noDelay;
    socket.#attach(stream);
    socket.#state = 'connected';
    return socket;
  }

  /** The descriptor: the OS one where Node exposes it, a stable stand-in before that; -1 once closed. */
  fileno(): number {
    return this.#state === 'closed' ? -1 : this.#fd;
  }

  /**
   * `setblocking(false)` is `settimeout(0)`: the awaitable calls (`connect`, `sendall`,
   * `recvAsync`) then raise BlockingIOError instead of waiting, as Python's would. The
   * synchronous ones (`recv`, `send`, `accept`) never wait whatever the mode.
   */
  setblocking(flag: boolean): void {
    this.settimeout(flag ? null : 0);
  }

  getblocking(): boolean {
    return this.#timeout !== 0;
  }

  /** Python's settimeout: null blocks, 0 is non-blocking, t > 0 makes the awaitable calls raise TimeoutError after t seconds. */
  settimeout(value: number | null): void {
    this.#ensureOpen();
    if (value !== null && !(value >= 0)) throw new ValueError('Timeout value out of range');
    this.#timeout = value;
  }

  gettimeout(): number | null {
    return this.#timeout;
  }

  /** Records the address to listen on; the OS bind happens in `listen()`, where Node does it. */
  bind(address: Address): void {
    this.#ensureOpen();
    if (this.#state !== 'new')
      throw new OSError('EINVAL', ERRNO.EINVAL, '[Errno 22] Invalid argument: socket already bound or connected');
    this.#boundTo = [normalizeHost(address[0]), address[1]];
  }

  /**
   * Binds (if `bind` was called; otherwise an ephemeral port on all addresses) and listens.
   * Returns a Promise because Node reports bind errors (EADDRINUSE...) asynchronously.
   *
   * Node accepts connections as soon as they arrive and keeps them for `accept()`, so the
   * kernel's queue only has to absorb bursts between turns of the event loop; it is given at
   * least Node's default of 511 whatever `backlog` says, so the seed's `listen(5)` does not drop
   * a burst of clients into SYN retransmits the way it does in Python.
   */
  async listen(backlog = 128): Promise<void> {
    this.#ensureOpen();
    if (this.#state === 'listening') return;
    if (this.#state !== 'new') throw new OSError('EINVAL', ERRNO.EINVAL, '[Errno 22] Invalid argument');
    const [host, port] = this.#boundTo ?? ['0.0.0.0', 0];
    let listener: ByteListener;
    try {
      listener = await transport.listen(host, port, Math.max(backlog, KERNEL_BACKLOG_FLOOR), (stream) =>
        this.#queueConnection(stream),
      );
    } catch (err) {
      throw fromSystemError(err as NodeJS.ErrnoException);
    }
    this.#listener = listener;
    this.#state = 'listening';
    this.#boundTo = listener.endpoint;
    this.#adoptOsFd(listener.fd);
  }

  /**
   * Takes one pending connection: `[conn, [host, port]]`. Throws BlockingIOError when none is
   * waiting. The new socket is non-blocking and already reading into its buffer.
   */
  accept(): [Socket, Address] {
    this.#ensureOpen();
    if (this.#state !== 'listening')
      throw new OSError('EINVAL', ERRNO.EINVAL, '[Errno 22] Invalid argument: not listening');
    for (;;) {
      const stream = this.#backlog.shift();
      if (stream === undefined) throw new BlockingIOError();
      // Only a connection whose address was never learned is skipped (see #queueConnection).
      const peer = stream.destroyed ? undefined : stream.remoteEndpoint();
      if (peer === undefined) {
        stream.destroy();
        continue;
      }
      const conn = Socket.#fromAccepted(stream, isIPv6(peer[0]) ? AF_INET6 : AF_INET, this);
      return [conn, conn.getpeername()];
    }
  }

  /**
   * Connects; resolves when connected, rejects with ConnectionRefusedError and the like. On a
   * non-blocking socket it rejects at once with BlockingIOError (`EINPROGRESS`) while the
   * connection goes on, as Python's does: `select()` reports WRITE once it is done, and
   * `getsockopt(SOL_SOCKET, SO_ERROR)` says how it went (0, or the errno).
   */
  async connect(address: Address): Promise<void> {
    this.#ensureOpen();
    if (this.#state === 'connected')
      throw new OSError('EISCONN', ERRNO.EISCONN, '[Errno 106] Transport endpoint is already connected');
    if (this.#state === 'connecting') throw new OSError('EALREADY', 114, '[Errno 114] Operation already in progress');
    if (this.#state !== 'new') throw new OSError('EINVAL', ERRNO.EINVAL, '[Errno 22] Invalid argument');
    this.#state = 'connecting';
    this.#connectError = undefined;
    const connecting = transport.connect(normalizeHost(address[0]), address[1]).then(
      (stream) => {
        if (this.#state !== 'connecting') return stream.destroy();
        this.#attach(stream);
        this.#state = 'connected';
        this.#notify();
      },
      (err: unknown) => {
        const error = fromSystemError(err as NodeJS.ErrnoException);
        if (this.#state === 'connecting') {
          this.#state = 'failed';
          this.#connectError = error;
          this.#failedInBackground = this.#timeout === 0;
          this.#notify();
        }
        throw error;
      },
    );
    if (this.#timeout === 0) {
      connecting.catch(() => {});
      throw new BlockingIOError('Operation now in progress', 'EINPROGRESS');
    }
    await this.#waiting(connecting);
  }

  /**
   * Python's connect_ex: the errno instead of an exception, 0 when connected. On a non-blocking
   * socket, EINPROGRESS (115) at once, the connection going on as with `connect`.
   */
  async connect_ex(address: Address): Promise<number> {
    try {
      await this.connect(address);
      return 0;
    } catch (err) {
      if (err instanceof OSError) return err.errno;
      throw err;
    }
  }

  /**
   * Returns up to `bufsize` received bytes; an empty Buffer at end of stream. Throws
   * BlockingIOError when nothing has arrived, ConnectionResetError after a reset.
   */
  recv(bufsize: number): Buffer {
    if (this.#state === 'failed' && this.#failedInBackground) return Buffer.alloc(0);
    return this.#connected().recv(bufsize);
  }

  /**
   * Queues as much of `data` as the send buffer has room for and returns how many bytes that
   * was, which can be fewer than given (a partial send). Throws BlockingIOError when the buffer
   * is full, BrokenPipeError after `shutdown(SHUT_WR)` or once the peer has gone.
   */
  send(data: Uint8Array | string): number {
    // After a connect that failed, as Linux answers: the pipe is broken.
    if (this.#state === 'failed') throw new BrokenPipeError();
    const plane = this.#connected();
    return plane.send(typeof data === 'string' ? Buffer.from(data) : data);
  }

  /** Sends all of `data`, waiting for room as needed (Python's blocking sendall). */
  async sendall(data: Uint8Array | string): Promise<void> {
    let rest = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data);
    while (rest.length > 0) {
      try {
        rest = rest.subarray(this.send(rest));
      } catch (err) {
        // Non-blocking: the BlockingIOError itself, as Python's sendall raises it.
        if (!(err instanceof BlockingIOError) || this.#timeout === 0) throw err;
        await this.#waiting(this.#nextChange());
      }
    }
  }

  /** Waits until `recv` would not block, then receives (a blocking recv, as a Promise). */
  async recvAsync(bufsize: number): Promise<Buffer> {
    for (;;) {
      try {
        return this.recv(bufsize);
      } catch (err) {
        if (!(err instanceof BlockingIOError) || this.#timeout === 0) throw err;
        await this.#waiting(this.#nextChange());
      }
    }
  }

  /** Stops sending (SHUT_WR: FIN after queued bytes), receiving, or both. */
  shutdown(how: number): void {
    const plane = this.#connected();
    if (how !== SHUT_RD && how !== SHUT_WR && how !== SHUT_RDWR)
      throw new OSError('EINVAL', ERRNO.EINVAL, '[Errno 22] Invalid argument');
    plane.shutdown(how);
    this.#notify();
  }

  /**
   * Python's setsockopt for the options TCP programs set. SO_KEEPALIVE and TCP_NODELAY apply to
   * the connection (or wait for one; an accepted socket inherits its listener's, as on Linux).
   * SO_REUSEADDR is recorded; Node sets it on every listening socket whatever the value. Any
   * other option raises OSError (ENOPROTOOPT).
   */
  setsockopt(level: number, option: number, value: number | boolean): void {
    this.#ensureOpen();
    const on = Boolean(value);
    if (level === SOL_SOCKET && option === SO_REUSEADDR) {
      this.#reuseAddress = on;
    } else if (level === SOL_SOCKET && option === SO_KEEPALIVE) {
      this.#keepAlive = on;
      this.#plane?.setKeepAlive(on);
    } else if (level === IPPROTO_TCP && option === TCP_NODELAY) {
      this.#noDelay = on;
      this.#plane?.setNoDelay(on);
    } else {
      throw unsupportedOption(level, option);
    }
  }

  /** Python's getsockopt: the options above, SO_TYPE, and SO_ERROR (the pending error's errno, or 0). */
  getsockopt(level: number, option: number): number {
    this.#ensureOpen();
    if (level === SOL_SOCKET) {
      switch (option) {
        case SO_REUSEADDR:
          return this.#reuseAddress || this.#state === 'listening' ? 1 : 0;
        case SO_KEEPALIVE:
          return this.#keepAlive ? 1 : 0;
        case SO_TYPE:
          return this.type;
        case SO_ERROR: {
          // A failed connect's error is reported once, as the kernel does.
          const failed = this.#connectError;
          this.#connectError = undefined;
          return failed?.errno ?? this.#plane?.takeError() ?? 0;
        }
      }
    }
    if (level === IPPROTO_TCP && option === TCP_NODELAY) return this.#noDelay ? 1 : 0;
    throw unsupportedOption(level, option);
  }

  /** Closes; bytes already accepted by send() are still delivered, then FIN. Safe to call twice. */
  close(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    socketsByFd.delete(this.#fd);
    this.#plane?.close();
    this.#listener?.close();
    for (const pending of this.#backlog) pending.destroy();
    this.#backlog = [];
    this.#notify();
  }

  /** `using conn = socket()` closes it at the end of the block, as Python's `with socket.socket() as s:`. */
  [Symbol.dispose](): void {
    this.close();
  }

  getpeername(): Address {
    this.#ensureOpen();
    if (!this.#peer || this.#plane?.failed() || this.#state !== 'connected') {
      throw new OSError('ENOTCONN', ERRNO.ENOTCONN, '[Errno 107] Transport endpoint is not connected');
    }
    return this.#peer;
  }

  getsockname(): Address {
    this.#ensureOpen();
    const local = this.#plane?.localEndpoint();
    if (local !== undefined) return local;
    return this.#boundTo ?? [this.family === AF_INET6 ? '::' : '0.0.0.0', 0];
  }

  toString(): string {
    // A connected socket's text cannot change until it errs or closes, and programs ported from
    // Python print it with every message.
    if (this.#state === 'connected' && !this.#plane?.failed()) return (this.#connectedText ??= this.#describe());
    return this.#describe();
  }

  /** `console.log(sock)` and `util.inspect` show what Python's print(sock) shows, not the object's fields. */
  [inspect.custom](): string {
    return this.toString();
  }

  #describe(): string {
    const state = this.#state === 'closed' ? ' [closed]' : '';
    const local = this.#state === 'closed' ? '' : `, laddr=${formatAddress(this.getsockname())}`;
    const remote =
      this.#peer && this.#state === 'connected' && !this.#plane?.failed() ? `, raddr=${formatAddress(this.#peer)}` : '';
    return `<socket fd=${this.fileno()}${local}${remote}${state}>`;
  }

  [kReadiness](wanted: number): number {
    switch (this.#state) {
      case 'listening':
        return this.#backlog.length > 0 ? wanted & READABLE : 0;
      case 'connected':
        return this.#plane!.readiness(wanted);
      case 'failed':
        // A connect that failed is done: readable and writable, as poll() reports it.
        return wanted & (READABLE | WRITABLE);
      default:
        return 0;
    }
  }

  [kPlane](): 'native' | 'stream' | undefined {
    return this.#plane === undefined ? undefined : this.#plane instanceof NativePlane ? 'native' : 'stream';
  }

  /** select()'s exceptional condition: on Linux, urgent (out-of-band) data only, which these sockets do not take. */
  [kPendingError](): boolean {
    return false;
  }

  [kWatch](listener: () => void): void {
    this.#watchers.add(listener);
  }

  [kUnwatch](listener: () => void): void {
    this.#watchers.delete(listener);
  }

  #attach(stream: ByteStream): void {
    this.#peer = stream.remoteEndpoint();
    const onChange = () => this.#notify();
    const plane =
      (chooseEngine(engineChoice) === 'native' ? NativePlane.adopt(stream, onChange) : undefined) ??
      new StreamPlane(stream, onChange);
    this.#plane = plane;
    // Streams start with TCP_NODELAY on and keep-alive off.
    if (!this.#noDelay) plane.setNoDelay(false);
    if (this.#keepAlive) plane.setKeepAlive(true);
    this.#adoptOsFd(plane.fd);
  }

  /** Uses the real descriptor where the handle exposes it (Unix); keeps the stand-in otherwise. */
  #adoptOsFd(fd: number | undefined): void {
    if (fd !== undefined && fd >= 0) this.#fd = fd;
    socketsByFd.set(this.#fd, this);
  }

  #queueConnection(stream: ByteStream): void {
    // The peer's address is learned as the connection arrives (the stream keeps it): one reset
    // later, while it waits, is still handed out by accept() with its address, as Linux's accept()
    // does, and its recv() gives what it sent and then ConnectionResetError. Asking only in
    // accept() found no peer for it, after select() had already reported READ.
    if (stream.remoteEndpoint() === undefined) {
      // Reset before we even saw it: never reported, nothing to hand out.
      stream.destroy();
      return;
    }
    this.#backlog.push(stream);
    this.#notify();
  }

  /** `promise`, or TimeoutError after the socket's timeout (Python's `socket.timeout`). */
  async #waiting<T>(promise: Promise<T>): Promise<T> {
    const seconds = this.#timeout;
    if (seconds === null) return promise;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError()), seconds * 1000);
    });
    try {
      return await Promise.race([promise, expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  #nextChange(): Promise<void> {
    return new Promise((resolve) => {
      const once = () => {
        this.#watchers.delete(once);
        resolve();
      };
      this.#watchers.add(once);
    });
  }

  #notify(): void {
    // A Set visits what is added during the loop and skips what is deleted, so watchers that
    // remove themselves need no copy; none adds another synchronously.
    for (const watcher of this.#watchers) watcher();
  }

  /** The data plane of an open, connected socket; throws EBADF or ENOTCONN otherwise. */
  #connected(): DataPlane {
    this.#ensureOpen();
    if (this.#state !== 'connected' || this.#plane === undefined)
      throw new OSError('ENOTCONN', ERRNO.ENOTCONN, '[Errno 107] Transport endpoint is not connected');
    return this.#plane;
  }

  #ensureOpen(): void {
    if (this.#state === 'closed') throw new OSError('EBADF', ERRNO.EBADF, '[Errno 9] Bad file descriptor');
  }
}

function unsupportedOption(level: number, option: number): OSError {
  return new OSError(
    'ENOPROTOOPT',
    ERRNO.ENOPROTOOPT,
    `[Errno ${ERRNO.ENOPROTOOPT}] Protocol not available (level ${level}, option ${option})`,
  );
}

/** Python's `socket.socket(family, type)`. */
export function socket(family: number = AF_INET, type: number = SOCK_STREAM): Socket {
  return new Socket(family, type);
}

/** Python accepts '' for "all interfaces" and 'localhost'; Node wants an address. */
function normalizeHost(host: string): string {
  if (host === '') return '0.0.0.0';
  if (host === 'localhost') return '127.0.0.1';
  return host;
}

function formatAddress([host, port]: Address): string {
  return `('${host}', ${port})`;
}
