// Every message the bench sends is unique and says whose it is, so that each reply is classified (crossed, stale, reordered, duplicated, corrupt), not just compared.
//
// A message is [id][filler][tail]: the id is the connection's number and the message's sequence
// number in upper-case hexadecimal (which `upper` leaves alone, and which is printable for lines
// and WebSocket text); the filler is the run's random template rotated by an amount derived from
// the id, so that a reply spliced from two messages does not pass either; the tail is the
// line's `\n`. The expected reply is the expectation's prefix and the transformed message.
// native/bench_engine.c builds and checks the same bytes for the closed loop it carries.

import { randomBytes } from 'node:crypto';
import type { Transform } from '../protocol/transforms.js';

/** Hex digits of the connection number and the sequence number, when the message has room. */
export const CONNECTION_DIGITS = 6;
export const SEQUENCE_DIGITS = 10;
const FULL_ID = CONNECTION_DIGITS + SEQUENCE_DIGITS;
/** Connection numbers wrap here (they only need to tell apart the connections of one run). */
export const CONNECTION_MODULUS = 16 ** CONNECTION_DIGITS;

/** What a reply was found to be. `ok` is the reply owed next; the rest are errors. */
export type ReplyKind = 'ok' | 'crossed' | 'stale' | 'reordered' | 'duplicated' | 'corrupt';
export const WRONG_REPLY_KINDS = ['crossed', 'stale', 'reordered', 'duplicated', 'corrupt'] as const;
export type WrongReplyKind = (typeof WRONG_REPLY_KINDS)[number];

/** How much a run's messages can tell, by their size: said in the result so nobody trusts more. */
export type Verification = 'connection-and-sequence' | 'sequence' | 'bytes';

const HEX = Buffer.from('0123456789ABCDEF', 'latin1');
const TWO_32 = 2 ** 32;

/** The bytes of one run's messages and replies, and the reading of an id back out of a reply. */
export class MessageCodec {
  readonly size: number;
  /** Hex digits of connection and sequence number at the start of each message. */
  readonly connectionDigits: number;
  readonly sequenceDigits: number;
  readonly sequenceModulus: number;
  /** The expected reply's length: prefix, and the transformed message. */
  readonly replyLength: number;
  readonly verification: Verification;
  readonly #template: Buffer;
  /** The template twice over: a rotation of it is one slice. */
  readonly #templateTwice: Buffer;
  /** The template as the built-in transform returns it; undefined for a custom transform. */
  readonly #replyTemplate: Buffer | undefined;
  readonly #replyTemplateTwice: Buffer | undefined;
  readonly #tail: Buffer;
  readonly #replyTail: Buffer;
  readonly #prefix: Buffer;
  readonly #transform: Transform;
  readonly #fillerLength: number;

  /**
   * `bytewise`: the transform maps each byte on its own and leaves 0-9 and A-F alone (echo,
   * upper), so replies are built from a transformed template instead of a call per message.
   */
  constructor(options: {
    size: number;
    lines: boolean;
    text: boolean;
    transform: Transform;
    bytewise: boolean;
    prefix?: string | undefined;
    /** Random bytes (at least `size`) to build the filler from: generators of one run share them. */
    seed?: Uint8Array | undefined;
  }) {
    const { size, lines } = options;
    this.size = size;
    const usable = size - (lines ? 1 : 0);
    this.connectionDigits = usable >= FULL_ID ? CONNECTION_DIGITS : 0;
    this.sequenceDigits = usable >= FULL_ID ? SEQUENCE_DIGITS : Math.max(0, Math.min(SEQUENCE_DIGITS, usable));
    this.sequenceModulus = 16 ** this.sequenceDigits;
    this.verification =
      this.connectionDigits > 0 ? 'connection-and-sequence' : this.sequenceDigits > 0 ? 'sequence' : 'bytes';
    const idLength = this.connectionDigits + this.sequenceDigits;
    this.#fillerLength = usable - idLength;
    // Text messages must be UTF-8 without a newline: printable ASCII will do.
    const random = Buffer.from(options.seed?.subarray(0, this.#fillerLength) ?? randomBytes(this.#fillerLength));
    this.#template = lines || options.text ? printable(random) : random;
    this.#tail = lines ? Buffer.from('\n') : Buffer.alloc(0);
    this.#prefix = Buffer.from(options.prefix ?? '');
    this.#transform = options.transform;
    const copy = (bytes: Buffer) => options.transform(Buffer.from(bytes));
    this.#replyTemplate = options.bytewise ? copy(this.#template) : undefined;
    this.#replyTail = options.bytewise ? copy(this.#tail) : Buffer.alloc(0);
    this.#templateTwice = Buffer.concat([this.#template, this.#template]);
    this.#replyTemplateTwice = this.#replyTemplate && Buffer.concat([this.#replyTemplate, this.#replyTemplate]);
    this.replyLength = this.reply(0, 0).length;
  }

  /** Writes message (connection, sequence) into `into` at `offset`. */
  write(into: Buffer, offset: number, connection: number, sequence: number): void {
    const idLength = this.connectionDigits + this.sequenceDigits;
    writeHex(into, offset, connection, this.connectionDigits);
    writeHex(into, offset + this.connectionDigits, sequence, this.sequenceDigits);
    const rotation = this.#rotation(connection, sequence);
    this.#templateTwice.copy(into, offset + idLength, rotation, rotation + this.#fillerLength);
    if (this.#tail.length > 0) into[offset + idLength + this.#fillerLength] = this.#tail[0]!;
  }

  message(connection: number, sequence: number): Buffer {
    const bytes = Buffer.allocUnsafe(this.size);
    this.write(bytes, 0, connection, sequence);
    return bytes;
  }

  /**
   * The reply that message (connection, sequence) must come back as: written into `reuse` when
   * it is given and the replies are built from the template, else a new Buffer.
   */
  reply(connection: number, sequence: number, reuse?: Buffer): Buffer {
    const template = this.#replyTemplate;
    if (template === undefined)
      return Buffer.concat([this.#prefix, this.#transform(this.message(connection, sequence))]);
    const idLength = this.connectionDigits + this.sequenceDigits;
    const length = this.#prefix.length + idLength + template.length + this.#replyTail.length;
    const bytes = reuse?.length === length ? reuse : Buffer.allocUnsafe(length);
    let at = this.#prefix.copy(bytes, 0);
    writeHex(bytes, at, connection, this.connectionDigits);
    writeHex(bytes, at + this.connectionDigits, sequence, this.sequenceDigits);
    at += idLength;
    const rotation = this.#rotation(connection, sequence);
    this.#replyTemplateTwice!.copy(bytes, at, rotation, rotation + template.length);
    this.#replyTail.copy(bytes, at + template.length);
    return bytes;
  }

  /**
   * Whether `bytes` holds, from `offset`, the whole reply to (connection, sequence): checked
   * where it lies, without building it. Replies from a custom transform are built and compared.
   */
  isReply(bytes: Buffer, offset: number, connection: number, sequence: number): boolean {
    const template = this.#replyTemplateTwice;
    if (template === undefined)
      return (
        bytes.compare(this.reply(connection, sequence), 0, this.replyLength, offset, offset + this.replyLength) === 0
      );
    const prefix = this.#prefix;
    if (prefix.length > 0 && bytes.compare(prefix, 0, prefix.length, offset, offset + prefix.length) !== 0)
      return false;
    let at = offset + prefix.length;
    if (
      !hexIs(bytes, at, connection, this.connectionDigits) ||
      !hexIs(bytes, at + this.connectionDigits, sequence, this.sequenceDigits)
    )
      return false;
    at += this.connectionDigits + this.sequenceDigits;
    const rotation = this.#rotation(connection, sequence);
    const length = this.#fillerLength;
    if (length > 0 && bytes.compare(template, rotation, rotation + length, at, at + length) !== 0) return false;
    const tail = this.#replyTail;
    return tail.length === 0 || bytes.compare(tail, 0, tail.length, at + length, at + length + tail.length) === 0;
  }

  /**
   * The (connection, sequence) a whole reply frame is the exact reply to, or undefined when it
   * is the reply to no message (corrupt). Sequence numbers come back modulo `sequenceModulus`.
   */
  identify(frame: Buffer): { connection: number; sequence: number } | undefined {
    if (frame.length !== this.replyLength) return undefined;
    const at = this.#prefix.length;
    const connection = readHex(frame, at, this.connectionDigits);
    const sequence = readHex(frame, at + this.connectionDigits, this.sequenceDigits);
    if (connection === undefined || sequence === undefined) return undefined;
    return this.reply(connection, sequence).equals(frame) ? { connection, sequence } : undefined;
  }

  /** The template's rotation for a message: consecutive messages of a connection differ. */
  #rotation(connection: number, sequence: number): number {
    const length = this.#fillerLength;
    return length === 0 ? 0 : ((connection % length) * 7 + (sequence % length)) % length;
  }

  /** Arguments for native/bench_engine.c, which builds the same messages in C. */
  nativeLayout():
    | {
        template: Buffer;
        replyTemplate: Buffer;
        tail: Buffer;
        replyTail: Buffer;
        prefix: Buffer;
        connectionDigits: number;
        sequenceDigits: number;
      }
    | undefined {
    if (this.#replyTemplate === undefined) return undefined;
    return {
      template: this.#template,
      replyTemplate: this.#replyTemplate,
      tail: this.#tail,
      replyTail: this.#replyTail,
      prefix: this.#prefix,
      connectionDigits: this.connectionDigits,
      sequenceDigits: this.sequenceDigits,
    };
  }
}

/** What a connection owes, as the classifier needs it: its number, and its sequence numbers. */
export interface OwedReplies {
  readonly connection: number;
  /** The oldest sequence number owed (or, with nothing owed, the next to be sent). */
  readonly head: number;
  /** Sequence numbers sent so far: every one below it was sent. */
  readonly next: number;
  /** Whether `sequence` (head <= sequence < next) is still owed. */
  owes(sequence: number): boolean;
}

/**
 * What a reply frame that is not the head's expected reply is, and which owed message it takes
 * the place of: `head` (it was sent instead of the oldest reply owed), `none` (an extra
 * frame, with nothing owed) or a later sequence number (answered out of order).
 *
 * The rules, in order: bytes that are the reply to no message are corrupt; another
 * connection's message is crossed; a later owed message of this one is reordered; an earlier
 * message of this one is duplicated when nothing is owed (a frame in addition) and stale when
 * something is (a frame instead of the one owed).
 */
export function classifyReply(
  codec: MessageCodec,
  frame: Buffer,
  owed: OwedReplies,
): { kind: WrongReplyKind; takes: 'head' | 'none' | number } {
  const nothingOwed = owed.head === owed.next;
  const takes = nothingOwed ? 'none' : 'head';
  const id = codec.identify(frame);
  if (id === undefined) return { kind: 'corrupt', takes };
  if (codec.connectionDigits > 0 && id.connection !== owed.connection % CONNECTION_MODULUS)
    return { kind: 'crossed', takes };
  // The newest sequence number sent that reads as this one (sequence numbers wrap in small messages).
  const modulus = codec.sequenceModulus;
  const newest = owed.next - 1;
  const sequence = newest - ((((newest - id.sequence) % modulus) + modulus) % modulus);
  if (sequence < 0) return { kind: 'corrupt', takes };
  if (sequence >= owed.head && owed.owes(sequence))
    return { kind: 'reordered', takes: sequence === owed.head ? 'head' : sequence };
  return { kind: nothingOwed ? 'duplicated' : 'stale', takes };
}

/** Bytes of a wrong frame that differ from the reply it was read in place of (at least 1). */
export function differingBytes(frame: Buffer, expected: Buffer): number {
  let count = Math.abs(frame.length - expected.length);
  for (let i = 0; i < Math.min(frame.length, expected.length); i++) if (frame[i] !== expected[i]) count++;
  return Math.max(1, count);
}

/** Writes the low `digits` hex digits of `value` (a whole number below 2^53), upper case. */
function writeHex(into: Buffer, offset: number, value: number, digits: number): void {
  // In two 32-bit halves: integer operations, not a division per digit.
  let low = value >>> 0;
  let high = (value - low) / TWO_32;
  for (let i = digits - 1; i >= 0; i--) {
    into[offset + i] = HEX[low & 15]!;
    low = (low >>> 4) | ((high & 15) << 28);
    high >>>= 4;
  }
}

/** Whether `from` holds, at `offset`, the low `digits` hex digits of `value` as writeHex writes them. */
function hexIs(from: Buffer, offset: number, value: number, digits: number): boolean {
  let low = value >>> 0;
  let high = (value - low) / TWO_32;
  for (let i = digits - 1; i >= 0; i--) {
    if (from[offset + i] !== HEX[low & 15]) return false;
    low = (low >>> 4) | ((high & 15) << 28);
    high >>>= 4;
  }
  return true;
}

function readHex(from: Buffer, offset: number, digits: number): number | undefined {
  let value = 0;
  for (let i = 0; i < digits; i++) {
    const byte = from[offset + i]!;
    const digit = byte >= 0x30 && byte <= 0x39 ? byte - 0x30 : byte >= 0x41 && byte <= 0x46 ? byte - 0x37 : -1;
    if (digit < 0) return undefined;
    value = value * 16 + digit;
  }
  return value;
}

/** Random bytes made printable ASCII (space to tilde), in place. */
function printable(bytes: Buffer): Buffer {
  for (let i = 0; i < bytes.length; i++) bytes[i] = 0x20 + (bytes[i]! % 95);
  return bytes;
}
