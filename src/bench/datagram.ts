// One UDP socket of the bench: every datagram numbered, so loss, duplicates, reordering and late replies are counted exactly.
//
// Each datagram is a message of message.ts, carrying its socket's number and its sequence number;
// a reply is matched to its message by them, not by arrival order. A reply that does not come
// within --timeout counts that datagram lost (a timeout error) and the socket goes on: UDP loses
// datagrams, and one loss must not stall or end a socket. Duplicated and reordered datagrams are
// what UDP may do on a network, so they are counted in `datagrams`, not as errors; another
// socket's datagram (crossed) and bytes that are no datagram's reply (corrupt) are errors.

import { SocketConnection } from './connection.js';
import { CONNECTION_MODULUS } from './message.js';
import type { Run } from './run.js';
import type { BenchSocket } from '../protocol/transports.js';

/** Replies remembered for spotting duplicates: far more than can be in flight. */
const REMEMBERED = 1 << 16;

export class DatagramConnection extends SocketConnection {
  /** This socket's number in the run, which every datagram it sends carries. */
  readonly connection: number;
  #next = 0;
  /** Sequence number (modulo the codec's) -> when it was sent, oldest first (Map keeps insertion order). */
  readonly #outstanding = new Map<number, number>();
  /** Counted lost, in case the reply still comes: sequence number -> when it was sent. */
  readonly #expired = new Map<number, number>();
  /** Answered, for spotting duplicates, with when they were sent; pruned to the most recent. */
  readonly #answered = new Map<number, number>();
  #highest = -1;

  constructor(run: Run, socket: BenchSocket) {
    super(run, socket);
    this.connection = run.nextConnection++;
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
    const codec = run.codec;
    for (let i = 0; i < count; i++) {
      const sequence = this.#next++ % codec.sequenceModulus;
      // Its own buffer: a datagram may still be queued in the socket when the next is made.
      this.#outstanding.set(sequence, stamp);
      // The datagram counts are the measured window's, as `messages` is.
      if (run.phase === 'measuring') run.datagrams.sent++;
      this.socket.write(codec.message(this.connection, sequence));
    }
  }

  /** One reply datagram: matched to its message by its id, which checks every byte. */
  receive(bytes: Buffer, length: number, now: number): number {
    const run = this.run;
    const id = run.codec.identify(bytes.subarray(0, length));
    if (id === undefined) {
      run.mismatchedBytes += length;
      run.errorsByKind.corrupt++;
      run.firstWrongReply ??= Buffer.from(bytes.subarray(0, length));
      return 0;
    }
    if (run.codec.connectionDigits > 0 && id.connection !== this.connection % CONNECTION_MODULUS) {
      run.errorsByKind.crossed++;
      return 0;
    }
    const sequence = id.sequence;
    const sentAt = this.#outstanding.get(sequence);
    if (sentAt === undefined) {
      const expiredAt = this.#expired.get(sequence);
      const answeredAt = this.#answered.get(sequence);
      if (expiredAt !== undefined) {
        this.#expired.delete(sequence);
        if (run.inWindow(expiredAt)) {
          run.datagrams.late++;
          run.datagrams.lost--;
        }
      } else if (answeredAt !== undefined) {
        if (run.inWindow(answeredAt)) run.datagrams.duplicates++;
      } else {
        // A number never sent (or long forgotten): not a reply to anything.
        run.mismatchedBytes += length;
        run.errorsByKind.corrupt++;
      }
      return 0;
    }
    this.#outstanding.delete(sequence);
    this.#remember(sequence, sentAt);
    const counted = run.inWindow(sentAt);
    if (counted) run.datagrams.received++;
    if (sequence < this.#highest) {
      if (counted) run.datagrams.reordered++;
    } else {
      this.#highest = sequence;
    }
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
      this.#expired.set(sequence, sentAt);
      expired++;
      if (run.inWindow(sentAt)) run.datagrams.lost++;
    }
    if (expired === 0) return 0;
    run.errorsByKind.timeout += expired;
    run.lost(expired);
    return expired;
  }

  protected dropOwed(): number {
    const owed = this.#outstanding.size;
    this.#outstanding.clear();
    return owed;
  }

  #remember(sequence: number, sentAt: number): void {
    this.#answered.set(sequence, sentAt);
    if (this.#answered.size > REMEMBERED) {
      const oldest = this.#answered.keys().next().value;
      if (oldest !== undefined) this.#answered.delete(oldest);
    }
  }
}
