// One client connection: what every transport shares (counters, transform, logs, failures).

import { isIP } from 'node:net';
import { describeBytes, type Logger } from '../core/log.js';
import { formatHostPort } from '../core/address.js';
import { DelayQueue } from './delay.js';
import { LineSplitter } from '../protocol/framing.js';
import { canonicalAddress } from './limits.js';
import { parseProxyHeader, type ProxyHeader } from '../protocol/proxy-protocol.js';
import type { ConnectionFault, Faults } from './faults.js';
import type { ServerStats, StreamTransport } from './stats.js';
import type { Transform } from '../protocol/transforms.js';

/** Close codes (RFC 6455) for the server's own reasons to end a connection: going away (idle), internal error (a transform failed). */
export type ServerCloseCode = 1001 | 1011;

/** Line mode's settings (see framing.ts). */
export interface LineMode {
  maxLine: number;
  /** Put before every echoed line (Istio's tcp-echo-server answers `world` with `hello world`). */
  prefix: Buffer | undefined;
}

/** What a connection needs from the server and listener that own it. */
export interface ConnectionContext {
  /** The listener's transport, for counters and logs. */
  readonly transport: StreamTransport;
  readonly transform: Transform;
  /** The transform is a built-in one: it keeps no reference to a chunk once it returns. */
  readonly transformIsBuiltIn: boolean;
  /** Set in line mode: the transform sees whole lines. */
  readonly lines: LineMode | undefined;
  /** Set when every connection must open with a PROXY header: how long it may take. */
  readonly proxyHeaderTimeoutMs: number | undefined;
  readonly stats: ServerStats;
  readonly log: Logger;
  /** Per-connection log lines (open, close) are on; checked once per event, not per field. */
  readonly logEvents: boolean;
  /** Per-chunk log lines (at `debug`) are on. */
  readonly logData: boolean;
  /** Unsent bytes above which a connection stops reading until its peer catches up. */
  readonly maxBuffered: number;
  /** Milliseconds each received chunk waits before it is answered (a slow server, for tests of timeouts); 0: none. */
  readonly delayMs: number;
  /** Faults to inject on purpose (--fault); undefined: none. */
  readonly faults: Faults | undefined;
  /** The PROXY header named the client: the server admits it by that address, or aborts it. */
  proxyHeaderRead(connection: Connection): void;
  connectionClosed(connection: Connection): void;
}

// Resets and broken pipes are a peer's ordinary way of leaving, not a server fault.
const PEER_GONE_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ETIMEDOUT']);

/**
 * The engine-independent half of a connection, and the per-connection half of the engine seam
 * (engines/engine.ts). Subclasses move bytes (a net.Socket, or the C addon) and call
 * `received`, `inputEnded`, `failed` and `closed`; this class reads the PROXY header if there
 * is one, cuts lines in line mode, applies the transform, and keeps the counters and log lines.
 */
export abstract class Connection {
  readonly id: number;
  /** Counted here unless the engine moves the bytes itself (see engines/native.ts). */
  protected receivedBytes = 0;
  protected sentBytes = 0;
  /** Bytes received at the last shutdown sweep (see shutdown.ts). */
  bytesAtLastSweep = 0;
  /** Traffic seen by the last idle sweep, and how many sweeps in a row saw none (see idle.ts). */
  trafficAtLastIdleSweep = 0;
  quietSweeps = 0;
  /** Counted against --max-connections-per-ip (the server sets and clears this). */
  admittedBySource = false;
  /** The verified client certificate's subject, on an mTLS connection. */
  clientCertificateSubject: string | undefined;
  protected readonly context: ConnectionContext;
  #remoteAddress: string;
  #remotePort: number;
  /** The proxy's own address, once a PROXY header has named the real client. */
  #proxiedBy: string | undefined;
  #closeReason: string | undefined;
  /** Bytes of a PROXY header still arriving; undefined once it is read (or if none is expected). */
  #headerBytes: Buffer | undefined;
  #headerDeadline: NodeJS.Timeout | undefined;
  #lines: LineSplitter | undefined;
  /** With a delay: received chunks waiting to be answered, oldest first (created on first use). */
  #delayed: DelayQueue<Buffer> | undefined;
  /** Input ended while chunks were still waiting: finish once they are answered. */
  #endAfterDelayed = false;
  /** Reading is held because delayed chunks pile up; the subclass must not resume it meanwhile. */
  protected inputHeld = false;
  /** The fault this connection meets at its first message (--fault), until it has met it. */
  #fault: ConnectionFault | undefined;

  constructor(id: number, remoteAddress: string, remotePort: number, context: ConnectionContext) {
    this.id = id;
    this.#remoteAddress = remoteAddress;
    this.#remotePort = remotePort;
    this.context = context;
    // Drawn as connections arrive, so that one seed gives the same faults in the same order.
    this.#fault = context.faults?.connectionFault();
    if (context.proxyHeaderTimeoutMs !== undefined) {
      this.#headerBytes = Buffer.alloc(0);
      this.#headerDeadline = setTimeout(
        () => this.#rejectHeader(`no complete PROXY header within ${context.proxyHeaderTimeoutMs! / 1000}s`),
        context.proxyHeaderTimeoutMs,
      );
      this.#headerDeadline.unref();
    }
  }

  /** Bytes received from the client. */
  get bytesReceived(): number {
    return this.receivedBytes;
  }

  /** Bytes accepted for sending, less any dropped at an abrupt close. */
  get bytesSent(): number {
    return this.sentBytes;
  }

  /** The client's address: the PROXY header's source where there is one, else the socket peer. */
  get remoteAddress(): string {
    return this.#remoteAddress;
  }

  get remotePort(): number {
    return this.#remotePort;
  }

  get peer(): string {
    // Unix socket clients have no IP address: they are shown by the socket path.
    return isIP(this.#remoteAddress) === 0
      ? this.#remoteAddress
      : formatHostPort(this.#remoteAddress, this.#remotePort);
  }

  /** The proxy that relayed this connection (its own address), when a PROXY header named the client. */
  get proxiedBy(): string | undefined {
    return this.#proxiedBy;
  }

  /** Still waiting for the PROXY header: not yet admitted as a client. */
  get awaitingProxyHeader(): boolean {
    return this.#headerBytes !== undefined;
  }

  /** Bytes moved in either direction: received, plus handed to the kernel. */
  get trafficCount(): number {
    return this.bytesReceived + this.bytesSent - this.transportPendingBytes;
  }

  /** Bytes not yet handed to the kernel: replies queued for sending, and chunks waiting out a delay. */
  get pendingBytes(): number {
    return this.transportPendingBytes + this.delayedBytes;
  }

  /** Received bytes still waiting out the delay before they are answered. */
  get delayedBytes(): number {
    return this.#delayed?.bytes ?? 0;
  }

  /** Bytes accepted for sending that the kernel has not taken yet. */
  protected abstract get transportPendingBytes(): number;

  /** Stop reading: delayed chunks pile up past maxBuffered. */
  protected abstract holdInput(): void;

  /** Reading may go on again, unless the subclass has its own reason to wait. */
  protected abstract releaseInput(): void;

  /** Sends every pending byte, then FIN; the connection closes once the peer closes too. */
  abstract finish(): void;

  /** Says why the connection is closing, unless a reason is already known (the first one stands). */
  protected closeBecause(reason: string): void {
    this.#closeReason ??= reason;
  }

  /**
   * Ends the connection for a reason of the server's (`code`: 1001 idle, 1011 a failed
   * transform). A byte stream has no words for why: an idle one is closed at once, as by
   * `abort`, and a failed one is reset, the one way TCP has to say that the conversation failed
   * rather than ended (a client, or a proxy's log, then tells it from a clean close). A WebSocket
   * sends a close frame with the code first (see engines/websocket.ts).
   */
  endWithCode(reason: string, code: ServerCloseCode): void {
    if (code !== 1011) return this.abort(reason);
    this.#closeReason ??= reason;
    this.#delayed?.clear();
    this.reset();
  }

  /** Closes at once, dropping whatever is still pending. */
  abort(reason: string): void {
    this.#closeReason ??= reason;
    this.#delayed?.clear();
    this.destroy();
  }

  protected abstract destroy(): void;

  /** Closes at once with a TCP reset (SO_LINGER 0), for --fault reset. */
  protected abstract reset(): void;

  /** True once our side has sent FIN: late input is dropped, there is nowhere to echo it. */
  protected abstract get outputEnded(): boolean;

  /** Queues `reply` for sending; the subclass applies backpressure past `maxBuffered`. */
  protected abstract send(reply: Buffer): void;

  /** Handles one received chunk, which the connection owns (the transform may change it in place). */
  protected received(chunk: Buffer): void {
    if (this.#headerBytes !== undefined) {
      const rest = this.#readProxyHeader(chunk);
      if (rest === undefined || rest.length === 0) return;
      chunk = rest;
    }
    const context = this.context;
    this.receivedBytes += chunk.length;
    context.stats.bytesReceived += chunk.length;
    if (context.logData) {
      context.log.debug(
        { event: 'data', conn: this.id, peer: this.peer, bytes: chunk.length },
        `received ${chunk.length} bytes from ${this.peer} (#${this.id}): ${describeBytes(chunk)}`,
      );
    }
    if (this.outputEnded) return;
    if (this.#fault !== undefined && this.#meetFault(chunk, this.#fault)) return;
    const delayMs = context.delayMs + (context.faults?.delayMs() ?? 0);
    if (delayMs > 0) {
      if (delayMs > context.delayMs) context.stats.faults.delay++;
      return this.#delay(chunk, delayMs);
    }
    this.#answer(chunk);
  }

  /** Applies the connection's fault at its first message; true when `chunk` is dealt with. */
  #meetFault(chunk: Buffer, fault: ConnectionFault): boolean {
    this.#fault = undefined;
    const context = this.context;
    context.stats.faults[fault.kind]++;
    const what = fault.kind === 'stall' ? `stall for ${fault.seconds}s` : fault.kind;
    context.log.info(
      { event: 'fault', kind: fault.kind, conn: this.id, peer: this.peer },
      `fault on purpose: ${what} on ${this.peer} (#${this.id})`,
    );
    switch (fault.kind) {
      case 'reset':
        this.#closeReason = 'reset on purpose (--fault reset)';
        this.reset();
        return true;
      case 'close':
        this.#closeReason = 'closed on purpose (--fault close)';
        this.finish();
        return true;
      case 'truncate': {
        const reply = this.#transform(chunk);
        if (reply === undefined) return true;
        this.#closeReason = 'truncated on purpose (--fault truncate)';
        // Part of the reply, then FIN: the client sees a short answer and end of stream.
        const part = reply.subarray(0, Math.floor(reply.length / 2));
        if (part.length > 0) this.#sendReply(Buffer.from(part));
        this.finish();
        return true;
      }
      case 'stall':
        // Neither read nor answer for that long; then the stalled chunk, and everything after it.
        this.inputHeld = true;
        this.holdInput();
        this.#delay(chunk, fault.seconds * 1000);
        setTimeout(() => {
          if (!this.inputHeld) return;
          this.inputHeld = false;
          this.releaseInput();
        }, fault.seconds * 1000).unref();
        return true;
    }
  }

  #answer(chunk: Buffer): void {
    const context = this.context;
    const reply = context.lines === undefined ? this.#transform(chunk) : this.#replyToLines(chunk, context.lines);
    if (reply !== undefined) this.#sendReply(reply);
  }

  /** Answers `chunk` after `delayMs`, in arrival order, holding input while too much waits. */
  #delay(chunk: Buffer, delayMs: number): void {
    const context = this.context;
    const queue = (this.#delayed ??= new DelayQueue<Buffer>(context.delayMs, byteLength, (due) =>
      this.#answerDelayed(due),
    ));
    // Copied: the chunk may sit in a buffer that the next read reuses.
    queue.push(Buffer.from(chunk), delayMs);
    if (queue.bytes >= context.maxBuffered && !this.inputHeld) {
      this.inputHeld = true;
      this.holdInput();
      context.stats.backpressurePauses++;
    }
  }

  #answerDelayed(due: Buffer[]): void {
    const queue = this.#delayed!;
    for (const chunk of due) {
      // An answer can end the connection (a transform error aborts it): the rest are dropped.
      if (queue.cleared) return;
      if (this.outputEnded) break;
      this.#answer(chunk);
    }
    // Every waiting chunk comes due in turn, answered or (once our side has ended) dropped, so a
    // hold always ends, and reading goes on to see the peer's FIN.
    if (this.inputHeld && queue.bytes <= this.context.maxBuffered / 2) {
      this.inputHeld = false;
      this.releaseInput();
    }
    if (this.#endAfterDelayed && queue.bytes === 0) {
      this.#endAfterDelayed = false;
      this.inputEnded();
    }
  }

  /** The peer sent FIN: echo a partial last line, then everything pending, then our FIN. */
  protected inputEnded(): void {
    if (this.#headerBytes !== undefined) {
      this.#rejectHeader('connection ended before its PROXY header');
      return;
    }
    if (this.#delayed !== undefined && this.#delayed.bytes > 0) {
      // Chunks still wait out the delay: their replies go first, then the rest of this.
      this.#endAfterDelayed = true;
      return;
    }
    const tail = this.#lines?.flush();
    if (tail !== undefined && !this.outputEnded) {
      this.context.stats.messages[this.context.transport]++;
      const reply = this.#transformLine(tail, this.context.lines!);
      if (reply === undefined) return;
      this.#sendReply(reply);
    }
    this.finish();
  }

  #sendReply(reply: Buffer): void {
    this.sentBytes += reply.length;
    this.context.stats.bytesSent += reply.length;
    this.send(reply);
  }

  #transform(input: Buffer): Buffer | undefined {
    try {
      return this.context.transform(input);
    } catch (err) {
      const context = this.context;
      context.stats.errors.transform++;
      context.log.error(
        { event: 'error', kind: 'transform', conn: this.id, peer: this.peer, err: String(err) },
        `transform failed for ${this.peer} (#${this.id}), closing it: ${String(err)}`,
      );
      this.endWithCode('transform error', 1011);
      return undefined;
    }
  }

  #transformLine(line: Buffer, mode: LineMode): Buffer | undefined {
    const reply = this.#transform(line);
    if (reply === undefined || mode.prefix === undefined) return reply;
    return Buffer.concat([mode.prefix, reply]);
  }

  /** Every complete line in `chunk`, transformed, as one write. */
  #replyToLines(chunk: Buffer, mode: LineMode): Buffer | undefined {
    const splitter = (this.#lines ??= new LineSplitter(mode.maxLine));
    const { lines, overflow } = splitter.push(chunk);
    this.context.stats.messages[this.context.transport] += lines.length;
    const replies: Buffer[] = [];
    for (const line of lines) {
      const reply = this.#transformLine(line, mode);
      if (reply === undefined) return undefined;
      replies.push(reply);
    }
    if (overflow) {
      // Answered, not just cut: a client (or a person at a prompt) learns what went wrong.
      replies.push(Buffer.from(`error: line longer than ${mode.maxLine} bytes (--max-line); closing\n`));
      this.context.stats.errors.line_too_long++;
      this.#closeReason ??= `line longer than ${mode.maxLine} bytes`;
      const reply = Buffer.concat(replies);
      this.#sendReply(reply);
      this.finish();
      return undefined;
    }
    if (replies.length <= 1) return replies[0];
    return Buffer.concat(replies);
  }

  /** Feeds the PROXY header; returns the bytes after it once complete, undefined until then. */
  #readProxyHeader(chunk: Buffer): Buffer | undefined {
    const input = this.#headerBytes!.length === 0 ? chunk : Buffer.concat([this.#headerBytes!, chunk]);
    const result = parseProxyHeader(input);
    if (result.status === 'incomplete') {
      // Copied: the chunk's memory may be reused once we return.
      this.#headerBytes = Buffer.from(input);
      return undefined;
    }
    if (result.status === 'invalid') {
      this.#rejectHeader(result.reason);
      return undefined;
    }
    this.#headerBytes = undefined;
    clearTimeout(this.#headerDeadline);
    this.#headerDeadline = undefined;
    this.useProxyHeader(result.header);
    this.context.proxyHeaderRead(this);
    return this.outputEnded ? undefined : input.subarray(result.header.length);
  }

  /** Sends `line` before any echo (the hello line), when the connection is known and admitted. */
  greet(line: string): void {
    if (!this.outputEnded) this.#sendReply(Buffer.from(line));
  }

  /** What the hello line says of this connection: its addresses, and TLS where it has it. */
  helloFields(): Record<string, unknown> {
    return { local: this.localEndpoint(), client: this.peer, ...this.transportDetails() };
  }

  /** The address the client reached, as `host:port` (a path for Unix sockets). */
  protected abstract localEndpoint(): string | undefined;

  /** Transport details for the hello line (TLS's); none by default. */
  protected transportDetails(): Record<string, unknown> {
    return {};
  }

  /** Takes the client's address from a PROXY header (read here, or before TLS by the listener). */
  useProxyHeader(header: ProxyHeader): void {
    if (header.command !== 'proxy' || header.source === undefined) return;
    this.#proxiedBy = this.peer;
    this.#remoteAddress = canonicalAddress(header.source.address);
    this.#remotePort = header.source.port;
  }

  #rejectHeader(reason: string): void {
    if (this.#headerBytes === undefined) return;
    this.#headerBytes = undefined;
    clearTimeout(this.#headerDeadline);
    const context = this.context;
    context.stats.errors.proxy_header++;
    context.log.warn(
      { event: 'error', kind: 'proxy_header', conn: this.id, peer: this.peer, err: reason },
      `bad PROXY header from ${this.peer} (#${this.id}), closing it: ${reason}`,
    );
    this.abort(`bad PROXY header: ${reason}`);
  }

  /** Counts a transport error by kind; the subclass closes the connection. */
  protected failed(code: string | undefined, message: string): void {
    const context = this.context;
    if (code !== undefined && PEER_GONE_CODES.has(code)) {
      context.stats.errors.reset++;
      this.#closeReason ??= `reset by peer (${code})`;
    } else {
      context.stats.errors.socket++;
      this.#closeReason ??= `error: ${message}`;
      context.log.warn(
        { event: 'error', kind: 'socket', conn: this.id, peer: this.peer, err: message, code },
        `socket error on ${this.peer} (#${this.id}): ${message}`,
      );
    }
  }

  /** Called once, when the transport has closed; `unsent` bytes never reached the peer. */
  protected closed(unsent: number): void {
    clearTimeout(this.#headerDeadline);
    this.#delayed?.clear();
    const context = this.context;
    this.sentBytes -= unsent;
    context.stats.bytesSent -= unsent;
    if (context.logEvents) {
      const reason = this.#closeReason ?? 'closed';
      context.log.info(
        {
          event: 'close',
          conn: this.id,
          peer: this.peer,
          reason,
          bytesReceived: this.bytesReceived,
          bytesSent: this.bytesSent,
        },
        `connection from ${this.peer} ${reason} (#${this.id}, ${this.bytesReceived} bytes in, ${this.bytesSent} out)`,
      );
    }
    context.connectionClosed(this);
  }
}

const byteLength = (chunk: Buffer): number => chunk.length;
