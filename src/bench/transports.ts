// How the bench reaches its target: TCP, TLS, a Unix socket or UDP, optionally opening each
// connection with a PROXY header. The load generator sees one small interface for all of them.

import dgram from 'node:dgram';
import net from 'node:net';
import tls from 'node:tls';
import { encodeProxyV1, encodeProxyV2 } from '../server/proxy-protocol.js';
import { formatEndpoint } from '../server/address.js';

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

/** `tcp://127.0.0.1:1234`, `tls://...`, `udp://...` or `unix:///path`, for reports. */
export function describeTarget(target: BenchTarget): string {
  if (target.unix !== undefined) return `unix://${target.unix}`;
  return formatEndpoint(target.udp ? 'udp' : target.tls ? 'tls' : 'tcp', target.host, target.port);
}

/** `readBuffer` is reused for every read on plain streams (TLS and UDP hand over their own buffers). */
export function openBenchSocket(target: BenchTarget, readBuffer: Buffer, events: BenchSocketEvents): BenchSocket {
  if (target.udp) return openDatagramSocket(target, events);
  if (target.tls) return openTlsSocket(target, events);
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
  // Over a Unix socket there is no IP address to name: a v2 LOCAL header, or v1 UNKNOWN.
  if (localAddress === undefined || remoteAddress === undefined || localPort === undefined || remotePort === undefined) {
    socket.write(target.proxyProtocol === 2 ? encodeProxyV2() : Buffer.from('PROXY UNKNOWN\r\n'));
    return;
  }
  const spec = { source: { address: localAddress, port: localPort }, destination: { address: remoteAddress, port: remotePort } };
  socket.write(target.proxyProtocol === 2 ? encodeProxyV2(spec) : encodeProxyV1(spec));
}
