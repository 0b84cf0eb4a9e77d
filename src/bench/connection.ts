// One bench connection: what it has sent and when, and the verification and classification of every reply.

import { classifyReply, differingBytes, type OwedReplies } from './message.js';
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
    run.lost(owed, true);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/**
 * One stream connection: the send times of the messages it owes, by sequence number, and where
 * in the current reply frame the bytes have reached. Each frame that is not the reply owed next
 * is classified (message.ts) and counted by its kind; the connection goes on.
 */
export class BenchConnection extends SocketConnection implements OwedReplies {
  /** This connection's number in the run, which every message it sends carries. */
  readonly connection: number;
  /** The oldest sequence number owed (the next to send when nothing is). */
  head = 0;
  /** The next sequence number to send. */
  next = 0;
  /** Send times of messages head..next-1 in a ring; NaN for one answered out of order. */
  #sendTimes: Float64Array;
  #start = 0;
  #owed = 0;
  #offsetInFrame = 0;
  /** The reply owed next, built when its frame begins. */
  #expected: Buffer | undefined;
  /** The current frame, once it is known to be wrong: kept whole to be classified. */
  #frame: Buffer | undefined;
  #frameWrong = false;
  /** The current frame began with nothing owed. */
  #extra = false;
  /** With `hello`: the server's first line, until its newline has come. */
  #hello: Buffer | undefined;

  constructor(run: Run, socket: BenchSocket) {
    super(run, socket);
    this.connection = run.nextConnection++;
    this.#sendTimes = new Float64Array(Math.max(4, run.options.pipeline));
    if (run.options.hello) this.#hello = Buffer.alloc(0);
  }

  get spent(): boolean {
    return this.quota === 0 && this.#owed === 0;
  }

  isOverdue(now: number, limitMs: number): boolean {
    return this.#owed > 0 && now - this.#sendTimes[this.#start]! > limitMs;
  }

  owes(sequence: number): boolean {
    const index = sequence - this.head;
    if (index < 0 || index >= this.next - this.head) return false;
    return !Number.isNaN(this.#sendTimes[(this.#start + index) % this.#sendTimes.length]!);
  }

  send(count: number, stamp: number): void {
    count = this.take(count);
    if (count === 0) return;
    const codec = this.run.codec;
    const first = this.next;
    for (let i = 0; i < count; i++) this.#push(stamp);
    if (this.socket.messages) {
      for (let i = 0; i < count; i++) this.socket.write(codec.message(this.connection, first + i));
      return;
    }
    const size = codec.size;
    const bytes = Buffer.allocUnsafe(count * size);
    for (let i = 0; i < count; i++) codec.write(bytes, i * size, this.connection, first + i);
    this.socket.write(bytes);
  }

  /**
   * Verifies and frames received bytes; returns how many owed messages they answered (rightly
   * or wrongly: either way the closed loop sends another). `binary` is given for a WebSocket
   * message, which must be one whole reply of the kind that was sent.
   */
  receive(bytes: Buffer, length: number, now: number, binary?: boolean): number {
    if (this.#hello !== undefined) {
      const rest = this.#readHello(bytes.subarray(0, length));
      if (rest === undefined || rest.length === 0) return 0;
      bytes = rest;
      length = rest.length;
    }
    const run = this.run;
    const size = run.codec.replyLength;
    if (binary !== undefined && (binary !== run.sendsBinary || length !== size)) {
      // A message of the wrong kind or length is one wrong reply, whatever its bytes.
      run.mismatchedBytes += length;
      run.errorsByKind.corrupt++;
      run.firstWrongReply ??= Buffer.from(bytes.subarray(0, length));
      return this.#take(this.#owed > 0 ? 'head' : 'none');
    }
    let answered = 0;
    let offset = 0;
    const codec = run.codec;
    while (offset < length) {
      // The usual case, a whole reply owed and read at once, is checked where it lies.
      if (this.#offsetInFrame === 0 && this.#owed > 0 && length - offset >= size) {
        if (codec.isReply(bytes, offset, this.connection, this.head)) {
          run.completed(now, this.#shift());
          answered++;
        } else {
          this.#extra = false;
          this.#expected = codec.reply(this.connection, this.head, this.#expected);
          answered += this.#wrongFrame(Buffer.from(bytes.subarray(offset, offset + size)));
        }
        offset += size;
        continue;
      }
      if (this.#offsetInFrame === 0) this.#beginFrame();
      const at = this.#offsetInFrame;
      const take = Math.min(size - at, length - offset);
      if (!this.#frameWrong && bytes.compare(this.#expected!, at, at + take, offset, offset + take) !== 0) {
        this.#frameWrong = true;
        this.#frame = Buffer.allocUnsafe(size);
        this.#expected!.copy(this.#frame, 0, 0, at);
      }
      if (this.#frameWrong) bytes.copy(this.#frame!, at, offset, offset + take);
      offset += take;
      this.#offsetInFrame += take;
      if (this.#offsetInFrame < size) continue;
      this.#offsetInFrame = 0;
      if (!this.#frameWrong) {
        run.completed(now, this.#shift());
        answered++;
      } else {
        answered += this.#wrongFrame(this.#frame!);
      }
    }
    return answered;
  }

  protected dropOwed(): number {
    const owed = this.#owed;
    this.#owed = 0;
    this.#start = 0;
    this.head = this.next;
    return owed;
  }

  #beginFrame(): void {
    // With nothing owed, whatever comes is a frame too many: kept whole and classified.
    this.#extra = this.#frameWrong = this.#owed === 0;
    if (this.#frameWrong) this.#frame = Buffer.allocUnsafe(this.run.codec.replyLength);
    else this.#expected = this.run.codec.reply(this.connection, this.head, this.#expected);
  }

  /** Counts a whole wrong frame by its kind; returns 1 if it took the place of an owed message. */
  #wrongFrame(frame: Buffer): number {
    const run = this.run;
    const { kind, takes } = classifyReply(run.codec, frame, this);
    run.errorsByKind[kind]++;
    run.firstWrongReply ??= frame;
    run.mismatchedBytes += this.#extra ? frame.length : differingBytes(frame, this.#expected!);
    return this.#take(takes);
  }

  /** The owed message a wrong reply stands for is answered without a latency; returns 1 if there was one. */
  #take(takes: 'head' | 'none' | number): number {
    if (takes === 'none') return 0;
    if (takes === 'head') this.#shift();
    else this.#sendTimes[(this.#start + takes - this.head) % this.#sendTimes.length] = Number.NaN;
    if (takes !== 'head') this.#owed--;
    this.run.answeredWrongly();
    return 1;
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
        run.errorsByKind.corrupt++;
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

  #push(stamp: number): void {
    const span = this.next - this.head;
    if (span === this.#sendTimes.length) this.#grow(span);
    this.#sendTimes[(this.#start + span) % this.#sendTimes.length] = stamp;
    this.next++;
    this.#owed++;
  }

  /** Takes the oldest owed message off; returns its send time. Messages answered out of order after it go too. */
  #shift(): number {
    const times = this.#sendTimes;
    const stamp = times[this.#start]!;
    this.#start = (this.#start + 1) % times.length;
    this.head++;
    this.#owed--;
    while (this.head < this.next && Number.isNaN(times[this.#start]!)) {
      this.#start = (this.#start + 1) % times.length;
      this.head++;
    }
    return stamp;
  }

  #grow(span: number): void {
    const bigger = new Float64Array(this.#sendTimes.length * 2);
    for (let i = 0; i < span; i++) bigger[i] = this.#sendTimes[(this.#start + i) % this.#sendTimes.length]!;
    this.#sendTimes = bigger;
    this.#start = 0;
  }
}
