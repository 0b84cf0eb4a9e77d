// One bench connection: what it has sent and when, and the verification of every reply byte.

import type { LoadConnection, Run } from './run.js';
import type { BenchErrorKind } from './settings.js';
import type { BenchSocket } from '../protocol/transports.js';

/** The longest hello line read before giving up on it. */
const MAX_HELLO_BYTES = 8192;

/**
 * What every connection of a run on a BenchSocket shares: being retired or failed once, and
 * giving up the replies it still owed. Subclasses keep their own books of what is owed.
 */
export abstract class SocketConnection implements LoadConnection {
  readonly socket: BenchSocket;
  protected readonly run: Run;
  #failed = false;
  /** Messages this connection may still send, with `messagesPerConnection`; else unbounded. */
  protected quota: number;

  constructor(run: Run, socket: BenchSocket) {
    this.run = run;
    this.socket = socket;
    this.quota = run.options.messagesPerConnection ?? Number.POSITIVE_INFINITY;
  }

  /** Takes up to `count` messages from the run's budget and this connection's quota; returns how many may go. */
  protected take(count: number): number {
    const run = this.run;
    count = Math.min(count, run.sendBudget, this.quota);
    if (count <= 0 || this.#failed) return 0;
    run.sendBudget -= count;
    this.quota -= count;
    run.inFlight += count;
    return count;
  }

  abstract readonly spent: boolean;
  abstract send(count: number, stamp: number): void;
  abstract isOverdue(now: number, limitMs: number): boolean;
  /** Verifies and frames received bytes; returns how many replies completed. */
  abstract receive(bytes: Buffer, length: number, now: number, binary?: boolean): number;
  /** Forgets every reply still owed; returns how many there were. */
  protected abstract dropOwed(): number;

  get failed(): boolean {
    return this.#failed;
  }

  retire(): void {
    if (this.#failed) return;
    this.#failed = true;
    this.run.live.delete(this);
    this.socket.destroy();
  }

  fail(kind: BenchErrorKind): void {
    if (this.#failed) return;
    this.#failed = true;
    const run = this.run;
    run.errorsByKind[kind]++;
    run.live.delete(this);
    const owed = this.dropOwed();
    this.socket.destroy();
    run.lost(owed);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** One connection: a FIFO of send times, and where in the current reply the bytes have reached. */
export class BenchConnection extends SocketConnection {
  #offsetInReply = 0;
  #sendTimes: Float64Array;
  #head = 0;
  #count = 0;
  /** With `hello`: the server's first line, until its newline has come. */
  #hello: Buffer | undefined;

  constructor(run: Run, socket: BenchSocket) {
    super(run, socket);
    this.#sendTimes = new Float64Array(Math.max(4, run.options.pipeline));
    if (run.options.hello) this.#hello = Buffer.alloc(0);
  }

  get spent(): boolean {
    return this.quota === 0 && this.#count === 0;
  }

  isOverdue(now: number, limitMs: number): boolean {
    return this.#count > 0 && now - this.#sendTimes[this.#head]! > limitMs;
  }

  send(count: number, stamp: number): void {
    count = this.take(count);
    if (count === 0) return;
    const run = this.run;
    for (let i = 0; i < count; i++) this.#push(stamp);
    const { burstOf, payload } = run;
    if (this.socket.messages) {
      for (let i = 0; i < count; i++) this.socket.write(payload);
      return;
    }
    const most = burstOf.length - 1;
    for (let left = count; left > 0; left -= most) this.socket.write(burstOf[Math.min(left, most)]!);
  }

  /**
   * Verifies and frames received bytes; returns how many replies completed. `binary` is given
   * for a WebSocket message, which must be one whole reply of the kind that was sent.
   */
  receive(bytes: Buffer, length: number, now: number, binary?: boolean): number {
    const run = this.run;
    if (this.#hello !== undefined) {
      const rest = this.#readHello(bytes.subarray(0, length));
      if (rest === undefined || rest.length === 0) return 0;
      bytes = rest;
      length = rest.length;
    }
    const expected = run.expected;
    const size = expected.length;
    if (binary !== undefined && (binary !== run.sendsBinary || this.#offsetInReply + length !== size)) {
      // The bytes are still checked below; the message itself was already wrong.
      run.mismatchedBytes += length;
      run.errorsByKind.mismatch++;
    }
    let completed = 0;
    let offset = 0;
    while (offset < length) {
      if (this.#count === 0) {
        // Bytes nobody asked for: the server sent more than it was sent.
        run.mismatchedBytes += length - offset;
        run.errorsByKind.mismatch++;
        return completed;
      }
      const take = Math.min(size - this.#offsetInReply, length - offset);
      if (bytes.compare(expected, this.#offsetInReply, this.#offsetInReply + take, offset, offset + take) !== 0) {
        this.#countMismatch(bytes, offset, take);
      }
      offset += take;
      this.#offsetInReply += take;
      if (this.#offsetInReply === size) {
        this.#offsetInReply = 0;
        run.completed(now, this.#shift());
        completed++;
      }
    }
    return completed;
  }

  protected dropOwed(): number {
    const owed = this.#count;
    this.#count = 0;
    return owed;
  }

  /** Takes the hello line off the front; returns the bytes after it, undefined until it is whole. */
  #readHello(bytes: Buffer): Buffer | undefined {
    const run = this.run;
    const input = Buffer.concat([this.#hello!, bytes]);
    const end = input.indexOf(0x0a);
    if (end < 0) {
      if (input.length > MAX_HELLO_BYTES) {
        this.#hello = undefined;
        run.mismatchedBytes += input.length;
        run.errorsByKind.mismatch++;
        return undefined;
      }
      this.#hello = input;
      return undefined;
    }
    this.#hello = undefined;
    let instance = '(not a hello line)';
    try {
      const hello = JSON.parse(input.subarray(0, end).toString('utf8')) as { instance?: unknown };
      if (typeof hello.instance === 'string') instance = hello.instance;
    } catch {
      // Counted under its own name below: a server without --hello, or something in front that answers.
    }
    run.instances.set(instance, (run.instances.get(instance) ?? 0) + 1);
    // Copied: the rest may sit in a read buffer that the next read reuses.
    return Buffer.from(input.subarray(end + 1));
  }

  #countMismatch(bytes: Buffer, offset: number, take: number): void {
    const run = this.run;
    let differing = 0;
    for (let i = 0; i < take; i++) if (bytes[offset + i] !== run.expected[this.#offsetInReply + i]) differing++;
    if (differing > 0) {
      run.mismatchedBytes += differing;
      run.errorsByKind.mismatch++;
    }
  }

  #push(stamp: number): void {
    if (this.#count === this.#sendTimes.length) this.#grow();
    this.#sendTimes[(this.#head + this.#count) % this.#sendTimes.length] = stamp;
    this.#count++;
  }

  #shift(): number {
    const stamp = this.#sendTimes[this.#head]!;
    this.#head = (this.#head + 1) % this.#sendTimes.length;
    this.#count--;
    return stamp;
  }

  #grow(): void {
    const bigger = new Float64Array(this.#sendTimes.length * 2);
    for (let i = 0; i < this.#count; i++) bigger[i] = this.#sendTimes[(this.#head + i) % this.#sendTimes.length]!;
    this.#sendTimes = bigger;
    this.#head = 0;
  }
}
