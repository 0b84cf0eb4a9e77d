// Real-socket helpers: start servers on port 0, connect, exchange bytes, all bounded in time.

import { readFileSync } from 'node:fs';
import net from 'node:net';
import { createEchoServer, type EchoServer, type EchoServerOptions } from '../../src/index.js';
import { withTimeout } from './timeout.js';

export interface RunningServer {
  server: EchoServer;
  port: number;
  close(): Promise<void>;
}

export async function startServer(options: EchoServerOptions = {}): Promise<RunningServer> {
  const server = createEchoServer({ port: 0, ...options });
  const address = await server.listen();
  return {
    server,
    port: address.port,
    close: async () => {
      await withTimeout(server.close({ timeoutMs: 2000 }), 5000, 'server close');
    },
  };
}

export function connectTo(port: number, host = '127.0.0.1'): Promise<net.Socket> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const socket = net.connect({ port, host, allowHalfOpen: true }, () => {
        socket.off('error', reject);
        resolve(socket);
      });
      socket.once('error', reject);
    }),
    5000,
    `connect to ${host}:${port}`,
  );
}

/** Collects bytes until `length` have arrived (or the stream ends early). */
export function readBytes(socket: net.Socket, length: number, ms = 10_000): Promise<Buffer> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let received = 0;
      const onData = (chunk: Buffer) => {
        chunks.push(chunk);
        received += chunk.length;
        if (received >= length) finish();
      };
      const finish = () => {
        socket.off('data', onData);
        socket.off('end', finish);
        socket.off('error', reject);
        resolve(Buffer.concat(chunks));
      };
      socket.on('data', onData);
      socket.once('end', finish);
      socket.once('error', reject);
    }),
    ms,
    `${length} bytes from the server`,
  );
}

/** Reads everything until the server's FIN. */
export function readToEnd(socket: net.Socket, ms = 10_000): Promise<Buffer> {
  return readBytes(socket, Number.POSITIVE_INFINITY, ms);
}

/** Reads until the server resets the connection: the bytes before it, or a rejection if the stream ends cleanly. */
export function readUntilReset(socket: net.Socket, ms = 10_000): Promise<Buffer> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.once('end', () => reject(new Error('the server ended the stream cleanly instead of resetting it')));
      socket.once('error', (err: NodeJS.ErrnoException) =>
        err.code === 'ECONNRESET' ? resolve(Buffer.concat(chunks)) : reject(err),
      );
    }),
    ms,
    'a reset from the server',
  );
}

/** Sends a payload and returns exactly as many bytes of reply. */
export async function roundTrip(port: number, payload: Buffer, ms = 10_000, host = '127.0.0.1'): Promise<Buffer> {
  const socket = await connectTo(port, host);
  try {
    const reply = readBytes(socket, payload.length, ms);
    socket.write(payload);
    return await reply;
  } finally {
    socket.destroy();
  }
}

export function closed(socket: net.Socket, ms = 5000): Promise<void> {
  return withTimeout(
    new Promise((resolve) => {
      if (socket.destroyed) return resolve();
      socket.once('close', () => resolve());
    }),
    ms,
    'socket close',
  );
}

/** How many sockets listen on 127.0.0.1:`port`, from the kernel's own table (Linux). */
export function listeningSockets(port: number): number {
  return socketsIn('/proc/net/tcp', port, '0A');
}

/** How many UDP sockets are bound to 127.0.0.1:`port`, from the kernel's own table (Linux). */
export function boundDatagramSockets(port: number): number {
  return socketsIn('/proc/net/udp', port, '07');
}

function socketsIn(table: string, port: number, state: string): number {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync(table, 'utf8')
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((fields) => fields[1] === local && fields[3] === state).length;
}
