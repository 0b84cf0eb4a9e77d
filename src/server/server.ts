// The echo server: listeners, the set of live connections, counters, graceful close.

import { EventEmitter } from 'node:events';
import { systemErrorCode } from '../errors.js';
import { openDescriptorCount, openFileLimit } from '../ops/descriptors.js';
import { silentLogger, type Logger } from '../ops/log.js';
import { formatEndpoint, formatHostPort } from './address.js';
import type { Connection, ConnectionContext } from './connection.js';
import { startIdleSweeper } from './idle.js';
import { Admission, canonicalAddress, type AdmissionOptions } from './limits.js';
import { listenNet, listenRaw, type AcceptHandler, type Listener } from './listener.js';
import { rawTcp } from './raw-tcp.js';
import { drainConnections, type DrainResult } from './shutdown.js';
import { copyStats, emptyStats, type RejectReason, type ServerStats } from './stats.js';
import { builtInTransform, type Transform, type TransformName } from './transforms.js';

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 1234;
export const DEFAULT_MAX_BUFFERED = 1024 * 1024;
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 10_000;

export interface EchoServerOptions extends AdmissionOptions {
  /** Address to bind. Default `127.0.0.1`, like the seed's `localhost`. */
  host?: string;
  /** Port, or several ports to listen on at once; `0` picks a free port. Default 1234. */
  port?: number | readonly number[];
  /** `echo` (default), `upper`, or a function mapping each received chunk to its reply. */
  transform?: TransformName | Transform;
  /** Queued output per connection above which the server stops reading it. Default 1 MiB. */
  maxBuffered?: number;
  /** Where events go. Default: nowhere. */
  logger?: Logger;
  /**
   * Log one line per connection event (open, data, close) at `info`, like the seed's prints.
   * Default true; `--quiet` turns it off. Lifecycle lines and warnings are logged regardless.
   */
  logConnectionEvents?: boolean;
  /** Close a connection with no traffic either way for this long. Default 0: never. */
  idleTimeoutMs?: number;
  /**
   * Talk to libuv's TCP handles directly instead of through net.Socket (see raw-tcp.ts): the
   * same behaviour at a lower cost per message. Default true where this Node offers them; the
   * net.Socket path is used otherwise, or when this is false.
   */
  rawHandles?: boolean;
}

export interface BoundAddress {
  transport: 'tcp';
  host: string;
  port: number;
  family: string;
  /** e.g. `tcp://127.0.0.1:1234` */
  url: string;
}

export interface CloseOptions {
  /** How long to let connections drain before closing them abruptly. Default 10 s. */
  timeoutMs?: number;
}

export type ServerState = 'new' | 'listening' | 'draining' | 'closed';

interface EchoServerEvents {
  listening: [addresses: BoundAddress[]];
  connection: [connection: Connection];
  draining: [];
  close: [result: DrainResult];
}

export class EchoServer extends EventEmitter<EchoServerEvents> {
  readonly #host: string;
  readonly #ports: readonly number[];
  readonly #log: Logger;
  readonly #stats = emptyStats();
  readonly #connections = new Set<Connection>();
  readonly #context: ConnectionContext;
  readonly #admission: Admission;
  readonly #idleTimeoutMs: number;
  #stopIdleSweeper: (() => void) | undefined;
  #acceptFailures = 0;
  /** Connections at which descriptors run out: libuv then accepts and closes new ones silently. */
  #descriptorCeiling = Number.POSITIVE_INFINITY;
  #atDescriptorCeiling = false;
  #listeners: Listener[] = [];
  readonly #useRaw: boolean;
  #addresses: BoundAddress[] = [];
  #state: ServerState = 'new';
  #nextConnectionId = 1;
  #closing: Promise<DrainResult> | undefined;

  constructor(options: EchoServerOptions = {}) {
    super();
    this.#host = options.host ?? DEFAULT_HOST;
    const port = options.port ?? DEFAULT_PORT;
    this.#ports = typeof port === 'number' ? [port] : [...port];
    this.#log = options.logger ?? silentLogger;
    this.#admission = new Admission(options);
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 0;
    this.#useRaw = (options.rawHandles ?? true) && rawTcp !== undefined;
    const transform = options.transform ?? 'echo';
    this.#context = {
      transform: typeof transform === 'function' ? transform : builtInTransform(transform),
      transformIsBuiltIn: typeof transform !== 'function',
      stats: this.#stats,
      log: this.#log,
      logEvents: (options.logConnectionEvents ?? true) && this.#log.isLevelEnabled('info'),
      maxBuffered: options.maxBuffered ?? DEFAULT_MAX_BUFFERED,
      connectionClosed: (connection) => this.#connectionClosed(connection),
    };
  }

  get state(): ServerState {
    return this.#state;
  }

  /** True while the server accepts connections: what a readiness probe reports. */
  get ready(): boolean {
    return this.#state === 'listening';
  }

  /** The addresses actually bound (after `listen()`), with the real port where 0 was asked. */
  get addresses(): readonly BoundAddress[] {
    return this.#addresses;
  }

  get connections(): ReadonlySet<Connection> {
    return this.#connections;
  }

  /** A snapshot of the counters. */
  stats(): ServerStats {
    return copyStats(this.#stats);
  }

  /**
   * Binds every configured port and starts accepting. Resolves with the first bound address
   * (all of them are in `addresses`). If any port fails, the ones already bound are released.
   */
  async listen(): Promise<BoundAddress> {
    if (this.#state !== 'new') throw new Error(`listen() called on a server that is ${this.#state}`);
    try {
      for (const port of this.#ports) {
        const listener = await this.#bind(port);
        this.#listeners.push(listener);
        const { host, port: boundPort, family } = listener.address;
        this.#addresses.push({ transport: 'tcp', host, port: boundPort, family, url: formatEndpoint('tcp', host, boundPort) });
      }
    } catch (err) {
      this.#listeners.forEach((listener) => listener.close());
      this.#listeners = [];
      this.#addresses = [];
      throw err;
    }
    this.#state = 'listening';
    const limit = openFileLimit();
    const open = openDescriptorCount();
    // libuv keeps one spare descriptor for its accept-and-close trick once the limit is hit.
    if (limit !== undefined && open !== undefined) this.#descriptorCeiling = limit - open - 1;
    if (this.#idleTimeoutMs > 0) {
      this.#stopIdleSweeper = startIdleSweeper(this.#connections, this.#idleTimeoutMs, (connection) => {
        this.#stats.idleTimeouts++;
        connection.abort(`closed after ${this.#idleTimeoutMs / 1000}s idle`);
      });
    }
    this.emit('listening', this.#addresses);
    return this.#addresses[0]!;
  }

  /**
   * Stops accepting, lets every connection finish its echoes (see `drainConnections`), and
   * resolves once all are closed or the timeout has closed the rest. Safe to call twice.
   */
  close(options: CloseOptions = {}): Promise<DrainResult> {
    this.#closing ??= this.#close(options.timeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS);
    return this.#closing;
  }

  /** Closes every connection at once; for a second signal or a hard stop. */
  destroy(): void {
    this.#stopIdleSweeper?.();
    this.#listeners.forEach((listener) => listener.close());
    for (const connection of [...this.#connections]) connection.abort('closed by forced shutdown');
    this.#state = 'closed';
  }

  async #close(timeoutMs: number): Promise<DrainResult> {
    // Readiness flips before anything else, so a load balancer stops sending new clients first.
    this.#state = 'draining';
    this.emit('draining');
    this.#listeners.forEach((listener) => listener.close());
    const result = await drainConnections(this.#connections, { timeoutMs });
    this.#stopIdleSweeper?.();
    this.#state = 'closed';
    this.emit('close', result);
    return result;
  }

  /** True when connections run on raw libuv handles rather than net.Socket. */
  get usesRawHandles(): boolean {
    return this.#useRaw;
  }

  #bind(port: number): Promise<Listener> {
    const handler: AcceptHandler = {
      accepted: (remoteAddress, remotePort, adopt, reject) => this.#accept(remoteAddress, remotePort, adopt, reject),
      failed: (err) => this.#acceptFailed(err),
    };
    const options = { host: this.#host, port, context: this.#context, handler };
    return this.#useRaw ? listenRaw(rawTcp!, options) : listenNet(options);
  }

  #accept(remoteAddress: string | undefined, remotePort: number | undefined, adopt: (id: number, remoteAddress: string) => Connection, reject: () => void): void {
    // A client that reset before we got to it has no peer address any more (the seed's select
    // server crashed calling getpeername() on such a socket): just let it go.
    if (remoteAddress === undefined || remotePort === undefined || this.#state !== 'listening') {
      reject();
      return;
    }
    if (this.#acceptFailures > 0) this.#acceptRecovered();
    // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; logs and limits use a.b.c.d.
    remoteAddress = canonicalAddress(remoteAddress);
    const rejection = this.#admission.admit(remoteAddress, this.#connections.size);
    if (rejection !== undefined) {
      this.#stats.rejected[rejection]++;
      if (this.#context.logEvents) {
        const peer = formatHostPort(remoteAddress, remotePort);
        this.#log.info({ event: 'reject', peer, reason: rejection }, `rejected connection from ${peer}: ${REJECT_TEXT[rejection]}`);
      }
      // Closed at once with nothing sent: the client sees end of stream (or a reset if it had sent data).
      reject();
      return;
    }
    const connection = adopt(this.#nextConnectionId++, remoteAddress);
    this.#connections.add(connection);
    if (this.#connections.size >= this.#descriptorCeiling && !this.#atDescriptorCeiling) this.#descriptorsExhausted();
    this.#stats.connectionsActive++;
    this.#stats.connectionsTotal++;
    if (this.#context.logEvents) {
      this.#log.info(
        { event: 'open', conn: connection.id, peer: connection.peer },
        `new connection from ${connection.peer} (#${connection.id})`,
      );
    }
    this.emit('connection', connection);
  }

  #connectionClosed(connection: Connection): void {
    if (!this.#connections.delete(connection)) return;
    this.#stats.connectionsActive--;
    this.#admission.release(connection.remoteAddress);
    if (this.#atDescriptorCeiling && this.#connections.size < this.#descriptorCeiling) this.#descriptorsAvailable();
  }

  // When descriptors run out, libuv accepts each new connection on a spare descriptor and
  // closes it at once, so nothing spins and nothing reaches us per attempt: we log the burst
  // once, as we reach the ceiling, and once more when connections drop below it.
  #descriptorsExhausted(): void {
    this.#atDescriptorCeiling = true;
    this.#stats.errors.accept++;
    this.#log.warn(
      { event: 'descriptors_exhausted', connections: this.#connections.size },
      `cannot accept connections: out of file descriptors at ${this.#connections.size} connections (raise \`ulimit -n\`); new clients are closed at once until some leave, existing ones are still served`,
    );
  }

  #descriptorsAvailable(): void {
    this.#atDescriptorCeiling = false;
    this.#log.warn({ event: 'descriptors_available', connections: this.#connections.size }, `accepting connections again (${this.#connections.size} open)`);
  }

  #acceptFailed(err: Error): void {
    // Accept errors (EMFILE, ENFILE...) concern the process, not one client. libuv keeps a spare
    // descriptor to accept-and-close such connections, so this does not spin; we log once per
    // burst, count every one, and say when accepting works again.
    this.#stats.errors.accept++;
    if (this.#acceptFailures++ === 0) {
      this.#log.warn(
        { event: 'accept_error', code: systemErrorCode(err), err: err.message },
        `cannot accept connections: ${err.message}; existing connections are still served`,
      );
    }
  }

  #acceptRecovered(): void {
    this.#log.warn(
      { event: 'accept_recovered', failures: this.#acceptFailures },
      `accepting connections again (${this.#acceptFailures} turned away while descriptors ran out)`,
    );
    this.#acceptFailures = 0;
  }
}

const REJECT_TEXT: Record<RejectReason, string> = {
  max_connections: 'too many connections (--max-connections)',
  max_connections_per_ip: 'too many connections from this address (--max-connections-per-ip)',
  not_allowed: 'address not in --allow',
};

/** Creates a server; call `listen()` to start it. */
export function createEchoServer(options: EchoServerOptions = {}): EchoServer {
  return new EchoServer(options);
}
