// The line client: an interactive `>:` prompt like the seed's, or a byte pipe for scripts.

import { readFile } from 'node:fs/promises';
import net from 'node:net';
import readline from 'node:readline';
import tls from 'node:tls';
import type { Readable, Writable } from 'node:stream';
import { ConnectError, describeSocketError, systemErrorCode } from '../core/errors.js';
import { formatHostPort } from '../core/address.js';

/** How to reach the server, beyond host and port. */
export interface ConnectOptions {
  /** Connect to this Unix socket path instead. */
  unix?: string;
  /** Speak TLS; verify the server's certificate unless `tlsInsecure`. */
  tls?: boolean;
  tlsInsecure?: boolean;
  /** Also trust this PEM CA (a file path). */
  tlsCaFile?: string;
  /** Present this client certificate and key (PEM, already read), for servers that require one (mTLS). */
  tlsCert?: Buffer;
  tlsKey?: Buffer;
  /**
   * Longest wait for the connection to open, its TLS handshake included; over UDP, for each
   * reply; and, once input has ended, for the server's next byte or its close. Default 5 s.
   */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 5000;

export interface ClientOptions extends ConnectOptions {
  host?: string;
  port?: number;
  /** Send each line as a UDP datagram and print each reply (RFC 862 over UDP). */
  udp?: boolean;
  /** Speak WebSocket to this request path (`wss` with `tls`): each line one message, each reply printed. */
  websocketPath?: string;
  /** Over WebSocket: send binary messages rather than text. */
  websocketBinary?: boolean;
  input?: Readable;
  output?: Writable;
  /** Prompt mode (default: when `input` is a TTY); otherwise bytes are streamed both ways. */
  interactive?: boolean;
  /** The prompt shown before each line, `>:` like the seed's client. */
  prompt?: string;
  /** In prompt mode, show a reply that has no newline after this much silence. Default 500 ms. */
  settleMs?: number;
}

const NEWLINE = 0x0a;

/** Connects (and finishes the TLS handshake), or throws a ConnectError that says why in words. */
export async function connect(host: string, port: number, options: ConnectOptions = {}): Promise<net.Socket> {
  const where = options.unix ?? formatHostPort(host, port);
  const ca = options.tlsCaFile === undefined ? undefined : await readCaFile(options.tlsCaFile);
  return new Promise((resolve, reject) => {
    const endpoint = options.unix !== undefined ? { path: options.unix } : { host, port };
    const useTls = options.tls || options.tlsInsecure || ca !== undefined || options.tlsCert !== undefined;
    const socket = useTls
      ? tls.connect({
          ...endpoint,
          ...(net.isIP(host) === 0 && options.unix === undefined && { servername: host }),
          rejectUnauthorized: !options.tlsInsecure,
          ...(ca !== undefined && { ca: [...tls.rootCertificates, ca.toString()] }),
          ...(options.tlsCert !== undefined &&
            options.tlsKey !== undefined && { cert: options.tlsCert, key: options.tlsKey }),
        })
      : net.connect({ ...endpoint, noDelay: true, allowHalfOpen: true });
    // A server that accepts and never answers (a TLS port that is not one, a stalled process)
    // would otherwise hold the client forever.
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ConnectError(`cannot connect to ${where}: no answer within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    socket.once(useTls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      resolve(socket);
    });
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(new ConnectError(`cannot connect to ${where}: ${describeSocketError(err)}`, err));
    };
    socket.once('error', onError);
  });
}

function readCaFile(path: string): Promise<Buffer> {
  return readFile(path).catch((err: Error) => {
    throw new ConnectError(`cannot read the CA file ${path}: ${err.message}`, err);
  });
}

/** Runs the client until the conversation ends. Resolves on a clean end, throws ConnectError otherwise. */
export async function runClient(options: ClientOptions = {}): Promise<void> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 1234;
  const input = options.input ?? process.stdin;
  const output = options.output ?? process.stdout;
  const interactive = options.interactive ?? Boolean((input as { isTTY?: boolean }).isTTY);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (options.udp) {
    const { runUdpClient } = await import('./udp-client.js');
    return runUdpClient({
      host,
      port,
      input,
      output,
      interactive,
      prompt: options.prompt ?? '>:',
      replyTimeoutMs: timeoutMs,
    });
  }
  if (options.websocketPath !== undefined) {
    const { runWebSocketClient } = await import('./ws-client.js');
    const secure =
      options.tls || options.tlsInsecure || options.tlsCaFile !== undefined || options.tlsCert !== undefined;
    const tlsCa = options.tlsCaFile === undefined ? undefined : await readCaFile(options.tlsCaFile);
    return runWebSocketClient({
      url: `${secure ? 'wss' : 'ws'}://${formatHostPort(host, port)}${options.websocketPath}`,
      input,
      output,
      interactive,
      prompt: options.prompt ?? '>:',
      binary: options.websocketBinary ?? false,
      tlsInsecure: options.tlsInsecure ?? false,
      connectTimeoutMs: timeoutMs,
      ...(tlsCa !== undefined && { tlsCa }),
      ...(options.tlsCert !== undefined &&
        options.tlsKey !== undefined && { tlsCert: options.tlsCert, tlsKey: options.tlsKey }),
    });
  }
  const socket = await connect(host, port, options);
  const finishing = new Finishing(socket, timeoutMs);
  try {
    if (interactive)
      await promptLoop(socket, input, output, options.prompt ?? '>:', options.settleMs ?? 500, finishing);
    else await pipeThrough(socket, input, output, finishing);
  } finally {
    socket.destroy();
  }
}

/**
 * Streams input to the server and the server's bytes to output. When input ends the client
 * half-closes, then waits for the server's last byte, so nothing in flight is lost.
 */
async function pipeThrough(socket: net.Socket, input: Readable, output: Writable, finishing: Finishing): Promise<void> {
  let inputDone = false;
  input.once('end', () => {
    inputDone = true;
    finishing.start();
  });
  // An echo server answers every line, and at least every byte (upper keeps lengths, a prefix
  // adds to them): fewer back means replies did not come back whole.
  const sent = { lines: 0, bytes: 0 };
  const received = { lines: 0, bytes: 0 };
  const count = (into: { lines: number; bytes: number }) => (chunk: Buffer) => {
    into.bytes += chunk.length;
    for (let at = chunk.indexOf(NEWLINE); at !== -1; at = chunk.indexOf(NEWLINE, at + 1)) into.lines++;
  };
  input.on('data', count(sent));
  socket.on('data', count(received));
  // The last bytes the server sent: an echoplex server refusing a line says so in one, and closes.
  let tail = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    tail = Buffer.concat([tail, chunk]).subarray(-SERVER_ERROR_LINE_MAX);
  });
  input.pipe(socket);
  socket.pipe(output, { end: false });
  const serverEnded = await endOfServerStream(socket);
  input.unpipe(socket);
  finishing.check();
  if (serverEnded !== true) throw brokenBy(serverEnded);
  if (!inputDone) throw new ConnectError('the server closed the connection before all input was sent');
  await flushed(output);
  if (received.lines < sent.lines || received.bytes < sent.bytes) {
    const what =
      sent.lines > 0
        ? `${received.lines} of ${sent.lines} ${sent.lines === 1 ? 'line' : 'lines'}`
        : `${received.bytes} of ${sent.bytes} bytes`;
    throw new ConnectError(`the server closed the connection before every reply came back whole (${what})`);
  }
  const refusal = serverErrorLine(tail);
  if (refusal !== undefined) throw new ConnectError(`the server refused a line and closed the connection: ${refusal}`);
}

/** The longest closing error line looked for at the end of the server's stream. */
const SERVER_ERROR_LINE_MAX = 256;

/**
 * An echoplex server in line mode answers a line it refuses (over --max-line) with one line,
 * `error: ... (--FLAG); closing`, in place of its echo, and closes: the byte and line counts
 * then add up, so the line itself is what tells.
 */
function serverErrorLine(tail: Buffer): string | undefined {
  const text = tail.toString('latin1');
  return /(?:^|\n)(error: [^\n]*\(--[a-z-]+\); closing)\n$/.exec(text)?.[1];
}

/** The seed client's loop, fixed: an empty line is still a line, and a reply is shown whole. */
async function promptLoop(
  socket: net.Socket,
  input: Readable,
  output: Writable,
  prompt: string,
  settleMs: number,
  finishing: Finishing,
): Promise<void> {
  const lines = readline.createInterface({
    input,
    output,
    prompt,
    terminal: Boolean((input as { isTTY?: boolean }).isTTY),
  });
  let received: Buffer[] = [];
  let newlinesOwed = 0;
  let settle: NodeJS.Timeout | undefined;

  const show = () => {
    clearTimeout(settle);
    const reply = Buffer.concat(received);
    received = [];
    newlinesOwed = 0;
    output.write(reply.at(-1) === NEWLINE ? reply : Buffer.concat([reply, Buffer.from('\n')]));
    lines.prompt();
  };

  socket.on('data', (chunk: Buffer) => {
    received.push(chunk);
    for (const byte of chunk) if (byte === NEWLINE) newlinesOwed--;
    clearTimeout(settle);
    if (newlinesOwed <= 0) show();
    // A server that answers without a newline (or not line by line) still gets shown.
    else settle = setTimeout(show, settleMs);
  });

  lines.on('line', (line) => {
    newlinesOwed++;
    socket.write(`${line}\n`);
  });

  // Ctrl-C ends the input as Ctrl-D does, and says what the client is waiting for, since a
  // stalled reply would otherwise hold a silent terminal; a second Ctrl-C quits at once.
  let interrupted = false;
  lines.on('SIGINT', () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    if (newlinesOwed > 0)
      output.write(
        `\n(waiting up to ${finishing.quietMs / 1000} s for the replies still owed; Ctrl-C again to quit now)\n`,
      );
    lines.close();
  });

  const inputClosed = new Promise<void>((resolve) => lines.once('close', resolve));
  lines.prompt();

  const outcome = await Promise.race([
    inputClosed.then(() => 'input' as const),
    endOfServerStream(socket).then((clean) => (clean === true ? ('server' as const) : clean)),
  ]);
  if (outcome !== 'input' && outcome !== 'server') throw brokenBy(outcome);
  if (outcome === 'server') {
    lines.close();
    throw new ConnectError('the server closed the connection');
  }
  // Ctrl-D: tell the server we are done, let the last replies arrive, then leave.
  socket.end();
  finishing.start();
  await endOfServerStream(socket);
  clearTimeout(settle);
  if (received.length > 0) output.write(Buffer.concat(received));
  await flushed(output);
  finishing.check();
}

/**
 * The wait for the server's last bytes once input has ended: over when the server closes, or
 * when it has sent nothing for `quietMs`. A server that keeps a half-closed connection open
 * (many do not answer FIN) would otherwise hold the client forever.
 */
class Finishing {
  readonly #socket: net.Socket;
  readonly #quietMs: number;

  get quietMs(): number {
    return this.#quietMs;
  }
  #silent = false;

  constructor(socket: net.Socket, quietMs: number) {
    this.#socket = socket;
    this.#quietMs = quietMs;
  }

  /** Input has ended: from now on, silence for `quietMs` ends the wait. */
  start(): void {
    this.#socket.setTimeout(this.#quietMs, () => {
      this.#silent = true;
      this.#socket.destroy();
    });
  }

  /** Throws if the wait ended in silence rather than with the server's close. */
  check(): void {
    if (this.#silent)
      throw new ConnectError(
        `the server sent nothing for ${this.#quietMs / 1000} s after the end of input, and did not close the connection`,
      );
  }
}

/** Resolves true when the server ends its stream cleanly; otherwise the error (false for a close without one). */
function endOfServerStream(socket: net.Socket): Promise<true | Error | false> {
  return new Promise((resolve) => {
    if (socket.readableEnded) return resolve(true);
    if (socket.destroyed) return resolve(false);
    socket.once('end', () => resolve(true));
    socket.once('error', (err) => resolve(err));
    socket.once('close', () => resolve(socket.readableEnded));
  });
}

/** The connection broke: in words where the error says why (an mTLS server's alert, say). */
function brokenBy(reason: Error | false): ConnectError {
  if (reason === false || systemErrorCode(reason) === 'ECONNRESET')
    return new ConnectError('connection reset by the server', reason || undefined);
  return new ConnectError(describeSocketError(reason), reason);
}

async function flushed(output: Writable): Promise<void> {
  if (output.writableNeedDrain) await new Promise((resolve) => output.once('drain', resolve));
  // finished() would wait for end(); stdout is never ended, so an empty write's callback marks the flush.
  await new Promise<void>((resolve) => output.write('', () => resolve()));
}
