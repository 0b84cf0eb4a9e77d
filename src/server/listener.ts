// Listening sockets: on net.Server (portable) or on a raw libuv TCP handle (fast), one interface.

import { lookup } from 'node:dns/promises';
import net from 'node:net';
import { ListenError, systemErrorCode } from '../errors.js';
import { formatEndpoint } from './address.js';
import type { Connection, ConnectionContext } from './connection.js';
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
  /** Stops accepting; live connections are drained separately. */
  close(): void;
}

/** What a listener reports to the server. */
export interface AcceptHandler {
  /**
   * A connection arrived from `remoteAddress` (undefined if it already left). The server either
   * calls `adopt` (with the address as it should be shown) to wrap it in a Connection, or
   * `reject` to close it at once.
   */
  accepted(remoteAddress: string | undefined, remotePort: number | undefined, adopt: (id: number, remoteAddress: string) => Connection, reject: () => void): void;
  failed(err: Error): void;
}

export interface ListenOptions {
  host: string;
  port: number;
  context: ConnectionContext;
  handler: AcceptHandler;
}

export async function listenNet({ host, port, context, handler }: ListenOptions): Promise<Listener> {
  const server = net.createServer({
    allowHalfOpen: true,
    noDelay: true,
    // Makes write() report backpressure exactly at maxBuffered queued bytes.
    highWaterMark: context.maxBuffered,
  });
  server.on('connection', (socket) => {
    const { remoteAddress, remotePort } = socket;
    handler.accepted(
      remoteAddress,
      remotePort,
      (id, address) => new StreamConnection(id, socket, address, remotePort!, context),
      () => socket.destroy(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(new ListenError(formatEndpoint('tcp', host, port), describeListenError(systemErrorCode(err), err.message), err));
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      server.on('error', (err) => handler.failed(err));
      resolve();
    });
  });
  const address = server.address() as net.AddressInfo;
  return {
    address: { host: address.address, port: address.port, family: address.family },
    close: () => {
      if (server.listening) server.close();
    },
  };
}

const BACKLOG = 511;

export async function listenRaw(raw: RawTcp, { host, port, context, handler }: ListenOptions): Promise<Listener> {
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
  handle.onconnection = (status: number, client?: TcpHandle) => {
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
      (id, address) => new RawConnection(id, client, address, remotePort!, context, raw),
      () => client.close(),
    );
  };
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
