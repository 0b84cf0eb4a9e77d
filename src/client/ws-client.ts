// The client over WebSocket: each line goes out as one message, each reply message is printed.

import readline from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { WebSocket } from 'ws';
import { ConnectError, describeSocketError } from '../core/errors.js';

export interface WebSocketClientOptions {
  /** `ws://host:port/path` or `wss://...`. */
  url: string;
  input: Readable;
  output: Writable;
  interactive: boolean;
  prompt: string;
  /** Send binary messages rather than text. Default false: a line is text. */
  binary?: boolean;
  tlsInsecure?: boolean;
  /** Also trust this PEM CA. */
  tlsCa?: Buffer;
  /** Present this client certificate and key (mTLS). */
  tlsCert?: Buffer;
  tlsKey?: Buffer;
  /** Longest wait for the connection and its upgrade (and TLS handshake). */
  connectTimeoutMs: number;
}

/** How long the closing handshake may take once input has ended. */
const CLOSE_WAIT_MS = 5000;

/**
 * Sends each input line (without its newline) as one message and prints every message that
 * comes back on a line of its own. At the end of input it closes with 1000 and waits for the
 * server's close frame, which comes after every reply still owed; a server that closes first
 * is an error, as over TCP.
 */
export async function runWebSocketClient(options: WebSocketClientOptions): Promise<void> {
  const { url, input, output, interactive, prompt } = options;
  const socket = new WebSocket(url, {
    perMessageDeflate: false,
    rejectUnauthorized: !options.tlsInsecure,
    handshakeTimeout: options.connectTimeoutMs,
    ...(options.tlsCa !== undefined && { ca: options.tlsCa }),
    ...(options.tlsCert !== undefined &&
      options.tlsKey !== undefined && { cert: options.tlsCert, key: options.tlsKey }),
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', (err) => {
      // ws's own words for its handshakeTimeout.
      const why =
        err.message === 'Opening handshake has timed out'
          ? `no answer within ${options.connectTimeoutMs / 1000} s`
          : describeSocketError(err);
      reject(new ConnectError(`cannot connect to ${url}: ${why}`, err));
    });
  });
  let inputDone = false;
  const lines = readline.createInterface({
    input,
    ...(interactive && { output, prompt, terminal: Boolean((input as { isTTY?: boolean }).isTTY) }),
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    socket.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() }));
  });
  socket.on('error', () => {});
  socket.on('message', (data: Buffer) => {
    output.write(data.at(-1) === 0x0a ? data : Buffer.concat([data, Buffer.from('\n')]));
    if (interactive && !inputDone) lines.prompt();
  });
  lines.on('line', (line) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(Buffer.from(line), { binary: options.binary ?? false });
  });
  const inputClosed = new Promise<'input'>((resolve) => lines.once('close', () => resolve('input')));
  if (interactive) lines.prompt();
  const first = await Promise.race([inputClosed, closed]);
  if (first !== 'input') {
    lines.close();
    throw new ConnectError(`the server closed the connection (${describeClose(first.code, first.reason)})`);
  }
  inputDone = true;
  socket.close(1000);
  const timer = setTimeout(() => socket.terminate(), CLOSE_WAIT_MS);
  const { code, reason } = await closed;
  clearTimeout(timer);
  if (code !== 1000) throw new ConnectError(`the connection ended with ${describeClose(code, reason)}`);
}

function describeClose(code: number, reason: string): string {
  if (code === 1006) return 'no close frame: code 1006';
  return reason === '' ? `code ${code}` : `code ${code}: ${reason}`;
}
