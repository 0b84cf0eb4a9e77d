// One UDP socket of the bench: every datagram numbered, so loss, duplicates, reordering and late replies are counted exactly.
//
// A datagram's first digits carry its sequence number (decimal digits, which the built-in
// transforms leave alone); a reply is matched to its message by them, not by arrival order. A
// reply that does not come within --timeout counts that datagram lost (a timeout error) and the
// socket goes on: UDP loses datagrams, and one loss must not stall or end a socket.

import { SocketConnection } from './connection.js';
import type { Run } from './run.js';
import type { BenchSocket } from '../protocol/transports.js';

/** Digits of sequence number at the start of each datagram (the rest is the payload). */
const MAX_DIGITS = 10;
/** Replies remembered for spotting duplicates: far more than can be in flight. */
const REMEMBERED = 1 << 16;

/** How many leading bytes of a `size`-byte message carry the sequence number (0: too small to tag). */
export function sequenceDigits(size: number, lines: boolean): number {
  return Math.max(0, Math.min(MAX_DIGITS, size - (lines ? 1 : 0)));
}

export class DatagramConnection extends SocketConnection {
  readonly #digits: number;
  readonly #modulus: number;
  /** Where the digits sit in a reply: after the expected prefix. */
  readonly #replyOffset: number;
  #next = 0;
  /** Sequence number -> when it was sent, oldest first (Map keeps insertion order). */
  readonly #outstanding = new Map<number, number>();
  /** Counted lost, in case the reply still comes. */
  readonly #expired = new Set<number>();
  /** Answered, for spotting duplicates; pruned to the most recent. */
  readonly #answered = new Set<number>();
  #highest = -1;

  constructor(run: Run, socket: BenchSocket, digits: number) {
    super(run, socket);
    this.#digits = digits;
    this.#modulus = 10 ** digits;
    this.#replyOffset = run.expected.length - run.payload.length;
  }

  get spent(): boolean {
    return this.quota === 0 && this.#outstanding.size === 0;
  }

  // Overdue datagrams are expired one by one (expireOverdue); the socket itself never is.
  isOverdue(): boolean {
    return false;
  }

  send(count: number, stamp: number): void {
    count = this.take(count);
    const run = this.run;
    for (let i = 0; i < count; i++) {
      const sequence = this.#next++ % this.#modulus;
      // Its own buffer: a datagram may still be queued in the socket when the next is stamped.
      const datagram = Buffer.from(run.payload);
      datagram.write(String(sequence).padStart(this.#digits, '0'), 0, 'latin1');
      this.#outstanding.set(sequence, stamp);
      run.datagrams.sent++;
      this.socket.write(datagram);
    }
  }

  /** One reply datagram: matched to its message by number, then checked byte for byte. */
  receive(bytes: Buffer, length: number, now: number): number {
    const run = this.run;
    const sequence = this.#sequenceIn(bytes, length);
    if (sequence === undefined || !this.#matches(bytes, length)) {
      run.mismatchedBytes += Math.max(1, this.#differing(bytes, length));
      run.errorsByKind.mismatch++;
      return 0;
    }
    const sentAt = this.#outstanding.get(sequence);
    if (sentAt === undefined) {
      if (this.#expired.delete(sequence)) {
        run.datagrams.late++;
        run.datagrams.lost--;
      } else if (this.#answered.has(sequence)) {
        run.datagrams.duplicates++;
      } else {
        // A number never sent (or long forgotten): not a reply to anything.
        run.mismatchedBytes += length;
        run.errorsByKind.mismatch++;
      }
      return 0;
    }
    this.#outstanding.delete(sequence);
    this.#remember(sequence);
    run.datagrams.received++;
    if (sequence < this.#highest) run.datagrams.reordered++;
    else this.#highest = sequence;
    run.completed(now, sentAt);
    return 1;
  }

  /** Counts every datagram older than `limitMs` lost; returns how many, for the caller to replace. */
  expireOverdue(now: number, limitMs: number): number {
    const run = this.run;
    let expired = 0;
    for (const [sequence, sentAt] of this.#outstanding) {
      if (now - sentAt <= limitMs) break;
      this.#outstanding.delete(sequence);
      this.#expired.add(sequence);
      expired++;
    }
    if (expired === 0) return 0;
    run.datagrams.lost += expired;
    run.errorsByKind.timeout += expired;
    run.lost(expired);
    return expired;
  }

  protected dropOwed(): number {
    const owed = this.#outstanding.size;
    this.#outstanding.clear();
    return owed;
  }

  #sequenceIn(bytes: Buffer, length: number): number | undefined {
    if (length !== this.run.expected.length) return undefined;
    let sequence = 0;
    for (let i = this.#replyOffset; i < this.#replyOffset + this.#digits; i++) {
      const digit = bytes[i]! - 0x30;
      if (digit < 0 || digit > 9) return undefined;
      sequence = sequence * 10 + digit;
    }
    return sequence;
  }

  /** Every byte but the sequence digits is the expected reply's. */
  #matches(bytes: Buffer, length: number): boolean {
    const expected = this.run.expected;
    const digitsEnd = this.#replyOffset + this.#digits;
    return bytes.compare(expected, 0, this.#replyOffset, 0, this.#replyOffset) === 0 && bytes.compare(expected, digitsEnd, length, digitsEnd, length) === 0;
  }

  #differing(bytes: Buffer, length: number): number {
    const expected = this.run.expected;
    let differing = Math.abs(length - expected.length);
    for (let i = 0; i < Math.min(length, expected.length); i++) {
      if (i >= this.#replyOffset && i < this.#replyOffset + this.#digits) continue;
      if (bytes[i] !== expected[i]) differing++;
    }
    return differing;
  }

  #remember(sequence: number): void {
    this.#answered.add(sequence);
    if (this.#answered.size > REMEMBERED) {
      const oldest = this.#answered.values().next().value;
      if (oldest !== undefined) this.#answered.delete(oldest);
    }
  }
}
