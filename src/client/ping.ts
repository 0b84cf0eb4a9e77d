// `echoplex ping`: one message at a time through an echo server, each round trip printed and
// verified, as ping(8) does for ICMP; over TCP, TLS, a Unix socket or UDP.

import { performance } from 'node:perf_hooks';
import type { Writable } from 'node:stream';
import { ConnectError, describeSocketError, isCertificateError, socketErrorWords, UsageError } from '../core/errors.js';
import {
  describeTarget,
  MAX_UDP_PAYLOAD,
  openBenchSocket,
  resolveTarget,
  type BenchSocket,
  type BenchTarget,
} from '../protocol/transports.js';
import type { CustomExpectation } from '../protocol/transforms.js';
import { builtInTransform, type TransformName } from '../protocol/transforms.js';

export interface PingOptions extends Partial<BenchTarget> {
  /** Round trips to make. Default: until `signal` aborts. */
  count?: number;
  /** Seconds from one message to the next. Default 1. */
  intervalSeconds?: number;
  /** Bytes per message. Default 64. */
  size?: number;
  /** Seconds to wait for a connection or a reply before counting the message lost. Default 5. */
  timeoutSeconds?: number;
  /** What the server sends back. Default `echo`. */
  expect?: TransformName | CustomExpectation;
  /** Text the server puts before each reply. */
  expectPrefix?: string;
  /** Open a new connection for every message and time it too (tcping-style). */
  newConnection?: boolean;
  /** The server opens each connection with a hello line (`serve --hello`): read it, and say which instance answered. */
  hello?: boolean;
  /** Stops after the message in flight, as Ctrl-C stops ping. */
  signal?: AbortSignal;
  /** Where the lines go. */
  output: Writable;
}

export interface PingSummary {
  sent: number;
  received: number;
  /** Replies whose bytes differed from what was expected. */
  mismatched: number;
  /** Round-trip times of the verified replies, in milliseconds. */
  rttMs: { min: number; avg: number; max: number; mdev: number } | null;
  /** With `newConnection`: connection set-up times (TLS handshake included), in milliseconds. */
  connectMs: { min: number; avg: number; max: number; mdev: number } | null;
  /** With `hello`: connections per instance that answered. */
  instances: Record<string, number> | null;
}

// Reads of plain TCP land here; each is copied out at once, so every link can share it.
let sharedReadBuffer: Buffer | undefined;

/** A socket error as one short line of ping's output: words, then the code. */
function pingReason(err: NodeJS.ErrnoException, udp: boolean): string {
  // Over UDP, ECONNREFUSED is the kernel passing on an ICMP port unreachable for a datagram.
  const words = udp && err.code === 'ECONNREFUSED' ? 'port unreachable' : socketErrorWords(err.code);
  if (words === undefined) return err.code ?? err.message;
  return `${words} (${err.code})`;
}

type Reply = { kind: 'bytes'; bytes: Buffer } | { kind: 'timeout' } | { kind: 'closed'; reason: string };

/** One connection, read as whole replies: `length` bytes of a stream, or one datagram. */
class PingLink {
  readonly #socket: BenchSocket;
  #buffered: Buffer[] = [];
  #bufferedBytes = 0;
  #closedReason: string | undefined;
  #wake: (() => void) | undefined;

  private constructor(target: BenchTarget, onConnected: () => void, onFailed: (err: Error) => void) {
    let connected = false;
    this.#socket = openBenchSocket(target, (sharedReadBuffer ??= Buffer.allocUnsafe(64 * 1024)), {
      connected: () => {
        connected = true;
        onConnected();
      },
      data: (bytes, length) => {
        // Copied: the bytes may sit in a buffer the next read reuses.
        this.#buffered.push(Buffer.from(bytes.subarray(0, length)));
        this.#bufferedBytes += length;
        this.#wake?.();
      },
      error: (err) => {
        if (!connected) onFailed(err);
        this.#closedReason ??= pingReason(err, target.udp === true);
        this.#wake?.();
      },
      closed: () => {
        this.#closedReason ??= 'connection closed';
        this.#wake?.();
      },
    });
  }

  /** Resolves once connected; rejects with the reason it could not be. */
  static open(target: BenchTarget, timeoutMs: number): Promise<PingLink> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        link.close();
        reject(new Error(`no connection within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      const link: PingLink = new PingLink(
        target,
        () => {
          clearTimeout(timer);
          resolve(link);
        },
        (err) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  send(bytes: Buffer): void {
    this.#socket.write(bytes);
  }

  /** The first line of the stream (a hello line), without its newline; undefined if none comes by `deadline`. */
  async line(deadline: number): Promise<string | undefined> {
    for (;;) {
      const all = Buffer.concat(this.#buffered);
      const end = all.indexOf(0x0a);
      if (end >= 0) {
        this.#buffered = end + 1 < all.length ? [all.subarray(end + 1)] : [];
        this.#bufferedBytes = all.length - end - 1;
        return all.subarray(0, end).toString('utf8');
      }
      if (this.#closedReason !== undefined || performance.now() >= deadline) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, deadline - performance.now());
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.#wake = done;
      });
      this.#wake = undefined;
    }
  }

  /** The next reply: `length` bytes of a stream, or the next datagram whatever its length. */
  async reply(length: number, deadline: number): Promise<Reply> {
    const datagrams = this.#socket.messages;
    for (;;) {
      if (datagrams && this.#buffered.length > 0) {
        const bytes = this.#buffered.shift()!;
        this.#bufferedBytes -= bytes.length;
        return { kind: 'bytes', bytes };
      }
      if (!datagrams && this.#bufferedBytes >= length) {
        const all = Buffer.concat(this.#buffered);
        this.#buffered = all.length > length ? [all.subarray(length)] : [];
        this.#bufferedBytes = all.length - length;
        return { kind: 'bytes', bytes: all.subarray(0, length) };
      }
      if (this.#closedReason !== undefined) return { kind: 'closed', reason: this.#closedReason };
      const left = deadline - performance.now();
      if (left <= 0) return { kind: 'timeout' };
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.#wake = done;
      });
      this.#wake = undefined;
    }
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** ping(8)'s summary figures: min, mean, max and the mean deviation. */
function spread(values: number[]): PingSummary['rttMs'] {
  if (values.length === 0) return null;
  const avg = values.reduce((sum, v) => sum + v, 0) / values.length;
  const meanSquare = values.reduce((sum, v) => sum + v * v, 0) / values.length;
  return {
    min: Math.min(...values),
    avg,
    max: Math.max(...values),
    mdev: Math.sqrt(Math.max(0, meanSquare - avg * avg)),
  };
}

const ms = (value: number) => value.toFixed(3);

/**
 * Pings until `count` messages have gone or `signal` aborts; prints as it goes and a summary at
 * the end. A connection that fails counts its message lost, except over a TLS certificate that
 * is not trusted: that rejects with a ConnectError, since the next try would fail the same way.
 */
export async function runPing(options: PingOptions): Promise<PingSummary> {
  const target = resolveTarget(options);
  const size = options.size ?? 64;
  // An empty message would "come back" at once with nothing timed; a datagram has a ceiling.
  if (!(Number.isInteger(size) && size >= 1)) throw new UsageError(`--size must be at least 1 byte, got ${size}`);
  if (target.udp && size > MAX_UDP_PAYLOAD)
    throw new UsageError(`--size: a UDP message holds at most ${MAX_UDP_PAYLOAD} bytes, got ${size}`);
  if (!((options.timeoutSeconds ?? 5) > 0))
    throw new UsageError(`--timeout must be more than 0 seconds, got ${options.timeoutSeconds}`);
  const timeoutMs = (options.timeoutSeconds ?? 5) * 1000;
  const intervalMs = (options.intervalSeconds ?? 1) * 1000;
  const expect = options.expect ?? 'echo';
  const transform = typeof expect === 'string' ? builtInTransform(expect) : expect.transform;
  const prefix = Buffer.from(options.expectPrefix ?? '');
  const replyTo = (payload: Buffer) => Buffer.concat([prefix, transform(Buffer.from(payload))]);
  const where = describeTarget(target);
  const out = (line: string) => options.output.write(`${line}\n`);
  if (options.hello && target.udp) throw new UsageError('--hello reads the first line of a stream: not with --udp');
  const instances = new Map<string, number>();
  let lastInstance = '';
  const rtts: number[] = [];
  const connects: number[] = [];
  let sent = 0;
  let mismatched = 0;
  let link: PingLink | undefined;
  // UDP: replies of messages that timed out, which may still arrive, by content.
  const overdue = new Map<string, number>();

  const moreToSend = (seq: number) => options.count === undefined || seq < options.count;

  out(`PING ${where}: ${size}-byte messages`);
  const started = performance.now();
  for (let seq = 1; options.count === undefined || seq <= options.count; seq++) {
    if (options.signal?.aborted) break;
    const begin = performance.now();
    if (link === undefined) {
      try {
        link = await PingLink.open(target, timeoutMs);
        const connectMs = performance.now() - begin;
        lastInstance = '';
        if (options.hello) {
          const instance = instanceIn(await link.line(performance.now() + timeoutMs));
          instances.set(instance, (instances.get(instance) ?? 0) + 1);
          lastInstance = ` (instance ${instance})`;
        }
        if (options.newConnection) connects.push(connectMs);
        // A UDP socket's connect sends nothing: there is no connection to report.
        else if (!target.udp) out(`connected to ${where} in ${ms(connectMs)} ms${lastInstance}`);
      } catch (err) {
        // A certificate not trusted now will not be on the next try: stop, as bench and client do.
        if (isCertificateError(err))
          throw new ConnectError(`cannot connect to ${where}: ${describeSocketError(err as Error)}`, err);
        sent++;
        out(`seq=${seq} cannot connect: ${pingReason(err as NodeJS.ErrnoException, false)}`);
        if (moreToSend(seq)) await pause(intervalMs - (performance.now() - begin), options.signal);
        continue;
      }
    }
    const payload = message(seq, size);
    const expected = replyTo(payload);
    const sentAt = performance.now();
    link.send(payload);
    sent++;
    const reply = await replyPassingLateOnes(link, expected.length, sentAt + timeoutMs, overdue, out);
    const rtt = performance.now() - sentAt;
    const connectNote = options.newConnection ? ` connect=${ms(connects.at(-1)!)} ms` : '';
    if (reply.kind === 'bytes' && reply.bytes.equals(expected)) {
      rtts.push(rtt);
      out(
        `${reply.bytes.length} bytes from ${where}: seq=${seq}${connectNote} time=${ms(rtt)} ms${options.newConnection ? lastInstance : ''}`,
      );
    } else if (reply.kind === 'bytes') {
      mismatched++;
      out(
        `${reply.bytes.length} bytes from ${where}: seq=${seq} time=${ms(rtt)} ms MISMATCH (not what ${typeof expect === 'string' ? expect : expect.label} gives)`,
      );
    } else {
      out(`seq=${seq} ${reply.kind === 'timeout' ? `no reply within ${timeoutMs / 1000} s` : reply.reason}`);
      if (target.udp && reply.kind === 'timeout') overdue.set(expected.toString('latin1'), seq);
    }
    // A stream whose reply never came is out of step: the next message starts on a new connection.
    if (options.newConnection || (reply.kind !== 'bytes' && !target.udp) || reply.kind === 'closed') {
      link.close();
      link = undefined;
    }
    if (moreToSend(seq)) await pause(intervalMs - (performance.now() - begin), options.signal);
  }
  link?.close();

  const summary: PingSummary = {
    sent,
    received: rtts.length + mismatched,
    mismatched,
    rttMs: spread(rtts),
    connectMs: options.newConnection ? spread(connects) : null,
    instances: options.hello ? Object.fromEntries(instances) : null,
  };
  const lost = sent - summary.received;
  out(`--- ${where} echo statistics ---`);
  out(
    `${sent} sent, ${summary.received} received, ${sent === 0 ? 0 : Math.round((lost / sent) * 100)}% lost, ${mismatched} mismatched, time ${Math.round(performance.now() - started)} ms`,
  );
  if (summary.connectMs) out(`connect ${formatSpread(summary.connectMs)}`);
  if (summary.rttMs) out(`rtt ${formatSpread(summary.rttMs)}`);
  if (summary.instances)
    out(
      `instances ${Object.entries(summary.instances)
        .map(([name, count]) => `${name}: ${count}`)
        .join(', ')}`,
    );
  return summary;
}

/** The instance a hello line names. */
function instanceIn(line: string | undefined): string {
  if (line === undefined) return '(no hello line)';
  try {
    const hello = JSON.parse(line) as { instance?: unknown };
    return typeof hello.instance === 'string' ? hello.instance : '(not a hello line)';
  } catch {
    return '(not a hello line)';
  }
}

/** The next reply, after any that belong to earlier messages which timed out (UDP), noted as late. */
async function replyPassingLateOnes(
  link: PingLink,
  length: number,
  deadline: number,
  overdue: Map<string, number>,
  out: (line: string) => void,
): Promise<Reply> {
  for (;;) {
    const reply = await link.reply(length, deadline);
    if (reply.kind !== 'bytes') return reply;
    const key = reply.bytes.toString('latin1');
    const lateSeq = overdue.get(key);
    if (lateSeq === undefined) return reply;
    overdue.delete(key);
    out(`late reply to seq=${lateSeq}`);
  }
}

function formatSpread(spread: NonNullable<PingSummary['rttMs']>): string {
  return `min/avg/max/mdev = ${[spread.min, spread.avg, spread.max, spread.mdev].map(ms).join('/')} ms`;
}

/**
 * Message `seq`: its number, letters, and a newline at the end, so that servers that answer whole
 * lines answer it too, and no two messages in a row are alike.
 */
function message(seq: number, size: number): Buffer {
  const payload = Buffer.alloc(size, 0x61 + ((seq - 1) % 26));
  if (size > 1) {
    payload.write(String(seq).slice(-(size - 1)), 'latin1');
    payload[size - 1] = 0x0a;
  }
  return payload;
}

function pause(msLeft: number, signal: AbortSignal | undefined): Promise<void> {
  if (msLeft <= 0 || signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, msLeft);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
