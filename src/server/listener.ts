// Listening sockets: on net.Server (portable) or on a raw libuv TCP handle (fast), one interface.

import cluster from 'node:cluster';
import { lookup } from 'node:dns/promises';
import { lstat, unlink } from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import { ListenError, systemErrorCode } from '../core/errors.js';
import { formatEndpoint } from '../core/address.js';
import type { Connection, ConnectionContext } from './connection.js';
import { parseProxyHeader, type ProxyHeader, type ProxyParseResult } from '../protocol/proxy-protocol.js';
import type { NativeEcho } from './native-connection.js';
import { RawConnection } from './raw-connection.js';
import { errorName, type RawTcp, type TcpHandle } from './raw-tcp.js';
import { StreamConnection } from './stream-connection.js';

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
}

/** What a listener reports to the server. */
export interface AcceptHandler {
  /**
   * A connection arrived from `remoteAddress` (undefined if it already left; `unix:PATH` on a
   * Unix socket). The server either calls `adopt` (with the address as it should be shown) to
   * wrap it in a Connection, or `reject` to close it at once.
   */
  accepted(
    remoteAddress: string | undefined,
    remotePort: number | undefined,
    adopt: (id: number, remoteAddress: string) => Connection,
    reject: () => void,
    /** A PROXY header the listener read itself, in front of TLS. */
    header?: ProxyHeader,
  ): void;
  failed(err: Error): void;
  /** A PROXY header in front of TLS was missing, malformed or late. */
  proxyHeaderFailed?(reason: string, remoteAddress: string | undefined, remotePort: number | undefined): void;
  /** A TLS client failed its handshake (bad certificate, wrong protocol, gone midway). */
  handshakeFailed?(err: Error, remoteAddress: string | undefined, remotePort: number | undefined): void;
}

export interface ListenOptions {
  host: string;
  port: number;
  context: ConnectionContext;
  handler: AcceptHandler;
}

export interface RawListenOptions extends ListenOptions {
  /** Hand accepted connections to this native engine (see native-engine.ts) where it can take them. */
  native?: NativeEcho | undefined;
}

export interface NetListenOptions extends ListenOptions {
  /** Listen on this Unix socket path instead of host and port. */
  path?: string;
  /** Serve TLS with these settings instead of plain TCP. */
  tls?: tls.TlsOptions;
}

export async function listenNet(options: NetListenOptions): Promise<Listener> {
  if (options.tls && options.context.proxyHeaderTimeoutMs !== undefined) return listenTlsBehindProxy(options, options.tls, options.context.proxyHeaderTimeoutMs);
  const { host, port, path, tls: tlsOptions, context, handler } = options;
  const socketOptions = {
    allowHalfOpen: true,
    noDelay: true,
    // Makes write() report backpressure exactly at maxBuffered queued bytes.
    highWaterMark: context.maxBuffered,
  };
  const server = tlsOptions ? tls.createServer({ ...socketOptions, ...tlsOptions }) : net.createServer(socketOptions);
  const endpoint = path !== undefined ? `unix://${path}` : formatEndpoint(tlsOptions ? 'tls' : 'tcp', host, port);
  const onSocket = (socket: net.Socket) => {
    const remoteAddress = path !== undefined ? `unix:${path}` : socket.remoteAddress;
    const remotePort = path !== undefined ? 0 : socket.remotePort;
    handler.accepted(
      remoteAddress,
      remotePort,
      (id, address) => {
        const connection = new StreamConnection(id, socket, address, remotePort!, context);
        if (socket instanceof tls.TLSSocket) connection.clientCertificateSubject = certificateSubject(socket);
        return connection;
      },
      () => socket.destroy(),
    );
  };
  if (tlsOptions) {
    server.on('secureConnection', onSocket);
    server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => handler.handshakeFailed?.(err, socket.remoteAddress, socket.remotePort));
  } else {
    server.on('connection', onSocket);
  }
  // In a cluster worker the primary holds the socket (and checked the path before forking).
  if (path !== undefined && !cluster.isWorker) await removeStaleSocket(path, endpoint);
  await startListening(server, path !== undefined ? { path } : { host, port }, endpoint, handler);
  const address = server.address();
  return {
    server,
    address: typeof address === 'string' || address === null ? { host: path ?? '', port: 0, family: 'unix' } : { host: address.address, port: address.port, family: address.family },
    close: () => {
      // net.Server removes its Unix socket file on close.
      if (server.listening) server.close();
    },
  };
}

async function startListening(server: net.Server, where: net.ListenOptions, endpoint: string, handler: AcceptHandler): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(new ListenError(endpoint, describeListenError(systemErrorCode(err), err.message), err));
    server.once('error', onError);
    server.listen(where, () => {
      server.off('error', onError);
      server.on('error', (err) => handler.failed(err));
      resolve();
    });
  });
}

/**
 * TLS behind a proxy that sends the PROXY protocol (HAProxy passing TLS through with
 * send-proxy-v2): the header comes in clear before the TLS handshake, so each connection's
 * header is read here from the plain socket, and TLS starts on what follows it.
 */
async function listenTlsBehindProxy({ host, port, context, handler }: NetListenOptions, tlsOptions: tls.TlsOptions, headerTimeoutMs: number): Promise<Listener> {
  const secureContext = tls.createSecureContext(tlsOptions);
  // The header is read here: connections must not look for a second one inside TLS.
  const connectionContext: ConnectionContext = { ...context, proxyHeaderTimeoutMs: undefined };
  const server = net.createServer({ allowHalfOpen: true, noDelay: true, highWaterMark: context.maxBuffered, pauseOnConnect: true });
  server.on('connection', (socket) => {
    const { remoteAddress, remotePort } = socket;
    socket.on('error', () => {});
    readProxyHeader(socket, headerTimeoutMs, (result) => {
      if (result.status !== 'complete') {
        handler.proxyHeaderFailed?.(result.status === 'invalid' ? result.reason : `no complete PROXY header within ${headerTimeoutMs / 1000}s`, remoteAddress, remotePort);
        socket.destroy();
        return;
      }
      const secure = new tls.TLSSocket(socket, {
        isServer: true,
        secureContext,
        requestCert: tlsOptions.requestCert ?? false,
        rejectUnauthorized: tlsOptions.rejectUnauthorized ?? true,
      });
      secure.once('error', (err) => handler.handshakeFailed?.(err, remoteAddress, remotePort));
      secure.once('secure', () => {
        handler.accepted(
          remoteAddress,
          remotePort,
          (id, address) => {
            const connection = new StreamConnection(id, secure, address, remotePort!, connectionContext);
            connection.clientCertificateSubject = certificateSubject(secure);
            return connection;
          },
          () => secure.destroy(),
          result.header,
        );
      });
    });
  });
  const endpoint = formatEndpoint('tls', host, port);
  await startListening(server, { host, port }, endpoint, handler);
  const address = server.address() as net.AddressInfo;
  return {
    server,
    address: { host: address.address, port: address.port, family: address.family },
    close: () => {
      if (server.listening) server.close();
    },
  };
}

/** Reads bytes until a PROXY header is complete or cannot be; what follows it is put back. */
function readProxyHeader(socket: net.Socket, timeoutMs: number, done: (result: ProxyParseResult) => void): void {
  let input: Buffer = Buffer.alloc(0);
  const finish = (result: ProxyParseResult) => {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('end', onEnd);
    socket.pause();
    if (result.status === 'complete' && input.length > result.header.length) socket.unshift(input.subarray(result.header.length));
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
  if (subject === undefined) return undefined;
  return Object.entries(subject)
    .map(([key, value]) => `${key}=${Array.isArray(value) ? value.join('+') : value}`)
    .join(',');
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

const BACKLOG = 511;

export async function listenRaw(raw: RawTcp, options: RawListenOptions): Promise<Listener> {
  if (cluster.isWorker) return listenRawInWorker(raw, options);
  const { host, port } = options;
  const endpoint = formatEndpoint('tcp', host, port);
  const ip = net.isIP(host) ? host : await lookup(host).then(
    (found) => found.address,
    (err: Error) => {
      throw new ListenError(endpoint, describeListenError(systemErrorCode(err), err.message), err);
    },
  );
  const handle = raw.newServerHandle();
  // bind6 without the IPv6-only flag is dual stack where the OS allows, as net does for '::'.
  let status = net.isIPv6(ip) ? handle.bind6(ip, port, 0) : handle.bind(ip, port);
  if (status === 0) status = handle.listen(BACKLOG);
  if (status < 0) {
    handle.close();
    const code = errorName(status);
    throw new ListenError(endpoint, describeListenError(code, code), Object.assign(new Error(code), { code }));
  }
  const bound: Record<string, unknown> = {};
  handle.getsockname(bound);
  handle.onconnection = rawAcceptor(raw, options);
  let open = true;
  return {
    address: { host: bound['address'] as string, port: bound['port'] as number, family: bound['family'] as string },
    close: () => {
      if (!open) return;
      open = false;
      handle.close();
    },
  };
}

/** What libuv calls for each accepted connection: the client's raw handle, wrapped or refused. */
function rawAcceptor(raw: RawTcp, { context, handler, native }: RawListenOptions): (status: number, client?: TcpHandle) => void {
  return (status, client) => {
    if (status < 0 || client === undefined) {
      const code = errorName(status);
      handler.failed(Object.assign(new Error(`accept: ${code}`), { code }));
      return;
    }
    const peer: Record<string, unknown> = {};
    const known = client.getpeername(peer) === 0;
    const remoteAddress = known ? (peer['address'] as string) : undefined;
    const remotePort = known ? (peer['port'] as number) : undefined;
    handler.accepted(
      remoteAddress,
      remotePort,
      (id, address) => {
        if (native !== undefined) {
          try {
            return native.adopt(id, client, address, remotePort!, context);
          } catch {
            // The engine could not take it (no descriptor left for its copy, say): the handle
            // is untouched, and this connection is served in TypeScript like any other.
          }
        }
        return new RawConnection(id, client, address, remotePort!, context, raw);
      },
      () => client.close(),
    );
  };
}

/**
 * In a cluster worker the listening socket belongs to the primary, which hands each accepted
 * connection over as a TCP handle; only net.Server speaks that protocol. So the worker listens
 * with net.Server and takes the handles from it as they arrive: net's handle (the primary's
 * round-robin stand-in, or the shared socket) calls `onconnection(status, clientHandle)` either
 * way. Where that internal is not there, connections stay on net.Socket.
 */
async function listenRawInWorker(raw: RawTcp, options: RawListenOptions): Promise<Listener> {
  const listener = await listenNet(options);
  const handle = (listener.server as unknown as { _handle?: { onconnection?: unknown } })._handle;
  if (handle && typeof handle.onconnection === 'function') handle.onconnection = rawAcceptor(raw, options);
  return listener;
}

export function describeListenError(code: string | undefined, fallback: string): string {
  switch (code) {
    case 'EADDRINUSE':
      return 'address already in use (is another server running on this port?)';
    case 'EACCES':
      return 'permission denied (ports below 1024 need privileges)';
    case 'EADDRNOTAVAIL':
      return 'address not available on this host';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'unknown host';
    default:
      return fallback;
  }
}
