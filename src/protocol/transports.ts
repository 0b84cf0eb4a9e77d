// How a client reaches its target (the bench, ping): TCP, TLS, a Unix socket, UDP or WebSocket,
// optionally opening each connection with a PROXY header, behind one small socket interface.

import dgram from 'node:dgram';
import net from 'node:net';
import tls from 'node:tls';
import { WebSocket } from 'ws';
import { encodeProxyV1, encodeProxyV2, type ProxyEndpoint } from './proxy-protocol.js';
import { formatEndpoint, formatHostPort } from '../core/address.js';

/** The largest UDP payload over IPv4 (65,535 minus the IP and UDP headers). */
export const MAX_UDP_PAYLOAD = 65_507;

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
  /** With `tls`: present this PEM client certificate and key (for servers that require one: mTLS). */
  tlsCert?: string | Buffer;
  tlsKey?: string | Buffer;
  /** Send datagrams: one message per datagram, one reply expected per message. */
  udp?: boolean;
  /** Open each connection with a PROXY protocol header of this version, naming our own address. */
  proxyProtocol?: 1 | 2;
  /** Speak WebSocket (`wss` with `tls`): one message per write, one reply message per message. */
  websocket?: WebSocketTarget;
  /** Every port to spread connections over (the server's `--port 1234,1235`); `port` is the first. */
  ports?: readonly number[];
  /**
   * Local addresses to spread connections over: one source address reaches about 28,000
   * connections to one destination port (the ephemeral port range), a list of them many more.
   */
  sourceAddresses?: readonly string[];
  /** The local address one connection binds to (set per connection from `sourceAddresses`). */
  localAddress?: string;
}

/**
 * The target connection `index` (counting from 0) goes to: sources taken in turn, and each
 * source's turn taking the ports in turn, so that every source reaches every port evenly.
 */
export function connectionTarget(target: BenchTarget, index: number): BenchTarget {
  const sources = target.sourceAddresses ?? [];
  const ports = target.ports ?? [];
  if (sources.length === 0 && ports.length <= 1) return target;
  const source = sources.length === 0 ? undefined : sources[index % sources.length];
  const round = sources.length === 0 ? index : Math.floor(index / sources.length);
  const port = ports.length === 0 ? target.port : ports[round % ports.length]!;
  return { ...target, port, ...(source !== undefined && { localAddress: source }) };
}

export interface WebSocketTarget {
  /** The request path, with any query: `/`, `/echo?x=1`. */
  path: string;
  /** Send text messages rather than binary ones (the bytes must then be UTF-8). */
  text?: boolean;
}

export interface BenchSocket {
  /** Streams take any slice of the byte sequence; a message socket takes exactly one message per call. */
  write(bytes: Buffer): void;
  destroy(): void;
  /** Message-oriented (UDP datagrams, WebSocket messages): each write is one message, each `data` one whole message. */
  readonly messages: boolean;
}

export interface BenchSocketEvents {
  connected(): void;
  /**
   * `bytes` may be a shared buffer: use the first `length` bytes before returning. Over
   * WebSocket, `binary` says whether the message was binary or text.
   */
  data(bytes: Buffer, length: number, binary?: boolean): void;
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
    ...(options.tlsCert !== undefined && { tlsCert: options.tlsCert }),
    ...(options.tlsKey !== undefined && { tlsKey: options.tlsKey }),
    ...(options.udp !== undefined && { udp: options.udp }),
    ...(options.proxyProtocol !== undefined && { proxyProtocol: options.proxyProtocol }),
    ...(options.websocket !== undefined && { websocket: options.websocket }),
    ...(options.ports !== undefined && { ports: options.ports }),
    ...(options.sourceAddresses !== undefined && { sourceAddresses: options.sourceAddresses }),
  };
}

/** `tcp://127.0.0.1:1234`, `tls://...`, `udp://...`, `ws://host:port/path` or `unix:///path`, for reports. */
export function describeTarget(target: BenchTarget): string {
  if (target.unix !== undefined) return `unix://${target.unix}`;
  const ports = target.ports !== undefined && target.ports.length > 1 ? `,${target.ports.slice(1).join(',')}` : '';
  if (target.websocket !== undefined)
    return `${formatEndpoint(target.tls ? 'wss' : 'ws', target.host, target.port)}${ports}${target.websocket.path}`;
  return `${formatEndpoint(target.udp ? 'udp' : target.tls ? 'tls' : 'tcp', target.host, target.port)}${ports}`;
}

/** `readBuffer` is reused for every read on plain streams (TLS and UDP hand over their own buffers). */
export function openBenchSocket(target: BenchTarget, readBuffer: Buffer, events: BenchSocketEvents): BenchSocket {
  if (target.udp) return openDatagramSocket(target, events);
  if (target.websocket !== undefined) return openWebSocket(target, target.websocket, events);
  if (target.tls) return openTlsSocket(target, events);
  const socket = net.connect({
    ...(target.unix !== undefined
      ? { path: target.unix }
      : { host: target.host, port: target.port, ...localAddressOf(target) }),
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
  return { write: (bytes) => void socket.write(bytes), destroy: () => socket.destroy(), messages: false };
}

/** `{ localAddress }` where the target binds one. */
function localAddressOf(target: BenchTarget): { localAddress?: string } {
  return target.localAddress === undefined ? {} : { localAddress: target.localAddress };
}

function proxyHeader(
  version: 1 | 2,
  source: ProxyEndpoint | undefined,
  destination: ProxyEndpoint | undefined,
): Buffer {
  // Over a Unix socket there is no IP address to name: a v2 LOCAL header, or v1 UNKNOWN.
  if (source === undefined || destination === undefined)
    return version === 2 ? encodeProxyV2() : Buffer.from('PROXY UNKNOWN\r\n');
  return version === 2 ? encodeProxyV2({ source, destination }) : encodeProxyV1({ source, destination });
}

/** The client certificate and key to present, for tls.connect. */
function clientIdentity(target: BenchTarget): { cert?: string | Buffer; key?: string | Buffer } {
  return target.tlsCert !== undefined && target.tlsKey !== undefined
    ? { cert: target.tlsCert, key: target.tlsKey }
    : {};
}

function openTlsSocket(target: BenchTarget, events: BenchSocketEvents): BenchSocket {
  const socket = tls.connect({
    host: target.host,
    port: target.port,
    ...localAddressOf(target),
    ...(net.isIP(target.host) === 0 && { servername: target.host }),
    rejectUnauthorized: !target.tlsInsecure,
    ...(target.tlsCa !== undefined && { ca: [...tls.rootCertificates, target.tlsCa.toString()] }),
    ...clientIdentity(target),
  });
  socket.setNoDelay(true);
  socket.once('secureConnect', () => events.connected());
  socket.on('data', (chunk: Buffer) => events.data(chunk, chunk.length));
  socket.on('error', (err) => events.error(err));
  socket.on('close', () => events.closed());
  return { write: (bytes) => void socket.write(bytes), destroy: () => socket.destroy(), messages: false };
}

function openDatagramSocket(target: BenchTarget, events: BenchSocketEvents): BenchSocket {
  const socket = dgram.createSocket({
    type: net.isIPv6(target.host) ? 'udp6' : 'udp4',
    recvBufferSize: 4 * 1024 * 1024,
  });
  let open = true;
  socket.on('message', (message) => events.data(message, message.length));
  // A connected UDP socket hears of an unreachable port (ECONNREFUSED) as an error.
  socket.on('error', (err) => events.error(err));
  socket.on('close', () => events.closed());
  const connect = () => socket.connect(target.port, target.host, () => events.connected());
  if (target.localAddress === undefined) connect();
  else socket.bind({ port: 0, address: target.localAddress }, connect);
  return {
    write: (bytes) => socket.send(bytes),
    destroy: () => {
      if (!open) return;
      open = false;
      socket.close();
    },
    messages: true,
  };
}

/** How long a closing WebSocket waits for the server's close frame before dropping the connection. */
const WEBSOCKET_CLOSE_WAIT_MS = 1000;

function openWebSocket(target: BenchTarget, websocket: WebSocketTarget, events: BenchSocketEvents): BenchSocket {
  const url = `${target.tls ? 'wss' : 'ws'}://${formatHostPort(target.host, target.port)}${websocket.path}`;
  const socket = new WebSocket(url, {
    perMessageDeflate: false,
    ...localAddressOf(target),
    ...(target.tls && {
      ...(net.isIP(target.host) === 0 && { servername: target.host }),
      rejectUnauthorized: !target.tlsInsecure,
      ...(target.tlsCa !== undefined && { ca: [...tls.rootCertificates, target.tlsCa.toString()] }),
      ...clientIdentity(target),
    }),
  });
  socket.once('open', () => events.connected());
  socket.on('message', (data: Buffer, binary: boolean) => events.data(data, data.length, binary));
  socket.on('error', (err: NodeJS.ErrnoException) => events.error(err));
  socket.on('close', () => events.closed());
  const binary = !websocket.text;
  return {
    write: (bytes) => socket.send(bytes, { binary }),
    destroy: () => {
      // A clean close (1000) where the connection is open; a handshake in progress is dropped.
      if (socket.readyState !== WebSocket.OPEN) return socket.terminate();
      socket.close(1000);
      setTimeout(() => socket.terminate(), WEBSOCKET_CLOSE_WAIT_MS).unref();
    },
    messages: true,
  };
}

function sendProxyHeader(socket: net.Socket, target: BenchTarget): void {
  if (target.proxyProtocol === undefined) return;
  const { localAddress, localPort, remoteAddress, remotePort } = socket;
  const known =
    localAddress !== undefined && remoteAddress !== undefined && localPort !== undefined && remotePort !== undefined;
  socket.write(
    proxyHeader(
      target.proxyProtocol,
      known ? { address: localAddress, port: localPort } : undefined,
      known ? { address: remoteAddress, port: remotePort } : undefined,
    ),
  );
}
