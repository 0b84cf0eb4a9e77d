// The bench's native engine (native/bench_engine.c): TCP connections, over TLS and WebSocket too,
// read, verified, timed and (in the closed loop) answered in C; this file keeps the run's
// accounting in step with it, and makes every decision the engine asks for.

import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { getSystemErrorName } from 'node:util';
import { openSslError } from '../core/errors.js';
import { addonBinding, platformConstants } from '../native/addon.js';
import { formatHostPort } from '../core/address.js';
import { checkUpgradeAnswer, newWebSocketKey, upgradeRequest } from '../protocol/websocket-handshake.js';
import { classifyReply, differingBytes, type MessageCodec } from './message.js';
import type { BenchTarget } from '../protocol/transports.js';
import type { LoadConnection, Run, RunEngine } from './run.js';
import type { BenchErrorKind } from './settings.js';

type BenchHandle = { readonly __brand: 'echoplex.native.bench' };

interface NativeBenchBinding {
  /**
   * Every callback runs with `receiver` as `this`. `onReplies(count)` runs once per turn of the
   * event loop, or when `batch` is full, with `count` (sent at, received at) pairs at the start
   * of `batch`. `onClose(id, status, owed, verifyResult, reason)` runs once per connection, after
   * it closed (`reason`: why TLS failed, or null); its id names nothing after that.
   * `onOpen(id, head)` says TLS is up, with the upgrade's answer over WebSocket, and returns
   * whether to go on.
   */
  createBench(
    receiver: object,
    template: Buffer,
    replyTemplate: Buffer,
    tail: Buffer,
    replyTail: Buffer,
    prefix: Buffer,
    connectionDigits: number,
    sequenceDigits: number,
    batch: Float64Array,
    clockOffsetMs: number,
    onReplies: (count: number) => void,
    onClose: (id: number, status: number, owed: number, verifyResult: number, reason: string | null) => void,
    onWrong: (id: number, frame: Buffer, head: number, next: number, extra: boolean) => number,
    onOpen: (id: number, head: Buffer | undefined) => boolean,
    onWrongMessage: (id: number, start: Buffer, length: number) => number,
  ): BenchHandle;
  /** Connections adopted from now speak TLS; throws with OpenSSL's reason if the context cannot be made. */
  benchUseTls(
    bench: BenchHandle,
    ca: Buffer | null,
    verify: boolean,
    cert: Buffer | null,
    key: Buffer | null,
    host: string | null,
  ): void;
  /** Connections adopted from now carry WebSocket frames, binary or text. */
  benchUseWebSocket(bench: BenchHandle, binary: boolean): void;
  /**
   * Opens a connection to `address` (an IP address) and `port` from `source` (or null), whose
   * messages carry `number`, and returns the id it goes by (a number: an idle connection holds
   * no JavaScript object of the engine's). Over WebSocket, `upgrade` is the request to send.
   * What happens next comes to `onOpen`, or (first) to `onClose`.
   */
  benchConnect(
    bench: BenchHandle,
    number: number,
    address: string,
    port: number,
    source: string | null,
    upgrade?: Buffer,
  ): number;
  /** Sends up to `count` messages stamped `stamp`; returns how many the send budget allowed (none once closed). */
  benchSend(bench: BenchHandle, id: number, count: number, stamp: number): number;
  benchDestroy(bench: BenchHandle, id: number): void;
  /** Fills `out` with replies owed and the oldest one's send time (zeros once closed). */
  benchInFlight(bench: BenchHandle, id: number, out: Float64Array): void;
  /** Whether the reply to `sequence` is still owed. */
  benchOwes(bench: BenchHandle, id: number, sequence: number): boolean;
  /** Whether replies are answered, and how many messages may still be sent. */
  benchSetSending(bench: BenchHandle, answering: boolean, budget: number): void;
  /** Fills `out` with messages sent and send budget left. */
  benchTotals(bench: BenchHandle, out: Float64Array): void;
  closeBench(bench: BenchHandle): void;
}

const FUNCTIONS = [
  'createBench',
  'benchUseTls',
  'benchUseWebSocket',
  'benchConnect',
  'benchSend',
  'benchDestroy',
  'benchInFlight',
  'benchOwes',
  'benchSetSending',
  'benchTotals',
  'closeBench',
] as const;

const binding = addonBinding<NativeBenchBinding>(FUNCTIONS);

/** Whether the addon with the bench engine was built. */
export const nativeBenchAvailable = binding !== undefined;

/** Pairs handed over per call at most; a turn's replies rarely fill it. */
const BATCH_PAIRS = 4096;

/**
 * One run's engine. The run's counters that the engine moves (messages in flight, the send
 * budget) are brought up to date by `sync()` before the run reads them. A reply frame that is
 * not the one owed comes here whole, to be classified by the rules of message.ts.
 */
export class NativeBench implements RunEngine {
  readonly #binding: NativeBenchBinding;
  readonly #handle: BenchHandle;
  readonly #run: Run;
  readonly #address: string;
  readonly #batch = new Float64Array(2 * BATCH_PAIRS);
  readonly #totals = new Float64Array(2);
  /** Open connections by their id's slot index (see native/glue.h). */
  readonly #connections: Array<NativeBenchConnection | undefined> = [];
  readonly #slots = platformConstants()?.SLOT_INDEX_LIMIT ?? 1;
  #sentSeen = 0;

  /**
   * Undefined where the addon was not built, the run's replies are not built from a template (a
   * custom transform), or TLS is asked for and this Node's OpenSSL cannot be reached from C.
   */
  static create(run: Run, address: string): NativeBench | undefined {
    const layout = run.codec.nativeLayout();
    if (binding === undefined || layout === undefined) return undefined;
    const engine = new NativeBench(binding, run, layout, address);
    const target = run.options.target;
    try {
      if (target.tls) engine.#useTls();
    } catch (err) {
      // A certificate or key that cannot be loaded is the user's to fix, on either engine.
      if ((err as NodeJS.ErrnoException).code !== 'ENOTSUP') throw err;
      binding.closeBench(engine.#handle);
      return undefined;
    }
    if (target.websocket !== undefined) binding.benchUseWebSocket(engine.#handle, run.sendsBinary);
    return engine;
  }

  /** As tls.connect with the target's options: Node's root certificates and any --tls-ca, the host checked. */
  #useTls(): void {
    const target = this.#run.options.target;
    const roots = [...tls.rootCertificates, ...(target.tlsCa !== undefined ? [target.tlsCa.toString()] : [])];
    this.#binding.benchUseTls(
      this.#handle,
      Buffer.from(roots.join('\n')),
      !target.tlsInsecure,
      target.tlsCert !== undefined ? Buffer.from(target.tlsCert) : null,
      target.tlsKey !== undefined ? Buffer.from(target.tlsKey) : null,
      target.host,
    );
  }

  private constructor(
    nativeBinding: NativeBenchBinding,
    run: Run,
    layout: NonNullable<ReturnType<MessageCodec['nativeLayout']>>,
    /** The target host's address, looked up once for every connection. */
    address: string,
  ) {
    this.#address = address;
    this.#binding = nativeBinding;
    this.#run = run;
    // The engine stamps with uv_hrtime; performance.now() is the same clock from another origin.
    const clockOffsetMs = performance.now() - Number(process.hrtime.bigint()) / 1e6;
    const { template, replyTemplate, tail, replyTail, prefix, connectionDigits, sequenceDigits } = layout;
    this.#handle = nativeBinding.createBench(
      this,
      template,
      replyTemplate,
      tail,
      replyTail,
      prefix,
      connectionDigits,
      sequenceDigits,
      this.#batch,
      clockOffsetMs,
      this.#onReplies,
      (id, status, owed, verifyResult, reason) => {
        const connection = this.#connectionFor(id);
        this.#connections[id % this.#slots] = undefined;
        connection?.closed(status, owed, reason === null ? undefined : openSslError(verifyResult, reason));
      },
      (id, frame, head, next, extra) => this.#connectionFor(id)?.wrongFrame(frame, head, next, extra) ?? TAKES_NONE,
      (id, head) => this.#connectionFor(id)?.secured(head) ?? false,
      (id, start, length) => this.#connectionFor(id)?.wrongMessage(start, length) ?? TAKES_NONE,
    );
  }

  #connectionFor(id: number): NativeBenchConnection | undefined {
    const connection = this.#connections[id % this.#slots];
    return connection?.id === id ? connection : undefined;
  }

  /** Opens a connection to `target` on the engine; `opening` hears whether it opened. */
  open(target: BenchTarget, opening: OpeningEvents): NativeBenchConnection {
    const number = this.#run.nextConnection++;
    let upgrade: Buffer | undefined;
    let upgradeKey: string | undefined;
    if (target.websocket !== undefined) {
      upgradeKey = newWebSocketKey();
      upgrade = upgradeRequest(formatHostPort(target.host, target.port), target.websocket.path, upgradeKey);
    }
    const id = this.#binding.benchConnect(
      this.#handle,
      number,
      this.#address,
      target.port,
      target.localAddress ?? null,
      upgrade,
    );
    const connection = new NativeBenchConnection(this.#run, this, id, number, opening, upgradeKey);
    this.#connections[id % this.#slots] = connection;
    return connection;
  }

  /** Sends up to `count` messages on connection `id`, stamped `stamp`. */
  send(id: number, count: number, stamp: number): void {
    this.#binding.benchSend(this.#handle, id, count, stamp);
  }

  destroy(id: number): void {
    this.#binding.benchDestroy(this.#handle, id);
  }

  /** Replies owed on connection `id` and the oldest one's send time, in one array for every connection: read at once, never kept. */
  inFlight(id: number): Float64Array {
    this.#binding.benchInFlight(this.#handle, id, IN_FLIGHT);
    return IN_FLIGHT;
  }

  owes(id: number, sequence: number): boolean {
    return this.#binding.benchOwes(this.#handle, id, sequence);
  }

  /** Tells the engine whether to answer replies, and how many messages may still go. */
  setSending(answering: boolean, budget: number): void {
    this.#binding.benchSetSending(this.#handle, answering, budget);
  }

  /** Brings the run's in-flight count, send budget and mismatches up to the engine's. */
  sync(): void {
    const totals = this.#totals;
    this.#binding.benchTotals(this.#handle, totals);
    const run = this.#run;
    run.inFlight += totals[0]! - this.#sentSeen;
    this.#sentSeen = totals[0]!;
    run.sendBudget = totals[1]!;
  }

  close(): void {
    this.sync();
    this.#binding.closeBench(this.#handle);
  }

  readonly #onReplies = (count: number): void => {
    this.sync();
    const batch = this.#batch;
    const run = this.#run;
    for (let i = 0; i < 2 * count; i += 2) run.completed(batch[i + 1]!, batch[i]!);
  };
}

/** What the load generator hears about a connection on its way to open. */
export interface OpeningEvents {
  opened(connection: NativeBenchConnection): void;
  failed(err: NodeJS.ErrnoException): void;
}

/** What onWrong returns to the engine for the owed message a wrong frame stands for. */
const TAKES_NONE = -1;
const TAKES_HEAD = -2;

/** A connection the engine carries: JavaScript sends its first messages, classifies wrong replies and hears when it closes. */
export class NativeBenchConnection implements LoadConnection {
  /** Why the connection could not open, heard before it closed (a refused upgrade). */
  #openError: NodeJS.ErrnoException | undefined;
  #failed = false;

  constructor(
    private readonly run: Run,
    private readonly engine: NativeBench,
    /** The id the engine knows it by. */
    readonly id: number,
    /** The number this connection's messages carry. */
    readonly connection: number,
    /** Until it is open: who hears whether it opened. */
    private opening: OpeningEvents | undefined,
    /** Over WebSocket, until the upgrade is answered: the key the answer must match. */
    private upgradeKey: string | undefined,
  ) {}

  /** From the engine: a whole reply frame that is not the one owed. Counts it; returns what it stands for. */
  wrongFrame(frame: Buffer, head: number, next: number, extra: boolean): number {
    const run = this.run;
    this.engine.sync();
    const owed = {
      connection: this.connection,
      head,
      next,
      owes: (sequence: number) => this.engine.owes(this.id, sequence),
    };
    const { kind, takes } = classifyReply(run.codec, frame, owed);
    run.errorsByKind[kind]++;
    run.firstWrongReply ??= frame;
    run.mismatchedBytes += extra ? frame.length : differingBytes(frame, run.codec.reply(this.connection, head));
    if (takes === 'none') return TAKES_NONE;
    run.answeredWrongly();
    return takes === 'head' ? TAKES_HEAD : takes;
  }

  /** Open: the run may count it and send on it. */
  opened(): void {
    const opening = this.opening;
    this.opening = undefined;
    opening?.opened(this);
  }

  /** From the engine: TLS is up (and over WebSocket, `head` is the upgrade's answer). Returns whether to go on. */
  secured(head: Buffer | undefined): boolean {
    if (this.opening === undefined) return false;
    if (head !== undefined) {
      const problem = checkUpgradeAnswer(head, this.upgradeKey ?? '');
      this.upgradeKey = undefined;
      if (problem !== undefined) {
        this.#openError = Object.assign(new Error(problem.message), { code: problem.code });
        return false;
      }
    }
    this.opened();
    return true;
  }

  /** From the engine: a WebSocket message of the wrong kind or length is one wrong reply, whatever its bytes. */
  wrongMessage(start: Buffer, length: number): number {
    const run = this.run;
    this.engine.sync();
    run.mismatchedBytes += length;
    run.errorsByKind.corrupt++;
    run.firstWrongReply ??= start;
    if (this.#readInFlight()[0]! === 0) return TAKES_NONE;
    run.answeredWrongly();
    return TAKES_HEAD;
  }

  get failed(): boolean {
    return this.#failed;
  }

  /** Connections are replaced only with messagesPerConnection, which the engine does not take. */
  get spent(): boolean {
    return false;
  }

  send(count: number, stamp: number): void {
    if (!this.#failed) this.engine.send(this.id, count, stamp);
  }

  isOverdue(now: number, limitMs: number): boolean {
    const figures = this.#readInFlight();
    return figures[0]! > 0 && now - figures[1]! > limitMs;
  }

  fail(kind: BenchErrorKind): void {
    if (this.#failed) return;
    // Replies the engine already has are recorded first; what is still owed is lost.
    this.engine.sync();
    this.#lose(kind, this.#readInFlight()[0]!);
    this.destroy();
  }

  retire(): void {
    if (this.#failed) return;
    this.#failed = true;
    this.run.live.delete(this);
    this.destroy();
  }

  destroy(): void {
    this.engine.destroy(this.id);
  }

  /** From the engine: the connection closed (the server left, a write failed, or we destroyed it). */
  closed(status: number, owed: number, tlsError?: NodeJS.ErrnoException): void {
    const opening = this.opening;
    if (opening !== undefined) {
      // Before it opened, it failed to connect, for the reason the handshakes gave.
      this.opening = undefined;
      this.#failed = true;
      opening.failed(
        tlsError ?? this.#openError ?? systemError(status === 0 || status === UV_EOF ? UV_ECONNRESET : status),
      );
      return;
    }
    if (this.#failed || this.run.phase === 'done') return;
    // libuv statuses are negated errno values on Linux; the end of the stream is no error.
    if (tlsError !== undefined) this.run.firstSocketError ??= tlsError;
    else if (status < 0 && status !== UV_EOF) this.run.firstSocketError ??= systemError(status);
    // The server going away before the run is over is an error, whatever was in flight.
    this.engine.sync();
    this.#lose('closed', owed);
  }

  #lose(kind: BenchErrorKind, owed: number): void {
    this.#failed = true;
    this.run.errorsByKind[kind]++;
    this.run.live.delete(this);
    this.run.lost(owed, true);
  }

  #readInFlight(): Float64Array {
    return this.engine.inFlight(this.id);
  }
}

/** Filled by benchInFlight for whichever connection asks; an array each would cost an idle connection more than its C side. */
const IN_FLIGHT = new Float64Array(2);

/** libuv's status for the end of a stream: the server closed cleanly. */
const UV_EOF = -4095;
const UV_ECONNRESET = -104;

function systemError(status: number): NodeJS.ErrnoException {
  const code = getSystemErrorName(status);
  return Object.assign(new Error(code), { code, errno: status });
}
