// The echo server: listeners, the set of live connections, counters, graceful close.

import cluster from 'node:cluster';
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { BlockList, isIP, isIPv4 } from 'node:net';
import type { TlsOptions } from 'node:tls';
import { openSslReason, systemErrorCode, UsageError } from '../core/errors.js';
import { openDescriptorCount, openFileLimit } from '../core/descriptors.js';
import { silentLogger, type Logger } from '../core/log.js';
import { formatEndpoint, formatHostPort } from '../core/address.js';
import type { Connection, ConnectionContext } from './connection.js';
import { startIdleSweeper } from './idle.js';
import { DEFAULT_MAX_LINE, type Framing } from '../protocol/framing.js';
import { Admission, canonicalAddress, parseAllowList, type AdmissionOptions } from './limits.js';
import { listenNet, TLS_HANDSHAKE_TIMEOUT_MS, type Listener } from './listener.js';
import type { ProxyHeader } from '../protocol/proxy-protocol.js';
import { chooseEngine, requestedEngine, type EngineChoice, type EngineName } from '../native/engine.js';
import type { AcceptHandler, ServerEngine } from './engines/engine.js';
import { pickEngine, type EngineFit, type ListenerTransport, type ServingNeeds } from './engines/choice.js';
import { NativeEcho, nativeTlsUnavailable } from './engines/native.js';
import { portableEngine } from './engines/portable.js';
import { drainConnections, type DrainResult } from './shutdown.js';
import {
  copyStats,
  emptyStats,
  type RejectReason,
  type ServerStats,
  type StreamTransport,
  type Transport,
} from './stats.js';
import {
  builtInTransform,
  toTransform,
  type Transform,
  type TransformName,
  type UserTransform,
} from '../protocol/transforms.js';
import { listenUdp } from './udp.js';
import { DEFAULT_MAX_MESSAGE, DEFAULT_REQUEST_TIMEOUT_MS, type WebSocketSettings } from './websocket-settings.js';
import { Faults, parseFaults } from './faults.js';

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 1234;
export const DEFAULT_MAX_BUFFERED = 1024 * 1024;
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 10_000;
export const DEFAULT_PROXY_HEADER_TIMEOUT_MS = 3000;

export interface EchoServerOptions extends AdmissionOptions {
  /** Address to bind. Default `127.0.0.1`, like the seed's `localhost`. */
  host?: string;
  /** Port, or several ports to listen on at once; `0` picks a free port. Default 1234. */
  port?: number | readonly number[];
  /** Also (or, with `port: []`, only) listen on these Unix socket paths. */
  unix?: string | readonly string[];
  /** Also echo UDP datagrams on every port (RFC 862), one reply per datagram. */
  udp?: boolean;
  /**
   * In a cluster worker: the TCP ports were claimed by the primary to be shared (SO_REUSEPORT,
   * see src/native/shared-port.ts), and this worker listens (and reads UDP) on sockets of its
   * own there.
   */
  sharedPorts?: boolean;
  /**
   * Serve TLS on the TCP ports (Node's `tls.createServer` options: `cert`, `key`; `ca` with
   * `requestCert` for mTLS; `handshakeTimeout`, here 10 s by default).
   */
  tls?: TlsOptions;
  /**
   * The TCP ports speak WebSocket (RFC 6455; `wss` with `tls`) on any path: each message is
   * answered with one of the same kind, through the transform and `prefix`. A plain GET gets a
   * page that connects back and echoes. `true`, or settings (`maxMessage`, `deflate`).
   */
  websocket?: boolean | WebSocketSettings;
  /**
   * `echo` (default), `upper`, or a function mapping each received chunk (each line in line
   * mode) to its reply: a Buffer, Uint8Array or string. A function that throws or returns
   * anything else resets only the connection it was answering (WebSocket: closes it with 1011).
   */
  transform?: TransformName | UserTransform;
  /** `raw` (default): chunks as they arrive. `line`: the transform sees whole `\n`-terminated lines. Not with `websocket`, whose unit is the message. */
  framing?: Framing;
  /** Line mode: put this before every echoed line (and UDP reply, and WebSocket message). */
  prefix?: string;
  /** Line mode: longest line (without its `\n`); a longer one is answered with an error and closed. Default 64 KiB. */
  maxLine?: number;
  /** Every stream connection must open with a PROXY protocol v1 or v2 header, whose source address is then the client's. */
  proxyProtocol?: boolean;
  /** CIDRs of proxies allowed to connect when `proxyProtocol` is on. Default: any. */
  proxyTrust?: readonly string[];
  /** How long a connection may take to send its PROXY header. Default 3 s. */
  proxyHeaderTimeoutMs?: number;
  /** Queued output per connection above which the server stops reading it. Default 1 MiB. */
  maxBuffered?: number;
  /**
   * Answer each chunk (each datagram over UDP) this many milliseconds after it arrived, in order:
   * a slow server, to test a proxy's timeouts or a client's patience. Default 0.
   */
  delayMs?: number;
  /**
   * Faults on purpose, each as `--fault` takes it: `reset=0.1`, `close=0.05`, `stall=0.1:2`,
   * `truncate=0.01`, `drop=0.2` (datagrams), `delay=10ms:90,500ms:10`. Connections run on the
   * portable engine while faults are configured (or may be, with `faultsLive`).
   */
  faults?: readonly string[];
  /**
   * Open every stream connection with one JSON line saying who answered: `instance`, `worker`,
   * `local` and `client` addresses (the client as the server sees it, after a PROXY header), and
   * over TLS `tls: { protocol, cipher, sni, alpn, clientSubject }`. Default false.
   */
  hello?: boolean;
  /** The name `hello` gives this instance. Default `hostname:pid`. */
  instance?: string;
  /** Seed for the faults' random choices: the same seed gives the same faults. Default: random. */
  faultSeed?: number;
  /** The fault set may be replaced while running (the admin endpoint): keep every connection where faults can reach it. */
  faultsLive?: boolean;
  /** Where events go. Default: nowhere. */
  logger?: Logger;
  /**
   * Log each connection's open and close at `info`, and each chunk received at `debug`, like
   * the seed's prints. Default true; `--quiet` turns it off. Lifecycle lines and warnings are
   * logged regardless.
   */
  logConnectionEvents?: boolean;
  /** Close a connection with no traffic either way for this long. Default 0: never. */
  idleTimeoutMs?: number;
  /**
   * What moves plain TCP connections' bytes: `native` (the C addon: no JavaScript per message),
   * `portable` (Node's net.Socket), or `auto` (default: native where the addon loads; the
   * ECHOPLEX_ENGINE variable sets this default). Both behave the same. The native engine takes
   * the connections it can serve exactly as asked: raw framing, the `echo` or `upper` transform,
   * no PROXY protocol, no delay, no per-chunk (`debug`) log lines; others run portable.
   */
  engine?: EngineChoice;
}

export interface BoundAddress {
  transport: Transport;
  /** The IP address bound, or the socket path for `unix`. */
  host: string;
  port: number;
  family: string;
  /** e.g. `tcp://127.0.0.1:1234`, `udp://[::1]:7`, `unix:///run/echo.sock` */
  url: string;
  /** The engine that serves it (see the `engine` option). */
  engine: EngineName;
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
  /** The faults injected on purpose, live (replace them with `faults.replace`); undefined without any. */
  readonly faults: Faults | undefined;
  readonly #host: string;
  readonly #ports: readonly number[];
  readonly #unixPaths: readonly string[];
  readonly #udp: boolean;
  readonly #sharedPorts: boolean;
  readonly #tls: TlsOptions | undefined;
  /** Set with `websocket`: its settings; `listen()` loads the engine (and `ws`) only then. */
  readonly #websocket: WebSocketSettings | undefined;
  readonly #proxyTrust: BlockList | undefined;
  readonly #log: Logger;
  readonly #stats = emptyStats();
  readonly #connections = new Set<Connection>();
  readonly #context: Omit<ConnectionContext, 'transport'>;
  readonly #admission: Admission;
  readonly #idleTimeoutMs: number;
  #stopIdleSweeper: (() => void) | undefined;
  #acceptFailures = 0;
  /** Connections at which descriptors run out: libuv then accepts and closes new ones silently. */
  #descriptorCeiling = Number.POSITIVE_INFINITY;
  #atDescriptorCeiling = false;
  #listeners: Listener[] = [];
  /** What serves the TCP ports (the portable WebSocket engine is set in listen(), which loads `ws`). */
  #engine: ServerEngine;
  /** UDP answered in C (upper or not), where the settings leave it nothing to decide per datagram. */
  readonly #nativeUdp: { upper: boolean } | undefined;
  /** Which engine serves each kind of listener, and why not the native one where it was chosen. */
  readonly #fits: Partial<Record<ListenerTransport, EngineFit>>;
  #addresses: BoundAddress[] = [];
  #state: ServerState = 'new';
  #inService = true;
  /** With `hello`: what every stream connection's first line says besides its own addresses. */
  readonly #hello: { instance: string; worker: number | null } | undefined;
  /** Draining has begun, and the accept queue is still being taken in (see #close). */
  #lastCall = false;
  #nextConnectionId = 1;
  #closing: Promise<DrainResult> | undefined;

  constructor(options: EchoServerOptions = {}) {
    super();
    this.#host = options.host ?? DEFAULT_HOST;
    const port = options.port ?? DEFAULT_PORT;
    this.#ports = typeof port === 'number' ? [port] : [...port];
    const unix = options.unix ?? [];
    this.#unixPaths = typeof unix === 'string' ? [unix] : [...unix];
    this.#udp = options.udp ?? false;
    this.#sharedPorts = options.sharedPorts ?? false;
    this.#tls = options.tls;
    if (this.#ports.length === 0 && this.#unixPaths.length === 0)
      throw new UsageError('nothing to listen on: give at least one port or Unix socket path');
    if (options.delayMs !== undefined && !(Number.isFinite(options.delayMs) && options.delayMs >= 0))
      throw new UsageError(`delay must be 0 or more milliseconds, got ${options.delayMs}`);
    this.#log = options.logger ?? silentLogger;
    this.#admission = new Admission(options);
    this.#proxyTrust =
      options.proxyTrust && options.proxyTrust.length > 0 ? parseAllowList(options.proxyTrust) : undefined;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 0;
    const engine = chooseEngine(options.engine);
    const faults =
      options.faults !== undefined || options.faultsLive
        ? new Faults(parseFaults(options.faults ?? []), options.faultSeed)
        : undefined;
    this.faults = faults;
    const transform = options.transform ?? 'echo';
    const websocket = options.websocket === true ? {} : options.websocket || undefined;
    if (websocket !== undefined && options.framing === 'line')
      throw new UsageError('WebSocket echoes whole messages: line framing does not apply (drop --framing line)');
    // ws reads a limit of 0 as none at all: a zero here is a mistake, not a wish for no limit.
    if (websocket?.maxMessage !== undefined && !(Number.isInteger(websocket.maxMessage) && websocket.maxMessage >= 1)) {
      throw new UsageError(`--max-message must be at least 1 byte, got ${websocket.maxMessage}`);
    }
    this.#websocket = websocket;
    const lineMode = (options.framing ?? 'raw') === 'line' && websocket === undefined;
    const messageTransform = typeof transform === 'function' ? toTransform(transform) : builtInTransform(transform);
    const prefix = options.prefix ? Buffer.from(options.prefix) : undefined;
    this.#context = {
      // A WebSocket message is the unit a line is elsewhere: the prefix goes before each reply.
      transform:
        websocket !== undefined && prefix !== undefined ? prefixed(messageTransform, prefix) : messageTransform,
      transformIsBuiltIn: typeof transform !== 'function',
      lines: lineMode ? { maxLine: options.maxLine ?? DEFAULT_MAX_LINE, prefix } : undefined,
      proxyHeaderTimeoutMs: options.proxyProtocol
        ? (options.proxyHeaderTimeoutMs ?? DEFAULT_PROXY_HEADER_TIMEOUT_MS)
        : undefined,
      stats: this.#stats,
      log: this.#log,
      logEvents: (options.logConnectionEvents ?? true) && this.#log.isLevelEnabled('info'),
      logData: (options.logConnectionEvents ?? true) && this.#log.isLevelEnabled('debug'),
      maxBuffered: options.maxBuffered ?? DEFAULT_MAX_BUFFERED,
      delayMs: options.delayMs ?? 0,
      faults,
      proxyHeaderRead: (connection) => this.#proxyHeaderRead(connection),
      connectionClosed: (connection) => this.#connectionClosed(connection),
    };
    this.#hello = options.hello
      ? { instance: options.instance ?? `${hostname()}:${process.pid}`, worker: cluster.worker?.id ?? null }
      : undefined;
    const context = this.#context;
    const needs: ServingNeeds = {
      customTransform: typeof transform === 'function',
      lineMode,
      prefix: prefix !== undefined,
      proxyProtocol: options.proxyProtocol ?? false,
      delay: context.delayMs > 0,
      faults: faults !== undefined,
      hello: this.#hello !== undefined,
      perChunkLogs: context.logData,
      wsDeflate: websocket?.deflate ?? false,
      allowList: (options.allow ?? []).length > 0,
      handedOver: cluster.isWorker && !this.#sharedPorts,
      clusterUdp: cluster.isWorker && !this.#sharedPorts,
    };
    const streamTransport = this.#streamTransport;
    const tlsUnavailable = streamTransport === 'tls' || streamTransport === 'wss' ? nativeTlsUnavailable() : undefined;
    // Asked for by name, the native engine must serve what it was asked to: a TLS port it cannot is a usage error.
    if (
      tlsUnavailable !== undefined &&
      engine === 'native' &&
      requestedEngine(options.engine) === 'native' &&
      this.#ports.length > 0
    )
      throw new UsageError(`the native engine cannot serve TLS here: ${tlsUnavailable}; use --engine auto or portable`);
    const streamFit = pickEngine(engine, streamTransport, needs, tlsUnavailable);
    this.#fits = {
      ...(this.#ports.length > 0 && { [streamTransport]: streamFit }),
      ...(this.#udp && { udp: pickEngine(engine, 'udp', needs) }),
      ...(this.#unixPaths.length > 0 && { unix: pickEngine(engine, 'unix', needs) }),
    };
    this.#nativeUdp = this.#fits.udp?.engine === 'native' ? { upper: transform === 'upper' } : undefined;
    this.#engine =
      streamFit.engine === 'native'
        ? (this.#nativeEcho(transform === 'upper', streamTransport, websocket) ?? portableEngine)
        : portableEngine;
  }

  /** The native engine for the stream ports, with TLS and WebSocket settings where they speak those. */
  #nativeEcho(
    upper: boolean,
    transport: StreamTransport,
    websocket: WebSocketSettings | undefined,
  ): NativeEcho | undefined {
    const tlsOptions = this.#tls;
    const pem = (value: unknown): Buffer | undefined =>
      typeof value === 'string' || Buffer.isBuffer(value) ? Buffer.from(value) : undefined;
    const cert = pem(tlsOptions?.cert);
    const key = pem(tlsOptions?.key);
    if (tlsOptions !== undefined && (cert === undefined || key === undefined)) return undefined;
    const ca = pem(tlsOptions?.ca);
    try {
      return NativeEcho.create({
        upper,
        maxBuffered: this.#context.maxBuffered,
        transport,
        ...(tlsOptions !== undefined && {
          tls: {
            cert: cert!,
            key: key!,
            ...(ca !== undefined && tlsOptions.requestCert && { ca }),
            ...(Array.isArray(tlsOptions.ALPNProtocols) && { alpn: tlsOptions.ALPNProtocols as string[] }),
            handshakeTimeoutMs: tlsOptions.handshakeTimeout ?? TLS_HANDSHAKE_TIMEOUT_MS,
          },
        }),
        ...(websocket !== undefined && {
          websocket: {
            maxMessage: websocket.maxMessage ?? DEFAULT_MAX_MESSAGE,
            requestTimeoutMs: websocket.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
          },
        }),
      });
    } catch (err) {
      throw new UsageError(`TLS: ${(err as Error).message}`);
    }
  }

  get state(): ServerState {
    return this.#state;
  }

  /** True while the server accepts connections and is in service: what a readiness probe reports. */
  get ready(): boolean {
    return this.#state === 'listening' && this.#inService;
  }

  /**
   * Takes the server out of service (false) or back (true): `ready` and /readyz say so, so that
   * a balancer stops sending it clients; connections, old and new, are still served.
   */
  setInService(inService: boolean): void {
    this.#inService = inService;
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
    const stats = this.#engine.addTotalsTo(copyStats(this.#stats));
    for (const listener of this.#listeners) listener.addTotalsTo?.(stats);
    return stats;
  }

  /**
   * Binds every configured port and starts accepting. Resolves with the first bound address
   * (all of them are in `addresses`). If any port fails, the ones already bound are released.
   */
  async listen(): Promise<BoundAddress> {
    if (this.#state !== 'new') throw new Error(`listen() called on a server that is ${this.#state}`);
    if (this.#websocket !== undefined && this.#engine.name === 'portable') {
      const { WebSocketEngine } = await import('./engines/websocket.js');
      this.#engine = new WebSocketEngine(this.#websocket);
    }
    try {
      const streamTransport = this.#streamTransport;
      for (const port of this.#ports) {
        const { port: boundPort } = this.#listening(streamTransport, await this.#bind(port));
        // Same port number for UDP, also when the TCP port was picked by the OS.
        if (this.#udp) this.#listening('udp', await this.#bindUdp(boundPort));
      }
      for (const path of this.#unixPaths) this.#listening('unix', await this.#bindUnix(path));
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
        connection.endWithCode(`closed after ${this.#idleTimeoutMs / 1000}s idle`, 1001);
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
    // Clients the kernel has already connected wait in the accept queue, and closing the
    // listening socket would reset them (a load balancer that picked this instance a moment
    // ago would pass the reset on). One more poll of the event loop takes them in, to be
    // drained with the rest; only then do the listeners close.
    this.#lastCall = true;
    await afterNextPoll();
    this.#lastCall = false;
    this.#listeners.forEach((listener) => listener.close());
    const result = await drainConnections(this.#connections, { timeoutMs });
    this.#stopIdleSweeper?.();
    this.#state = 'closed';
    this.emit('close', result);
    return result;
  }

  /** The engine answering UDP datagrams; undefined without `udp`. */
  get udpEngine(): EngineName | undefined {
    return this.#listeners.find((listener) => listener.engine !== undefined)?.engine;
  }

  /** The engine serving the TCP ports, whatever they speak (see the `engine` option). */
  get engine(): EngineName {
    return this.#engine.name;
  }

  /**
   * Where the native engine was chosen but the portable one serves some listeners: what in the
   * settings sent each there (see engines/choice.ts). Empty when nothing did.
   */
  get portableBecause(): string[] {
    return [...new Set(Object.values(this.#fits).flatMap((fit) => fit.portableBecause))];
  }

  #listening(transport: Transport, listener: Listener): BoundAddress {
    this.#listeners.push(listener);
    const { host, port, family } = listener.address;
    const url = transport === 'unix' ? `unix://${host}` : formatEndpoint(transport, host, port);
    const engine = listener.engine ?? (transport === 'unix' ? 'portable' : this.#engine.name);
    const bound = { transport, host, port, family, url, engine };
    this.#addresses.push(bound);
    return bound;
  }

  readonly #handler: AcceptHandler = {
    accepted: (remoteAddress, remotePort, adopt, reject, header) =>
      this.#accept(remoteAddress, remotePort, adopt, reject, header),
    failed: (err) => this.#acceptFailed(err),
    proxyHeaderFailed: (reason, remoteAddress, remotePort) =>
      this.#proxyHeaderFailed(reason, remoteAddress, remotePort),
    handshakeFailed: (err, remoteAddress, remotePort, header) =>
      this.#handshakeFailed(err, remoteAddress, remotePort, header),
  };

  /** What the TCP ports speak. */
  get #streamTransport(): StreamTransport {
    if (this.#websocket !== undefined) return this.#tls ? 'wss' : 'ws';
    return this.#tls ? 'tls' : 'tcp';
  }

  #bind(port: number): Promise<Listener> {
    const context = { ...this.#context, transport: this.#streamTransport };
    return listenNet({
      host: this.#host,
      port,
      tls: this.#tls,
      context,
      handler: this.#handler,
      engine: this.#engine,
      sharedPort: this.#sharedPorts,
    });
  }

  #bindUnix(path: string): Promise<Listener> {
    return listenNet({
      host: this.#host,
      port: 0,
      path,
      context: { ...this.#context, transport: 'unix' },
      handler: this.#handler,
    });
  }

  #bindUdp(port: number): Promise<Listener> {
    const context = this.#context;
    return listenUdp({
      host: this.#host,
      port,
      transform: context.transform,
      prefix: context.lines?.prefix,
      delayMs: context.delayMs,
      faults: context.faults,
      native: this.#nativeUdp,
      sharedPort: this.#sharedPorts,
      allows: (address) => this.#admission.allows(address),
      stats: this.#stats,
      log: this.#log,
      logEvents: context.logEvents,
      logData: context.logData,
    });
  }

  #accept(
    remoteAddress: string | undefined,
    remotePort: number | undefined,
    adopt: (id: number, remoteAddress: string) => Connection,
    reject: () => void,
    header?: ProxyHeader,
  ): void {
    // A client that reset before we got to it has no peer address any more (the seed's select
    // server crashed calling getpeername() on such a socket): just let it go.
    if (remoteAddress === undefined || remotePort === undefined || (this.#state !== 'listening' && !this.#lastCall)) {
      reject();
      return;
    }
    if (this.#acceptFailures > 0) this.#acceptRecovered();
    // A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; logs and limits use a.b.c.d.
    remoteAddress = canonicalAddress(remoteAddress);
    let rejection: RejectReason | undefined;
    if (!this.#admission.hasRoom(this.#connections.size)) rejection = 'max_connections';
    else if (this.#context.proxyHeaderTimeoutMs !== undefined)
      rejection = this.#trustsProxy(remoteAddress) ? undefined : 'proxy_not_trusted';
    else rejection = this.#admission.admitSource(remoteAddress);
    if (rejection !== undefined) {
      this.#rejected(rejection, formatPeer(remoteAddress, remotePort));
      // Closed at once with nothing sent: the client sees end of stream (or a reset if it had sent data).
      reject();
      return;
    }
    const connection = adopt(this.#nextConnectionId++, remoteAddress);
    connection.admittedBySource =
      this.#admission.countsSource(remoteAddress) && this.#context.proxyHeaderTimeoutMs === undefined;
    this.#connections.add(connection);
    if (this.#connections.size >= this.#descriptorCeiling && !this.#atDescriptorCeiling) this.#descriptorsExhausted();
    this.#stats.connectionsActive++;
    this.#stats.connectionsTotal++;
    // Behind a proxy, the client is known (and admitted, and logged) once its header is read.
    if (header !== undefined) {
      connection.useProxyHeader(header);
      this.#proxyHeaderRead(connection);
    } else if (!connection.awaitingProxyHeader) {
      this.#opened(connection);
    }
    this.emit('connection', connection);
  }

  #trustsProxy(address: string): boolean {
    return (
      this.#proxyTrust === undefined ||
      isIP(address) === 0 ||
      this.#proxyTrust.check(address, isIPv4(address) ? 'ipv4' : 'ipv6')
    );
  }

  #proxyHeaderRead(connection: Connection): void {
    const address = connection.remoteAddress;
    const rejection = this.#admission.admitSource(address);
    if (rejection !== undefined) {
      this.#rejected(rejection, connection.peer, connection.proxiedBy);
      connection.abort(`rejected: ${REJECT_TEXT[rejection]}`);
      return;
    }
    connection.admittedBySource = this.#admission.countsSource(address);
    this.#opened(connection);
  }

  #opened(connection: Connection): void {
    if (this.#hello !== undefined)
      connection.greet(`${JSON.stringify({ ...this.#hello, ...connection.helloFields() })}\n`);
    if (!this.#context.logEvents) return;
    const via = connection.proxiedBy === undefined ? '' : ` via ${connection.proxiedBy}`;
    const subject =
      connection.clientCertificateSubject === undefined
        ? ''
        : `, client certificate ${connection.clientCertificateSubject}`;
    this.#log.info(
      {
        event: 'open',
        conn: connection.id,
        peer: connection.peer,
        ...(connection.proxiedBy !== undefined && { proxy: connection.proxiedBy }),
        ...(connection.clientCertificateSubject !== undefined && { subject: connection.clientCertificateSubject }),
      },
      `new connection from ${connection.peer}${via} (#${connection.id}${subject})`,
    );
  }

  #rejected(reason: RejectReason, peer: string, proxiedBy?: string): void {
    this.#stats.rejected[reason]++;
    if (!this.#context.logEvents) return;
    const via = proxiedBy === undefined ? '' : ` via ${proxiedBy}`;
    this.#log.info({ event: 'reject', peer, reason }, `rejected connection from ${peer}${via}: ${REJECT_TEXT[reason]}`);
  }

  #proxyHeaderFailed(reason: string, remoteAddress: string | undefined, remotePort: number | undefined): void {
    this.#stats.errors.proxy_header++;
    const peer =
      remoteAddress === undefined
        ? 'a client that already left'
        : formatPeer(canonicalAddress(remoteAddress), remotePort ?? 0);
    this.#log.warn(
      { event: 'error', kind: 'proxy_header', peer, err: reason },
      `bad PROXY header from ${peer}, closing it: ${reason}`,
    );
  }

  #handshakeFailed(
    err: Error,
    remoteAddress: string | undefined,
    remotePort: number | undefined,
    header?: ProxyHeader,
  ): void {
    // A client that speaks plain TCP to a TLS port, or offers a certificate we do not trust:
    // its connection ends, the server goes on.
    this.#stats.errors.tls_handshake++;
    const source = header?.command === 'proxy' ? header.source : undefined;
    const real = remoteAddress === undefined ? undefined : formatPeer(canonicalAddress(remoteAddress), remotePort ?? 0);
    const peer =
      source !== undefined
        ? formatPeer(canonicalAddress(source.address), source.port)
        : (real ?? 'a client that already left');
    const via = source !== undefined && real !== undefined ? ` via ${real}` : '';
    this.#log.warn(
      { event: 'error', kind: 'tls_handshake', peer, code: systemErrorCode(err), err: err.message },
      `TLS handshake with ${peer}${via} failed: ${openSslReason(err)}`,
    );
  }

  #connectionClosed(connection: Connection): void {
    if (!this.#connections.delete(connection)) return;
    this.#stats.connectionsActive--;
    if (connection.admittedBySource) this.#admission.release(canonicalAddress(connection.remoteAddress));
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
    this.#log.warn(
      { event: 'descriptors_available', connections: this.#connections.size },
      `accepting connections again (${this.#connections.size} open)`,
    );
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
  proxy_not_trusted: 'proxy address not in --proxy-trust',
};

function formatPeer(address: string, port: number): string {
  return isIP(address) === 0 ? address : formatHostPort(address, port);
}

/** Creates a server; call `listen()` to start it. */
export function createEchoServer(options: EchoServerOptions = {}): EchoServer {
  return new EchoServer(options);
}

/** `transform`, with `prefix` before every reply. */
function prefixed(transform: Transform, prefix: Buffer): Transform {
  return (message) => Buffer.concat([prefix, transform(message)]);
}

/** Resolves after the event loop has polled for I/O at least once more (two check phases apart). */
function afterNextPoll(): Promise<void> {
  return new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
}
