// Listening sockets, always listened on by net.Server (TLS, Unix sockets and cluster workers alike); an engine takes each connection, or the socket itself where it accepts in C.

import cluster from 'node:cluster';
import { existsSync } from 'node:fs';
import { lstat, unlink } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import { describeListenError, ListenError, listenFailure, systemErrorCode } from '../core/errors.js';
import { formatEndpoint, ipOf } from '../core/address.js';
import type { ConnectionContext } from './connection.js';
import { parseProxyHeader, type ProxyHeader, type ProxyParseResult } from '../protocol/proxy-protocol.js';
import type { AcceptHandler, ServerEngine } from './engines/engine.js';
import type { ServerStats } from './stats.js';
import type { EngineName } from '../native/engine.js';
import { formatSubject } from './tls.js';
import { portableEngine } from './engines/portable.js';
import { joinSharedPort } from '../native/shared-port.js';

export interface ListenAddress {
  host: string;
  port: number;
  family: string;
}

export interface Listener {
  readonly address: ListenAddress;
  /** The net.Server underneath, for listeners that have one. */
  readonly server?: net.Server;
  /** Stops accepting; live connections are drained separately. */
  close(): void;
  /** What answers it, where that is not the server's stream engine (UDP listeners say). */
  readonly engine?: EngineName;
  /** Adds what the listener counts itself (a native UDP engine's datagrams) to `stats`, a copy being reported. */
  addTotalsTo?(stats: ServerStats): void;
}

export interface ListenOptions {
  host: string;
  port: number;
  context: ConnectionContext;
  handler: AcceptHandler;
}

export interface NetListenOptions extends ListenOptions {
  /** The engine for plain TCP connections (TLS and Unix sockets are always portable). Default portable. */
  engine?: ServerEngine;
  /** Listen on this Unix socket path instead of host and port. */
  path?: string;
  /** Serve TLS with these settings instead of plain TCP. */
  tls?: tls.TlsOptions;
  /**
   * In a cluster worker: listen on a socket of this process's own, bound to a port the primary
   * claimed (src/native/shared-port.ts), instead of on the primary's, which hands connections over.
   */
  sharedPort?: boolean;
}

/**
 * How long a TLS client has to finish its handshake (Node's default is two minutes): until then
 * its socket is no connection yet, so neither limits nor idle timeouts see it.
 */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * Connections the kernel completes before they are accepted (capped by net.core.somaxconn).
 * Node's 511 overflows under a load generator's burst of tens of thousands, and a connection
 * dropped from a full queue looks open to its client until it is reset.
 */
const LISTEN_BACKLOG = 4096;

export async function listenNet(options: NetListenOptions): Promise<Listener> {
  const { host, port, path, context, handler } = options;
  // The server picks the engine for TCP ports (engines/choice.ts); Unix sockets are portable.
  const engine = path === undefined ? (options.engine ?? portableEngine) : portableEngine;
  // Node answers TLS unless the engine does, on a plain socket it accepts on itself.
  const tlsOptions = engine.terminatesTls ? undefined : options.tls;
  if (context.proxyHeaderTimeoutMs !== undefined && (tlsOptions !== undefined || engine.readsProxyHeader === false)) {
    return listenBehindProxy(options, engine, context.proxyHeaderTimeoutMs);
  }
  const socketOptions = {
    allowHalfOpen: true,
    noDelay: true,
    // Makes write() report backpressure exactly at maxBuffered queued bytes.
    highWaterMark: context.maxBuffered,
  };
  // Plain sockets arrive paused: an engine in C must take them before Node reads a byte.
  // Over TLS, half-open only once the handshake is done: a client that leaves before is closed,
  // not held open waiting for a handshake that cannot come.
  const server = tlsOptions
    ? tls.createServer({
        ...socketOptions,
        allowHalfOpen: false,
        handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
        ...tlsOptions,
      })
    : net.createServer({ ...socketOptions, pauseOnConnect: true });
  const endpoint = path !== undefined ? `unix://${path}` : formatEndpoint(context.transport, host, port);
  const offer = offerTo(handler, engine, context);
  const onSocket = (socket: net.Socket) =>
    path !== undefined ? offer(socket, `unix:${path}`, 0) : offer(socket, socket.remoteAddress, socket.remotePort);
  if (tlsOptions) {
    server.on('secureConnection', (socket: tls.TLSSocket) => {
      socket.allowHalfOpen = true;
      onSocket(socket);
    });
    server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
      handler.handshakeFailed?.(err, socket.remoteAddress, socket.remotePort);
      // Node leaves the socket open after a handshake timeout (it closes it on a protocol error).
      socket.destroy();
    });
  } else {
    server.on('connection', onSocket);
  }
  // In a cluster worker the primary holds the socket (and checked the path before forking).
  if (path !== undefined && !cluster.isWorker) await removeStaleSocket(path, endpoint);
  await startListening(server, await listenTarget(options, endpoint), endpoint, handler);
  const bound = server.address();
  const address =
    typeof bound === 'string' || bound === null
      ? { host: path ?? '', port: 0, family: 'unix' }
      : { host: bound.address, port: bound.port, family: bound.family };
  // An engine that accepts by itself takes the listening socket: no net.Socket per client. Not
  // where a cluster worker listens on the primary's socket (NODE_CLUSTER_SCHED_POLICY=none shares
  // it): closing our server to leave it to the engine would have the primary close it too, while
  // our duplicate keeps the port from the next worker.
  const stopAccepting =
    path === undefined && tlsOptions === undefined && !onPrimarySocket(options)
      ? engine.acceptOn?.(server, context, handler)
      : undefined;
  if (stopAccepting === undefined && engine.terminatesTls) {
    server.close();
    throw new ListenError(
      endpoint,
      'the native engine could not take the listening socket for TLS; use --engine portable',
      undefined,
    );
  }
  if (stopAccepting !== undefined) {
    // The engine holds its own duplicate of the socket, which stays open and listening.
    server.close();
    return { address, close: stopAccepting };
  }
  return serverListener(server, address);
}

/** A listener that is a net.Server (which removes its Unix socket file on close). */
function serverListener(server: net.Server, address: ListenAddress): Listener {
  return {
    server,
    address,
    close: () => {
      if (server.listening) server.close();
    },
  };
}

/**
 * What a listener does with each stream it accepted: offers it to the handler, which has the
 * engine adopt it (with its client certificate, over TLS) or has it closed.
 */
function offerTo(handler: AcceptHandler, engine: ServerEngine, context: ConnectionContext) {
  return (
    stream: net.Socket,
    remoteAddress: string | undefined,
    remotePort: number | undefined,
    header?: ProxyHeader,
  ): void =>
    handler.accepted(
      remoteAddress,
      remotePort,
      (id, address) => {
        const connection = engine.adopt(id, stream, address, remotePort!, context);
        if (stream instanceof tls.TLSSocket) connection.clientCertificateSubject = certificateSubject(stream);
        return connection;
      },
      () => stream.destroy(),
      header,
    );
}

/** Whether a listener's socket is the cluster primary's rather than this process's own. */
function onPrimarySocket(options: NetListenOptions): boolean {
  return cluster.isWorker && (options.path !== undefined || options.sharedPort !== true);
}

/** Where a server listens: a path, a host and port, or a socket of its own on a shared port. */
async function listenTarget(options: NetListenOptions, endpoint: string): Promise<net.ListenOptions | net.Socket> {
  const { host, port, path } = options;
  if (path !== undefined) return { path };
  if (options.sharedPort !== true) return { host, port };
  try {
    return joinSharedPort(await ipOf(host), port);
  } catch (err) {
    throw listenFailure(endpoint, err);
  }
}

async function startListening(
  server: net.Server,
  where: net.ListenOptions | net.Socket,
  endpoint: string,
  handler: AcceptHandler,
): Promise<void> {
  const path = where instanceof net.Socket ? undefined : where.path;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) =>
      reject(
        new ListenError(
          endpoint,
          describeListenError(socketDirectoryMissing(path) ? 'ENOENT' : systemErrorCode(err), err.message, path),
          err,
        ),
      );
    const onListening = () => {
      server.off('error', onError);
      server.on('error', (err) => handler.failed(err));
      resolve();
    };
    server.once('error', onError);
    if (where instanceof net.Socket) server.listen(where, LISTEN_BACKLOG, onListening);
    else server.listen({ ...where, backlog: LISTEN_BACKLOG }, onListening);
  });
}

/**
 * A PROXY header read here, from the plain socket, before anything else parses the stream: in
 * front of TLS (HAProxy passing TLS through with send-proxy-v2, where the header comes in
 * clear before the handshake), and in front of HTTP for WebSocket. The engine gets what follows.
 */
async function listenBehindProxy(
  options: NetListenOptions,
  engine: ServerEngine,
  headerTimeoutMs: number,
): Promise<Listener> {
  const { host, port, context, handler, tls: tlsOptions } = options;
  const secureContext = tlsOptions === undefined ? undefined : tls.createSecureContext(tlsOptions);
  // The header is read here: connections must not look for a second one.
  const offer = offerTo(handler, engine, { ...context, proxyHeaderTimeoutMs: undefined });
  const server = net.createServer({
    allowHalfOpen: true,
    noDelay: true,
    highWaterMark: context.maxBuffered,
    pauseOnConnect: true,
  });
  server.on('connection', (socket) => {
    const { remoteAddress, remotePort } = socket;
    socket.on('error', () => {});
    readProxyHeader(socket, headerTimeoutMs, (result) => {
      if (result.status !== 'complete') {
        handler.proxyHeaderFailed?.(
          result.status === 'invalid' ? result.reason : `no complete PROXY header within ${headerTimeoutMs / 1000}s`,
          remoteAddress,
          remotePort,
        );
        socket.destroy();
        return;
      }
      if (secureContext === undefined || tlsOptions === undefined) {
        offer(socket, remoteAddress, remotePort, result.header);
        return;
      }
      const secure = new tls.TLSSocket(socket, {
        isServer: true,
        secureContext,
        requestCert: tlsOptions.requestCert ?? false,
        rejectUnauthorized: tlsOptions.rejectUnauthorized ?? true,
      });
      // As tls.createServer does above: closed if the client leaves, or is too slow, mid-handshake.
      secure.allowHalfOpen = false;
      const timer = setTimeout(
        () => secure.destroy(new Error('TLS handshake timeout')),
        tlsOptions.handshakeTimeout ?? TLS_HANDSHAKE_TIMEOUT_MS,
      );
      // Until the handshake ends, one failure is reported; after it the connection handles its own.
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        handler.handshakeFailed?.(err, remoteAddress, remotePort, result.header);
      };
      secure.on('error', fail);
      secure.once('close', () => fail(new Error('the client left during the TLS handshake')));
      secure.once('secure', () => {
        settled = true;
        clearTimeout(timer);
        secure.allowHalfOpen = true;
        offer(secure, remoteAddress, remotePort, result.header);
      });
    });
  });
  const endpoint = formatEndpoint(context.transport, host, port);
  await startListening(server, await listenTarget(options, endpoint), endpoint, handler);
  const address = server.address() as net.AddressInfo;
  return serverListener(server, { host: address.address, port: address.port, family: address.family });
}

/** Reads bytes until a PROXY header is complete or cannot be; what follows it is put back. */
function readProxyHeader(socket: net.Socket, timeoutMs: number, done: (result: ProxyParseResult) => void): void {
  let input: Buffer = Buffer.alloc(0);
  const finish = (result: ProxyParseResult) => {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('end', onEnd);
    socket.pause();
    if (result.status === 'complete' && input.length > result.header.length)
      socket.unshift(input.subarray(result.header.length));
    done(result);
  };
  const onData = (chunk: Buffer) => {
    input = input.length === 0 ? chunk : Buffer.concat([input, chunk]);
    const result = parseProxyHeader(input);
    if (result.status !== 'incomplete') finish(result);
  };
  const onEnd = () => finish({ status: 'invalid', reason: 'connection ended before its PROXY header' });
  const timer = setTimeout(() => finish({ status: 'incomplete' }), timeoutMs);
  socket.on('data', onData);
  socket.once('end', onEnd);
  socket.resume();
}

/** `CN=client,O=Example` from a verified client certificate; undefined without one. */
function certificateSubject(socket: tls.TLSSocket): string | undefined {
  if (!socket.authorized) return undefined;
  const subject = socket.getPeerCertificate().subject as Record<string, string | string[]> | undefined;
  return subject === undefined ? undefined : formatSubject(Object.entries(subject));
}

/** libuv reports a socket path in a missing directory as EACCES: tell the two apart. */
function socketDirectoryMissing(path: string | undefined): boolean {
  return path !== undefined && !existsSync(dirname(resolve(path)));
}

/**
 * A socket file left by a crashed server would make listen fail with EADDRINUSE: remove it when
 * nothing answers there, but refuse to take a path a live server is using (or that is not a socket).
 */
export async function removeStaleSocket(path: string, endpoint: string): Promise<void> {
  const stats = await lstat(path).catch(() => undefined);
  if (stats === undefined) return;
  if (!stats.isSocket()) throw new ListenError(endpoint, 'the path exists and is not a socket', undefined);
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect({ path }, () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new ListenError(endpoint, 'another server is listening on this socket', undefined);
  await unlink(path);
}
