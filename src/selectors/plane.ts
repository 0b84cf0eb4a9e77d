// What a connected Socket reads and writes through, and the plane built on Node's byte streams.

import { BlockingIOError, BrokenPipeError, ConnectionResetError, ERRNO, fromSystemError, OSError } from './errors.js';
import type { ByteStream, Endpoint } from './stream.js';

/** Readiness bits; the same values as `EVENT_READ` and `EVENT_WRITE`. */
export const READABLE = 1;
export const WRITABLE = 2;

export const SHUT_RD = 0;
export const SHUT_WR = 1;
export const SHUT_RDWR = 2;

/**
 * Bytes a stream-backed socket buffers on each side, like a kernel socket buffer: reading from
 * the network pauses when this much is waiting for `recv()`, and `send()` accepts at most this
 * much queued. (Native sockets have the kernel's own buffers.)
 */
export const SOCKET_BUFFER_BYTES = 64 * 1024;

/**
 * A connected socket's data: Python's non-blocking recv and send, and readiness as a level-
 * triggered selector sees it. `onChange` (given at construction) runs when readiness may have
 * grown.
 */
export interface DataPlane {
  /** The OS descriptor, where known. */
  readonly fd: number | undefined;
  /**
   * Of the `wanted` bits: READABLE while `recv` would not block (data, end of stream, an
   * error); WRITABLE while `send` would take a byte (on native sockets, while the kernel's poll
   * says so, as Python's select does).
   */
  readiness(wanted: number): number;
  /** The connection has failed (a reset): it has no peer any more, whether or not its error was reported yet. */
  failed(): boolean;
  /** getsockopt(SO_ERROR): the error not yet reported to a call (its errno, or 0), which this reports. */
  takeError(): number;
  /**
   * Up to `bufsize` bytes; empty at end of stream, and for good once a failure has been reported.
   * Throws BlockingIOError, or the connection's error, once, as Linux's recv(2) does.
   */
  recv(bufsize: number): Buffer;
  /** Bytes taken (fewer than given when the buffer fills). Throws BlockingIOError when none fit. */
  send(bytes: Uint8Array): number;
  shutdown(how: number): void;
  /** Queued bytes still go out, then FIN. */
  close(): void;
  setNoDelay(on: boolean): void;
  setKeepAlive(on: boolean): void;
  localEndpoint(): Endpoint | undefined;
}

/**
 * Python's semantics over a push stream: chunks Node reads wait in a buffer for `recv()`, and
 * reading pauses when SOCKET_BUFFER_BYTES are waiting, as a full kernel buffer would. An error
 * is reported as Linux reports it: once, to the first call that meets it (data that came before
 * a reset first), after which recv gives end of stream and send a broken pipe. A reset after the
 * peer's FIN is a broken pipe, for send alone. A write the kernel refuses at once is read from
 * the stream's `errored` as soon as Node has it, before its 'error' event, so send raises then.
 */
export class StreamPlane implements DataPlane {
  readonly #stream: ByteStream;
  #received: Buffer[] = [];
  #receivedBytes = 0;
  #eof = false;
  /** The connection's error, until a call has reported it. */
  #pending: OSError | undefined;
  #failed = false;
  /** Both directions have ended and Node closed the socket: Linux's TCP_CLOSE. */
  #gone = false;
  #writeShut = false;
  #closed = false;
  /** Kept from the start: Node forgets the local address once the socket is gone, the kernel does not. */
  readonly #local: Endpoint | undefined;

  constructor(stream: ByteStream, onChange: () => void) {
    this.#stream = stream;
    stream.listen({
      data: (chunk) => {
        // A closed socket drops what still arrives; there is no one to recv() it.
        if (this.#closed) return;
        this.#received.push(chunk);
        this.#receivedBytes += chunk.length;
        if (this.#receivedBytes >= SOCKET_BUFFER_BYTES) stream.pause();
        onChange();
      },
      end: () => {
        this.#eof = true;
        onChange();
      },
      drain: onChange,
      error: (err) => {
        if (!this.#failed) {
          // In CLOSE_WAIT (the peer's FIN read) Linux records a reset as EPIPE.
          this.#pending = this.#connectionError(err);
          this.#failed = true;
        }
        onChange();
      },
      close: () => {
        // Closed without an error or an end we saw (e.g. destroyed): end of stream. Closed
        // after both FINs, the connection is gone, as the kernel's is (TCP_CLOSE).
        this.#eof = true;
        this.#gone = true;
        onChange();
      },
    });
    this.#local = stream.localEndpoint();
    stream.resume();
  }

  get fd(): number | undefined {
    return this.#stream.fd;
  }

  readiness(wanted: number): number {
    // A failed connection, like one shut for writing, answers every call at once.
    if (this.#failed) return wanted & (READABLE | WRITABLE);
    let ready = this.#receivedBytes > 0 || this.#eof ? READABLE : 0;
    if (this.#writeShut || this.#stream.writableLength < SOCKET_BUFFER_BYTES) ready |= WRITABLE;
    return ready & wanted;
  }

  failed(): boolean {
    return this.#failed;
  }

  takeError(): number {
    this.#probe();
    const pending = this.#pending;
    this.#pending = undefined;
    return pending?.errno ?? 0;
  }

  /**
   * After the peer's FIN Node reads no more, so a reset since (the answer to our next send) goes
   * unseen: an empty write asks the kernel, which answers a reset connection with its error.
   */
  #probe(): void {
    if (!this.#eof || this.#writeShut || this.#failed || this.#gone) return;
    this.#stream.write(Buffer.alloc(0));
    const refused = this.#stream.errored;
    if (refused) {
      this.#failed = true;
      this.#pending = this.#connectionError(refused);
    }
  }

  recv(bufsize: number): Buffer {
    const limit = Math.max(0, Math.floor(bufsize));
    if (limit === 0) return Buffer.alloc(0);
    if (this.#receivedBytes === 0) {
      // The error once (not a broken pipe, which is send's), then end of stream for good.
      const pending = this.#pending;
      if (pending !== undefined && !(pending instanceof BrokenPipeError)) {
        this.#pending = undefined;
        throw pending;
      }
      if (this.#eof || this.#failed) return Buffer.alloc(0);
      throw new BlockingIOError();
    }
    const chunk = this.#takeReceived(limit);
    if (this.#receivedBytes < SOCKET_BUFFER_BYTES && this.#stream.paused && !this.#eof) this.#stream.resume();
    return chunk;
  }

  send(bytes: Uint8Array): number {
    // A pending error first, even after SHUT_WR: Linux's send reports it (and clears it) before EPIPE.
    const pending = this.#pending;
    if (pending !== undefined) {
      this.#pending = undefined;
      throw pending;
    }
    if (this.#writeShut || this.#failed) throw new BrokenPipeError();
    const room = SOCKET_BUFFER_BYTES - this.#stream.writableLength;
    if (room <= 0 && bytes.length > 0) throw new BlockingIOError();
    // Zero bytes go to the kernel too, as send(b'') does: it answers a broken connection with EPIPE.
    const accepted = Math.min(room, bytes.length);
    // Copy: the caller may reuse its buffer after send() returns, as with a real socket.
    this.#stream.write(Buffer.from(accepted === bytes.length ? bytes : bytes.subarray(0, accepted)));
    // The kernel refused it at once (the peer has reset): Node knows now, and says so later.
    const refused = this.#stream.errored;
    if (refused) {
      this.#failed = true;
      this.#pending = undefined;
      throw this.#connectionError(refused);
    }
    return accepted;
  }

  shutdown(how: number): void {
    // A connection that failed is no connection any more, as Linux answers.
    this.#probe();
    if (this.#failed || this.#gone)
      throw new OSError('ENOTCONN', ERRNO.ENOTCONN, '[Errno 107] Transport endpoint is not connected');
    if (how === SHUT_WR || how === SHUT_RDWR) {
      this.#writeShut = true;
      this.#stream.end();
    }
    if (how === SHUT_RD || how === SHUT_RDWR) {
      this.#eof = true;
      this.#received = [];
      this.#receivedBytes = 0;
    }
  }

  close(): void {
    this.#closed = true;
    if (this.#failed) this.#stream.destroy();
    else this.#stream.endAndClose();
    this.#received = [];
    this.#receivedBytes = 0;
  }

  setNoDelay(on: boolean): void {
    this.#stream.setNoDelay(on);
  }

  setKeepAlive(on: boolean): void {
    this.#stream.setKeepAlive(on);
  }

  localEndpoint(): Endpoint | undefined {
    return this.#stream.localEndpoint() ?? this.#local;
  }

  /**
   * Node's error as the kernel would report it to the program's first call: the kernel's own
   * code (it records a reset in CLOSE_WAIT as EPIPE itself), except an EPIPE met before any end
   * of stream, which is a reset that Node's own read took first: the program is told ECONNRESET.
   */
  #connectionError(err: NodeJS.ErrnoException): OSError {
    if (err.code === 'EPIPE' && !this.#eof) return new ConnectionResetError({ cause: err });
    return fromSystemError(err);
  }

  /** Up to `limit` bytes of what is waiting, across chunks, as recv(2) takes from the kernel's buffer. */
  #takeReceived(limit: number): Buffer {
    const first = this.#received[0]!;
    if (first.length >= limit || this.#received.length === 1) return this.#takeFromFirst(limit);
    const parts: Buffer[] = [];
    let taken = 0;
    while (taken < limit && this.#received.length > 0) {
      const part = this.#takeFromFirst(limit - taken);
      parts.push(part);
      taken += part.length;
    }
    return Buffer.concat(parts, taken);
  }

  #takeFromFirst(limit: number): Buffer {
    const first = this.#received[0]!;
    if (first.length <= limit) {
      this.#received.shift();
      this.#receivedBytes -= first.length;
      return first;
    }
    this.#received[0] = first.subarray(limit);
    this.#receivedBytes -= limit;
    return first.subarray(0, limit);
  }
}
