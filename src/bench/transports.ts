// How the bench reaches its target: TCP, TLS, a Unix socket or UDP, optionally opening each
// connection with a PROXY header. The load generator sees one small interface for all of them.

import dgram from 'node:dgram';
import net from 'node:net';
import tls from 'node:tls';
import { encodeProxyV1, encodeProxyV2, type ProxyEndpoint } from '../protocol/proxy-protocol.js';
import { errorName, rawTcp, writeToHandle, type RawTcp, type TcpHandle, type WriteRequest } from '../server/raw-tcp.js';
import { formatEndpoint } from '../core/address.js';

export interface BenchTarget {
  host: string;
  port: number;
  /** Connect to this Unix socket path instead of host and port. */
  unix?: string;
  /** Speak TLS. */
  tls?: boolean;
  /** With `tls`: accept any certificate (a self-signed test server). */
  tlsInsecure?: boolean;
  /** With `tls`: trust this PEM CA as well as the system's. */
  tlsCa?: string | Buffer;
  /** Send datagrams: one message per datagram, one reply expected per message. */
  udp?: boolean;
  /** Open each connection with a PROXY protocol header of this version, naming our own address. */
  proxyProtocol?: 1 | 2;
}

export interface BenchSocket {
  /** Streams take any slice of the byte sequence; a datagram socket takes exactly one message per call. */
  write(bytes: Buffer): void;
  destroy(): void;
  readonly datagrams: boolean;
}

export interface BenchSocketEvents {
  connected(): void;
  /** `bytes` may be a shared buffer: use the first `length` bytes before returning. */
  data(bytes: Buffer, length: number): void;
  error(err: NodeJS.ErrnoException): void;
  closed(): void;
}

/** The target the options name, with the defaults filled in (`127.0.0.1:1234`). */
export function resolveTarget(options: Partial<BenchTarget>): BenchTarget {
  return {
    host: options.host ?? '127.0.0.1',
    port: options.port ?? 1234,
    ...(options.unix !== undefined && { unix: options.unix }),
    ...(options.tls !== undefined && { tls: options.tls }),
    ...(options.tlsInsecure !== undefined && { tlsInsecure: options.tlsInsecure }),
    ...(options.tlsCa !== undefined && { tlsCa: options.tlsCa }),
    ...(options.udp !== undefined && { udp: options.udp }),
    ...(options.proxyProtocol !== undefined && { proxyProtocol: options.proxyProtocol }),
  };
}

/** `tcp://127.0.0.1:1234`, `tls://...`, `udp://...` or `unix:///path`, for reports. */
export function describeTarget(target: BenchTarget): string {
  if (target.unix !== undefined) return `unix://${target.unix}`;
  return formatEndpoint(target.udp ? 'udp' : target.tls ? 'tls' : 'tcp', target.host, target.port);
}

/** `readBuffer` is reused for every read on plain streams (TLS and UDP hand over their own buffers). */
export function openBenchSocket(target: BenchTarget, readBuffer: Buffer, events: BenchSocketEvents): BenchSocket {
  if (target.udp) return openDatagramSocket(target, events);
  if (target.tls) return openTlsSocket(target, events);
  // Plain TCP to an IP address: libuv's handle directly, as the server does, so that the load
  // generator spends less per message than the servers it measures.
  if (rawTcp !== undefined && target.unix === undefined && net.isIP(target.host) !== 0) return openRawSocket(rawTcp, target, readBuffer, events);
  const socket = net.connect({
    ...(target.unix !== undefined ? { path: target.unix } : { host: target.host, port: target.port }),
    noDelay: true,
    // Reads land in one reused buffer: no allocation per chunk on the load side.
    onread: {
      buffer: readBuffer,
      callback: (nread: number, buffer: Uint8Array) => {
        events.data(buffer as Buffer, nread);
        return true;
      },
    },
  });
  socket.once('connect', () => {
    sendProxyHeader(socket, target);
    events.connected();
  });
  socket.on('error', (err) => events.error(err));
  socket.on('close', () => events.closed());
  return { write: (bytes) => void socket.write(bytes), destroy: () => socket.destroy(), datagrams: false };
}

/**
 * A TCP connection on a raw libuv handle (see server/raw-tcp.ts). Every payload the bench writes
 * is immutable (the run's burst buffer, or a PROXY header), so a pending write may hold it.
 */
function openRawSocket(raw: RawTcp, target: BenchTarget, readBuffer: Buffer, events: BenchSocketEvents): BenchSocket {
  const handle = raw.newClientHandle();
  let open = true;
  const close = () => {
    if (!open) return;
    open = false;
    handle.close(() => events.closed());
  };
  const fail = (status: number) => {
    if (!open) return;
    events.error(errnoError(status));
    close();
  };
  const onWriteComplete = function (this: WriteRequest, status: number) {
    this.buffer = null;
    if (status < 0) fail(status);
  };
  const write = (bytes: Buffer) => {
    if (!open) return;
    const result = writeToHandle(raw, handle, bytes, undefined, onWriteComplete);
    if (result < 0) fail(result);
  };
  handle.onread = () => {
    const nread = raw.lastReadResult();
    if (nread > 0) events.data(readBuffer, nread);
    else if (nread < 0) {
      // End of stream before the run is over is the server leaving: the bench counts it as such.
      if (nread === raw.EOF) close();
      else fail(nread);
    }
  };
  startConnect(raw, handle, target, (status) => {
    if (!open) return;
    if (status < 0) return fail(status);
    handle.setNoDelay(true);
    handle.useUserBuffer(readBuffer);
    const started = handle.readStart();
    if (started < 0) return fail(started);
    if (target.proxyProtocol !== undefined) write(proxyHeader(target.proxyProtocol, addressOf(handle, 'getsockname'), addressOf(handle, 'getpeername')));
    events.connected();
  });
  return { write, destroy: close, datagrams: false };
}

/** Whether `connectForAdoption` can reach this target: plain TCP to an IP address, no PROXY header. */
export function adoptable(target: BenchTarget): boolean {
  return rawTcp !== undefined && target.unix === undefined && !target.tls && !target.udp && target.proxyProtocol === undefined && net.isIP(target.host) !== 0;
}

/**
 * Connects to an `adoptable` target and hands the connected descriptor to `connected`, which
 * takes its own duplicate (the native engine does); our handle is closed after it returns.
 * Returns a canceller for a connect still in progress.
 */
export function connectForAdoption(target: BenchTarget, events: { connected(fd: number): void; failed(err: NodeJS.ErrnoException): void }): () => void {
  const raw = rawTcp!;
  const handle = raw.newClientHandle();
  let open = true;
  const close = () => {
    if (!open) return;
    open = false;
    handle.close();
  };
  startConnect(raw, handle, target, (status) => {
    if (!open) return;
    if (status < 0) {
      close();
      return events.failed(errnoError(status));
    }
    try {
      events.connected(handle.fd);
    } finally {
      close();
    }
  });
  return close;
}

function startConnect(raw: RawTcp, handle: TcpHandle, target: BenchTarget, done: (status: number) => void): void {
  const req = raw.newConnectRequest();
  req.oncomplete = (status) => done(status);
  const status = net.isIPv6(target.host) ? handle.connect6(req, target.host, target.port) : handle.connect(req, target.host, target.port);
  // Reported from the next tick, as a failed connection always is.
  if (status < 0) process.nextTick(() => done(status));
}

function errnoError(status: number): NodeJS.ErrnoException {
  const code = errorName(status);
  return Object.assign(new Error(code), { code });
}

function addressOf(handle: TcpHandle, which: 'getsockname' | 'getpeername'): ProxyEndpoint | undefined {
  const out: Record<string, unknown> = {};
  if (handle[which](out) !== 0) return undefined;
  return { address: out['address'] as string, port: out['port'] as number };
}

function proxyHeader(version: 1 | 2, source: ProxyEndpoint | undefined, destination: ProxyEndpoint | undefined): Buffer {
  // Over a Unix socket there is no IP address to name: a v2 LOCAL header, or v1 UNKNOWN.
  if (source === undefined || destination === undefined) return version === 2 ? encodeProxyV2() : Buffer.from('PROXY UNKNOWN\r\n');
  return version === 2 ? encodeProxyV2({ source, destination }) : encodeProxyV1({ source, destination });
}

function openTlsSocket(target: BenchTarget, events: BenchSocketEvents): BenchSocket {
  const socket = tls.connect({
    host: target.host,
    port: target.port,
    ...(net.isIP(target.host) === 0 && { servername: target.host }),
    rejectUnauthorized: !target.tlsInsecure,
    ...(target.tlsCa !== undefined && { ca: [...tls.rootCertificates, target.tlsCa.toString()] }),
  });
  socket.setNoDelay(true);
  socket.once('secureConnect', () => events.connected());
  socket.on('data', (chunk: Buffer) => events.data(chunk, chunk.length));
  socket.on('error', (err) => events.error(err));
  socket.on('close', () => events.closed());
  return { write: (bytes) => void socket.write(bytes), destroy: () => socket.destroy(), datagrams: false };
}

function openDatagramSocket(target: BenchTarget, events: BenchSocketEvents): BenchSocket {
  const socket = dgram.createSocket({ type: net.isIPv6(target.host) ? 'udp6' : 'udp4', recvBufferSize: 4 * 1024 * 1024 });
  let open = true;
  socket.on('message', (message) => events.data(message, message.length));
  // A connected UDP socket hears of an unreachable port (ECONNREFUSED) as an error.
  socket.on('error', (err) => events.error(err));
  socket.on('close', () => events.closed());
  socket.connect(target.port, target.host, () => events.connected());
  return {
    write: (bytes) => socket.send(bytes),
    destroy: () => {
      if (!open) return;
      open = false;
      socket.close();
    },
    datagrams: true,
  };
}

function sendProxyHeader(socket: net.Socket, target: BenchTarget): void {
  if (target.proxyProtocol === undefined) return;
  const { localAddress, localPort, remoteAddress, remotePort } = socket;
  const known = localAddress !== undefined && remoteAddress !== undefined && localPort !== undefined && remotePort !== undefined;
  socket.write(proxyHeader(target.proxyProtocol, known ? { address: localAddress, port: localPort } : undefined, known ? { address: remoteAddress, port: remotePort } : undefined));
}
