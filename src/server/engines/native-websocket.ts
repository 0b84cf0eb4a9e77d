// A WebSocket connection on the native engine: JavaScript answers its HTTP request, C frames every message after.

import {
  answerUpgrade,
  httpResponse,
  parseRequestHead,
  simpleResponse,
  wantsUpgrade,
} from '../../protocol/websocket-handshake.js';
import type { ConnectionContext, ServerCloseCode } from '../connection.js';
import {
  CLOSE_WAIT_MS,
  closeCodeFor,
  countClose,
  GOING_AWAY,
  NATIVE_PROTOCOL_ERRORS,
  reportProtocolError,
} from '../websocket-closes.js';
import { WS_OTHER_METHODS, WS_PAGE, WS_PAGE_HEADERS } from '../ws-page.js';
import { counters, NativeConnection, SendKind, type EngineRef } from './native-connection.js';

/**
 * Until its upgrade the engine hands this connection's bytes to `httpData`, which reads one
 * request: an upgrade is answered with 101 and the engine frames from then on; a GET gets the
 * echo page and the connection closes (one request per connection on this engine).
 */
export class NativeWebSocketConnection extends NativeConnection {
  /** The request so far; undefined once it is answered. */
  #request: Buffer | undefined = Buffer.alloc(0);
  #requestDeadline: NodeJS.Timeout | undefined;
  #upgraded = false;
  /** The close code this side sent first, which is the one counted. */
  #sentCode: number | undefined;
  /** The hello line, waiting for the upgrade. */
  #hello: string | undefined;

  constructor(
    id: number,
    remoteAddress: string,
    remotePort: number,
    context: ConnectionContext,
    engine: EngineRef,
    nativeId: number,
    requestTimeoutMs: number,
  ) {
    super(id, remoteAddress, remotePort, context, engine, nativeId);
    this.#requestDeadline = setTimeout(
      () => this.abort(`no whole HTTP request within ${requestTimeoutMs / 1000}s`),
      requestTimeoutMs,
    );
    this.#requestDeadline.unref();
  }

  /** Bytes of the HTTP request, as they come. */
  httpData(chunk: Buffer): void {
    if (this.#request === undefined) return;
    const request = this.#request.length === 0 ? chunk : Buffer.concat([this.#request, chunk]);
    const result = parseRequestHead(request);
    if (result.status === 'incomplete') {
      this.#request = request;
      return;
    }
    this.#request = undefined;
    clearTimeout(this.#requestDeadline);
    this.#requestDeadline = undefined;
    if (result.status === 'invalid') return this.#respond(simpleResponse(400, 'Bad Request', result.reason));
    const { head, length } = result;
    if (!wantsUpgrade(head)) {
      if (head.method !== 'GET' && head.method !== 'HEAD') {
        return this.#respond(simpleResponse(405, 'Method Not Allowed', WS_OTHER_METHODS, { allow: 'GET, HEAD' }));
      }
      return this.#respond(httpResponse(200, 'OK', WS_PAGE_HEADERS, WS_PAGE, head.method === 'HEAD'));
    }
    const answer = answerUpgrade(head);
    if (!answer.ok) return this.#respond(answer.response);
    this.#upgraded = true;
    this.engine.binding.upgrade(this.engine.engine, this.nativeId, answer.response, request.subarray(length));
    if (this.#hello !== undefined) super.greet(this.#hello);
    this.#hello = undefined;
  }

  #respond(response: Buffer): void {
    this.engine.binding.send(this.engine.engine, this.nativeId, response, SendKind.Bytes);
    this.engine.binding.finish(this.engine.engine, this.nativeId);
  }

  /** The hello line is the first message after the handshake (a page fetch gets none). */
  override greet(line: string): void {
    if (this.#upgraded) super.greet(line);
    else this.#hello = line;
  }

  protected override send(reply: Buffer): void {
    this.engine.binding.send(this.engine.engine, this.nativeId, reply, SendKind.Text);
  }

  // Pings and pongs are traffic for the idle timeout, though they carry no echo.
  override get trafficCount(): number {
    return this.readCounters()
      ? counters[0]! + counters[1]! - counters[2]! + counters[3]!
      : this.receivedBytes + this.sentBytes;
  }

  /** Closes with 1001 (going away) after every queued echo; before the upgrade, ends the HTTP stream. */
  override finish(): void {
    this.#close(GOING_AWAY);
  }

  /** A close frame with `code` (1001 idle, 1011 a failed transform), then the connection ends. */
  override endWithCode(reason: string, code: ServerCloseCode): void {
    if (!this.#upgraded) {
      this.abort(reason);
      return;
    }
    this.closeBecause(`${reason}, close code ${code}`);
    this.#close(code);
  }

  /** Once the close frame is out, a client that does not answer it is not waited for long. */
  #close(code: number): void {
    if (this.#upgraded) this.#sentCode ??= code;
    this.engine.binding.closeWebSocket(this.engine.engine, this.nativeId, code);
    const guard = () => {
      if (!this.readCounters()) return;
      if (counters[2]! > 0) setTimeout(guard, CLOSE_WAIT_MS).unref();
      else this.abort('the client did not answer the close frame');
    };
    setTimeout(guard, CLOSE_WAIT_MS).unref();
  }

  override nativeClosed(
    status: number,
    bytesReceived: number,
    bytesSent: number,
    closeCode: number,
    wsError: number,
  ): void {
    clearTimeout(this.#requestDeadline);
    if (this.#upgraded) {
      const error = NATIVE_PROTOCOL_ERRORS[wsError];
      if (error !== undefined) {
        const code = closeCodeFor(error.code);
        this.#sentCode ??= code;
        this.closeBecause(reportProtocolError(this.context, this.id, this.peer, error.code, error.message, code));
      }
      const sent = this.#sentCode !== undefined && this.#sentCode === closeCode ? this.#sentCode : undefined;
      this.closeBecause(countClose(this.context, sent, closeCode === 0 ? 1006 : closeCode, ''));
    }
    super.nativeClosed(status, bytesReceived, bytesSent, closeCode, wsError);
  }
}
