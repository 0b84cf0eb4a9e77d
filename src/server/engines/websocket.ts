// The WebSocket engine (--ws): RFC 6455 on the stream ports, one echo per message, framing by `ws`.

import http from 'node:http';
import type { Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { systemErrorCode } from '../../core/errors.js';
import { Connection, type ConnectionContext, type ServerCloseCode } from '../connection.js';
import type { ServerEngine } from './engine.js';
import { StreamConnection } from './portable.js';
import { WS_OTHER_METHODS, WS_PAGE, WS_PAGE_HEADERS } from '../ws-page.js';
import { DEFAULT_MAX_MESSAGE, DEFAULT_REQUEST_TIMEOUT_MS, type WebSocketSettings } from '../websocket-settings.js';
import type { ServerStats } from '../stats.js';
import { CLOSE_WAIT_MS, closeCodeFor, countClose, GOING_AWAY, reportProtocolError } from '../websocket-closes.js';

const kConnection = Symbol('echoplex.wsConnection');
type OwnedSocket = Socket & { [kConnection]?: WebSocketConnection };

/**
 * Each accepted socket goes to an HTTP parser first: an upgrade request becomes a WebSocket,
 * any other GET gets the echo page. One HTTP server (never listening) and one WebSocketServer
 * (in noServer mode) serve every connection of an echo server.
 */
export class WebSocketEngine implements ServerEngine {
  /** JavaScript moves the bytes, as on the portable engine. */
  readonly name = 'portable';
  /** The PROXY header must be read before HTTP sees the stream: the listener reads it. */
  readonly readsProxyHeader = false;
  readonly #http: http.Server;
  readonly #sockets: WebSocketServer;
  readonly #requestTimeoutMs: number;

  constructor(settings: WebSocketSettings = {}) {
    this.#sockets = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: settings.maxMessage ?? DEFAULT_MAX_MESSAGE,
      perMessageDeflate: settings.deflate ?? false,
    });
    this.#requestTimeoutMs = settings.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    // Its own request timeouts run only on a server that listens, which this one never does:
    // each connection keeps its own deadline for its first request (see WebSocketConnection).
    this.#http = http.createServer({ keepAlive: true }, (request, response) => {
      (request.socket as OwnedSocket)[kConnection]?.requestArrived();
      servePage(request, response);
    });
    this.#http.on('upgrade', (request: http.IncomingMessage, socket: Socket, head: Buffer) => {
      const connection = (socket as OwnedSocket)[kConnection];
      if (connection === undefined) {
        socket.destroy();
        return;
      }
      connection.requestArrived();
      // Answers a bad handshake with 400 and closes; calls back only for a good one.
      this.#sockets.handleUpgrade(request, socket, head, (ws) => connection.upgraded(ws));
    });
    this.#http.on('clientError', (_err: Error, socket: Socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
  }

  adopt(id: number, socket: Socket, remoteAddress: string, remotePort: number, context: ConnectionContext): Connection {
    const connection = new WebSocketConnection(id, socket, remoteAddress, remotePort, context, this.#requestTimeoutMs);
    (socket as OwnedSocket)[kConnection] = connection;
    socket.resume();
    this.#http.emit('connection', socket);
    return connection;
  }

  addTotalsTo(stats: ServerStats): ServerStats {
    return stats;
  }
}

function servePage(request: http.IncomingMessage, response: http.ServerResponse): void {
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end(`${WS_OTHER_METHODS}\n`);
    return;
  }
  response.writeHead(200, WS_PAGE_HEADERS);
  response.end(request.method === 'HEAD' ? undefined : WS_PAGE);
}

/**
 * A connection on a --ws port: HTTP until its upgrade, then one reply per message, of the same
 * kind (text or binary), through the transform. Everything else (counters, faults, delays, the
 * hello line, backpressure, idle and shutdown sweeps) is the shared Connection's.
 */
export class WebSocketConnection extends Connection {
  readonly socket: Socket;
  #ws: WebSocket | undefined;
  /** Whether each message waiting for its reply was binary, oldest first: a reply goes as its message came. */
  readonly #kinds: boolean[] = [];
  /** Control frames (pings, pongs) seen: traffic for the idle timeout, though they carry no echo. */
  #controlFrames = 0;
  /** The close code this side sent, which is the one counted (a peer gone at once would leave 1006). */
  #sentCode: number | undefined;
  /** The hello line, waiting for the handshake. */
  #hello: string | undefined;
  /** Until the first whole HTTP request: a client that never sends one is closed. */
  #requestDeadline: NodeJS.Timeout | undefined;

  constructor(
    id: number,
    socket: Socket,
    remoteAddress: string,
    remotePort: number,
    context: ConnectionContext,
    requestTimeoutMs: number,
  ) {
    super(id, remoteAddress, remotePort, context);
    this.socket = socket;
    socket.on('error', (err: Error) => this.failed(systemErrorCode(err), err.message));
    socket.once('close', () => {
      clearTimeout(this.#requestDeadline);
      // Once upgraded, the WebSocket's own close (with its code) ends the connection.
      if (this.#ws === undefined) this.closed(socket.writableLength);
    });
    this.#requestDeadline = setTimeout(
      () => this.abort(`no whole HTTP request within ${requestTimeoutMs / 1000}s`),
      requestTimeoutMs,
    );
    this.#requestDeadline.unref();
  }

  /** A whole request came (a page, or an upgrade): the first-request deadline is met. */
  requestArrived(): void {
    clearTimeout(this.#requestDeadline);
    this.#requestDeadline = undefined;
  }

  /** The handshake succeeded: from here on the socket carries frames. */
  upgraded(ws: WebSocket): void {
    this.#ws = ws;
    const context = this.context;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      context.stats.messages[context.transport]++;
      this.#kinds.push(isBinary);
      this.received(data);
    });
    ws.on('ping', () => this.#controlFrames++);
    ws.on('pong', () => this.#controlFrames++);
    ws.on('error', (err: Error & { code?: string }) => this.#protocolError(err));
    ws.on('close', (code: number, reason: Buffer) => this.#wsClosed(code, reason));
    this.socket.on('drain', () => {
      if (!this.inputHeld) ws.resume();
    });
    if (this.#hello !== undefined) super.greet(this.#hello);
    this.#hello = undefined;
  }

  /** The hello line is the first message after the handshake (a page fetch gets none). */
  override greet(line: string): void {
    if (this.#ws !== undefined) super.greet(line);
    else this.#hello = line;
  }

  override get trafficCount(): number {
    return super.trafficCount + this.#controlFrames;
  }

  protected get transportPendingBytes(): number {
    return this.#ws?.bufferedAmount ?? this.socket.writableLength;
  }

  protected holdInput(): void {
    if (this.#ws !== undefined) this.#ws.pause();
    else this.socket.pause();
  }

  protected releaseInput(): void {
    if (this.socket.writableNeedDrain) return;
    if (this.#ws !== undefined) this.#ws.resume();
    else this.socket.resume();
  }

  /** Closes with 1001 (going away) after every queued echo; before the upgrade, ends the HTTP stream. */
  finish(): void {
    const ws = this.#ws;
    if (ws === undefined) {
      if (!this.socket.writableEnded) this.socket.end();
    } else if (ws.readyState === ws.OPEN) {
      this.#close(ws, GOING_AWAY);
    }
  }

  /** A close frame with `code` (1001 idle, 1011 a failed transform), then the connection ends. */
  override endWithCode(reason: string, code: ServerCloseCode): void {
    const ws = this.#ws;
    if (ws === undefined || ws.readyState !== ws.OPEN) {
      this.abort(reason);
      return;
    }
    this.closeBecause(`${reason}, close code ${code}`);
    this.#close(ws, code);
  }

  /**
   * Sends a close frame after what is queued. Once everything has gone, a client that does not
   * answer it is not waited for long (ws's own close timeout, 30 s, bounds the rest).
   */
  #close(ws: WebSocket, code: ServerCloseCode): void {
    this.#sentCode ??= code;
    ws.close(code, code === GOING_AWAY ? 'going away' : 'internal error');
    const guard = () => {
      if (ws.readyState === ws.CLOSED) return;
      if (ws.bufferedAmount > 0) setTimeout(guard, CLOSE_WAIT_MS).unref();
      else ws.terminate();
    };
    setTimeout(guard, CLOSE_WAIT_MS).unref();
  }

  protected destroy(): void {
    if (this.#ws !== undefined) this.#ws.terminate();
    else this.socket.destroy();
  }

  protected reset(): void {
    this.socket.resetAndDestroy();
  }

  protected get outputEnded(): boolean {
    return this.#ws === undefined ? this.socket.writableEnded : this.#ws.readyState !== this.#ws.OPEN;
  }

  protected send(reply: Buffer): void {
    const ws = this.#ws;
    if (ws === undefined) return;
    // The hello line comes before any message: it goes as text.
    const binary = this.#kinds.shift() ?? false;
    ws.send(reply, { binary });
    if (ws.bufferedAmount >= this.context.maxBuffered && !ws.isPaused) {
      ws.pause();
      this.context.stats.backpressurePauses++;
    }
  }

  protected localEndpoint(): string | undefined {
    return StreamConnection.localEndpointOf(this.socket);
  }

  protected override transportDetails(): Record<string, unknown> {
    return StreamConnection.transportDetailsOf(this.socket, this.clientCertificateSubject);
  }

  #protocolError(err: Error & { code?: string }): void {
    // ws has already answered with the close code the error calls for (1002, 1007, 1009).
    const closeCode = closeCodeFor(err.code);
    this.#sentCode ??= closeCode;
    this.closeBecause(reportProtocolError(this.context, this.id, this.peer, err.code, err.message, closeCode));
  }

  #wsClosed(code: number, reason: Buffer): void {
    this.closeBecause(countClose(this.context, this.#sentCode, code, reason.toString()));
    this.closed(0);
  }
}
