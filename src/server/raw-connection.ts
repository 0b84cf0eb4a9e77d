// A connection on libuv's TCP handle directly (see raw-tcp.ts): the fast path, same semantics.

import { Connection, type ConnectionContext } from './connection.js';
import { errorName, writeToHandle, WRITE_DONE, type RawTcp, type ShutdownRequest, type TcpHandle, type WriteRequest } from './raw-tcp.js';

const kOwner = Symbol('echoplex.rawConnection');
type OwnedHandle = TcpHandle & { [kOwner]: RawConnection };

// Every connection reads into this one buffer; each chunk is copied out before anything else
// runs, because a write that cannot finish at once keeps pointing at the bytes it was given.
// The copy goes into a scratch buffer that is reused while writes finish at once (the common
// case: no allocation, no fresh pages to fault in); a write that stays pending keeps it, and
// the next read takes a new one.
const READ_BUFFER_BYTES = 64 * 1024;
let sharedReadBuffer: Buffer | undefined;
let scratch: Buffer | undefined;

function copyOut(nread: number, reusable: boolean): Buffer {
  if (!reusable) return Buffer.from(sharedReadBuffer!.subarray(0, nread));
  scratch ??= Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
  sharedReadBuffer!.copy(scratch, 0, 0, nread);
  return scratch.subarray(0, nread);
}

/** A pending write holds `reply`: if it is the scratch buffer, stop reusing that. */
function retain(reply: Buffer): void {
  if (scratch !== undefined && reply.buffer === scratch.buffer) scratch = undefined;
}

// A connection moving large chunks (a read that filled half the shared buffer) gets a read
// buffer of its own and echoes straight from it, with no copy; while a write still holds that
// buffer the connection is not read (as a C server with one buffer per connection does). Such
// buffers are recycled through a small pool when their connections close.
const BULK_READ_BYTES = READ_BUFFER_BYTES / 2;
const BULK_POOL_MAX = 64;
const bulkPool: Buffer[] = [];

export class RawConnection extends Connection {
  readonly #handle: TcpHandle;
  readonly #raw: RawTcp;
  /** Bytes in writes libuv has not finished: our user-space queue (libuv keeps them in order). */
  #pending = 0;
  #reading = false;
  #writeEnded = false;
  #shutdownWhenFlushed = false;
  #shutdownDone = false;
  #peerEnded = false;
  #closing = false;
  /** This connection's own read buffer, once it moves bulk data (see BULK_READ_BYTES). */
  #ownBuffer: Buffer | undefined;
  /** A write in flight still points into #ownBuffer: reading would overwrite it. */
  #ownBufferHeld = false;

  constructor(id: number, handle: TcpHandle, remoteAddress: string, remotePort: number, context: ConnectionContext, raw: RawTcp) {
    super(id, remoteAddress, remotePort, context);
    this.#handle = handle;
    this.#raw = raw;
    (handle as OwnedHandle)[kOwner] = this;
    handle.onread = onRead;
    handle.setNoDelay(true);
    sharedReadBuffer ??= Buffer.allocUnsafe(READ_BUFFER_BYTES);
    handle.useUserBuffer(sharedReadBuffer);
    this.#startReading();
  }

  protected get transportPendingBytes(): number {
    return this.#pending;
  }

  protected holdInput(): void {
    this.#pauseReading();
  }

  protected releaseInput(): void {
    if (this.#canResume()) this.#startReading();
  }

  /** Reading is stopped, and no reason to keep it stopped holds: end of input, a held buffer, delayed chunks, a full queue. */
  #canResume(): boolean {
    return !this.#reading && !this.#closing && !this.#peerEnded && !this.#ownBufferHeld && !this.inputHeld && this.#pending <= this.context.maxBuffered / 2;
  }

  finish(): void {
    if (this.#writeEnded || this.#closing) return;
    this.#writeEnded = true;
    if (this.#pending === 0) this.#shutdown();
    else this.#shutdownWhenFlushed = true;
  }

  protected destroy(): void {
    this.#close();
  }

  protected get outputEnded(): boolean {
    return this.#writeEnded || this.#closing;
  }

  protected send(reply: Buffer): void {
    const result = writeToHandle(this.#raw, this.#handle, reply, this, onWriteComplete);
    if (result === WRITE_DONE) return;
    // libuv may have bound `reply` (in flight, or failed after binding): stop reusing it.
    retain(reply);
    if (result < 0) return this.#fail(result);
    // The kernel did not take it all: libuv finishes it later and holds `reply` until then.
    this.#pending += reply.length;
    if (this.#ownBuffer !== undefined && reply.buffer === this.#ownBuffer.buffer) {
      this.#ownBufferHeld = true;
      this.#pauseReading();
    }
    this.#applyBackpressure();
  }

  #applyBackpressure(): void {
    if (this.#pending >= this.context.maxBuffered && this.#reading) {
      this.#pauseReading();
      this.context.stats.backpressurePauses++;
    }
  }

  #pauseReading(): void {
    if (!this.#reading) return;
    this.#handle.readStop();
    this.#reading = false;
  }

  /** libuv read into the shared buffer (or hit end of stream, or an error). */
  onRead(): void {
    const nread = this.#raw.lastReadResult();
    if (nread > 0) {
      const own = this.#ownBuffer;
      if (own !== undefined) {
        this.received(own.subarray(0, nread));
      } else {
        const builtIn = this.context.transformIsBuiltIn;
        this.received(copyOut(nread, builtIn));
        // Only a built-in transform is known to let go of a chunk once it returns.
        if (builtIn && nread >= BULK_READ_BYTES && !this.#closing) this.#takeOwnBuffer();
      }
    } else if (nread === this.#raw.EOF) {
      // Half-close: send what is pending, then our FIN; close once both sides are done.
      this.#peerEnded = true;
      this.#reading = false;
      if (this.#shutdownDone) this.#close();
      else this.inputEnded();
    } else if (nread < 0) {
      this.#fail(nread);
    }
  }

  writeComplete(req: WriteRequest, status: number): void {
    this.#pending -= req.bytes;
    if (this.#ownBuffer !== undefined && req.buffer?.buffer === this.#ownBuffer.buffer) this.#ownBufferHeld = false;
    req.buffer = null;
    if (this.#closing) return;
    if (status < 0) return this.#fail(status);
    // Resume halfway down, like a high-water mark with hysteresis, so the pipe never idles.
    if (this.#canResume()) this.#startReading();
    if (this.#shutdownWhenFlushed && this.#pending === 0) {
      this.#shutdownWhenFlushed = false;
      this.#shutdown();
    }
  }

  shutdownComplete(status: number): void {
    this.#shutdownDone = true;
    if (status < 0 || this.#peerEnded) this.#close();
  }

  #takeOwnBuffer(): void {
    this.#ownBuffer = bulkPool.pop() ?? Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
    this.#handle.useUserBuffer(this.#ownBuffer);
  }

  #startReading(): void {
    const status = this.#handle.readStart();
    if (status < 0) this.#fail(status);
    else this.#reading = true;
  }

  #shutdown(): void {
    const req = this.#raw.newShutdownRequest();
    req.handle = this.#handle;
    req.oncomplete = onShutdownComplete;
    req.owner = this;
    if (this.#handle.shutdown(req) < 0) this.#close();
  }

  #fail(status: number): void {
    if (this.#closing) return;
    const code = errorName(status);
    this.failed(code, `${code} (${status})`);
    this.#close();
  }

  #close(): void {
    if (this.#closing) return;
    this.#closing = true;
    const unsent = this.#pending;
    this.#handle.close(() => {
      // Closed: no read or write can touch the buffer any more.
      if (this.#ownBuffer !== undefined && bulkPool.length < BULK_POOL_MAX) bulkPool.push(this.#ownBuffer);
      this.#ownBuffer = undefined;
      this.closed(unsent);
    });
  }
}

function onRead(this: TcpHandle): void {
  (this as OwnedHandle)[kOwner].onRead();
}

function onWriteComplete(this: WriteRequest, status: number): void {
  (this.owner as RawConnection).writeComplete(this, status);
}

function onShutdownComplete(this: ShutdownRequest, status: number): void {
  (this.owner as RawConnection).shutdownComplete(status);
}
