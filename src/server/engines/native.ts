// The native engine (native/echo_engine.c): C moves TCP, TLS and WebSocket bytes; JavaScript sees each open and close.

import type net from 'node:net';
import { errorName } from '../../core/errors.js';
import { addonBinding, platformConstants } from '../../native/addon.js';
import { descriptorOf } from '../../native/descriptor.js';
import type { Connection, ConnectionContext } from '../connection.js';
import { NativeConnection, type EchoBinding, type EngineRef } from './native-connection.js';
import type { ServerStats, StreamTransport } from '../stats.js';
import { formatSubject } from '../tls.js';
import type { AcceptHandler, ServerEngine } from './engine.js';
import { NativeWebSocketConnection } from './native-websocket.js';
import { portableEngine } from './portable.js';

const binding = addonBinding<EchoBinding>([
  'createEngine',
  'adopt',
  'acceptOn',
  'stopAccepting',
  'finish',
  'destroy',
  'counters',
  'totals',
  'tlsUnavailable',
  'setTls',
  'setWebSocket',
  'send',
  'upgrade',
  'closeWebSocket',
  'localAddress',
]);

/** Why TLS (and wss) cannot be served in C here; undefined where it can, or where there is no addon at all. */
export function nativeTlsUnavailable(): string | undefined {
  return binding?.tlsUnavailable() ?? undefined;
}

/** Who hears of a listener's clients, and what they are served with. */
interface Acceptor {
  context: ConnectionContext;
  handler: AcceptHandler;
  websocket: boolean;
}

/** What the C side can do by itself: the built-in transforms, TLS and WebSocket frames. */
export interface NativeEchoSettings {
  upper: boolean;
  maxBuffered: number;
  /** What the ports speak: TLS and WebSocket listeners need the settings below. */
  transport: StreamTransport;
  tls?: {
    cert: Buffer;
    key: Buffer;
    /** CAs whose client certificates are required (mTLS). */
    ca?: Buffer;
    /** ALPN protocols to select from, in order of preference. */
    alpn?: readonly string[];
    handshakeTimeoutMs: number;
  };
  websocket?: { maxMessage: number; requestTimeoutMs: number };
}

/**
 * One server's native engine: it accepts (or adopts) TCP connections and keeps their byte
 * counts, which the server adds to its own counters when they are read. A socket it cannot take
 * (no descriptor left for its duplicate, say) is served by the portable engine instead.
 */
export class NativeEcho implements ServerEngine {
  readonly name = 'native';
  /** TLS is answered in C: the listener hands over a plain socket. */
  readonly terminatesTls: boolean;
  /** The binding and this server's engine in it, as every call takes them. */
  readonly #ref: EngineRef;
  readonly #totals = new Float64Array(4);
  readonly #transport: StreamTransport;
  readonly #requestTimeoutMs: number;
  /**
   * Open connections by their id's slot index, until their close callback: the engine hands out
   * the lowest free slots, so this stays a dense array, a word per connection (a Map costs several).
   */
  readonly #connections: Array<NativeConnection | undefined> = [];
  readonly #slots: number;
  /** Listening sockets accepted on in C, by listener id. */
  readonly #acceptors = new Map<number, Acceptor>();
  /**
   * Strings many connections show alike (the last client address, TLS versions and ciphers),
   * kept once: each would otherwise hold its own copy of the same text.
   */
  #lastAddress = '';
  readonly #shared = new Map<string, string>();

  /** Undefined where the addon lacks the echo engine. Throws a UsageError-worthy Error for a context OpenSSL refuses. */
  static create(settings: NativeEchoSettings): NativeEcho | undefined {
    return binding === undefined ? undefined : new NativeEcho(binding, settings);
  }

  private constructor(echoBinding: EchoBinding, settings: NativeEchoSettings) {
    this.#slots = platformConstants()!.SLOT_INDEX_LIMIT;
    this.#transport = settings.transport;
    this.#requestTimeoutMs = settings.websocket?.requestTimeoutMs ?? 0;
    const engine = echoBinding.createEngine(
      settings.upper,
      settings.maxBuffered,
      (id, status, received, sent, closeCode, wsError) => {
        const connection = this.#connection(id);
        if (connection === undefined) return;
        this.#connections[id % this.#slots] = undefined;
        connection.nativeClosed(status, received, sent, closeCode ?? 0, wsError ?? 0);
      },
      (listenerId, idOrStatus, address, port, tls) => this.#accepted(listenerId, idOrStatus, address, port, tls),
      (id, bytes) => {
        const connection = this.#connection(id);
        if (connection instanceof NativeWebSocketConnection) connection.httpData(bytes);
      },
      (listenerId, address, port, reason) =>
        this.#acceptors.get(listenerId)?.handler.handshakeFailed?.(handshakeError(reason), address, port),
    );
    this.#ref = { binding: echoBinding, engine };
    const { tls, websocket } = settings;
    if (tls !== undefined) {
      echoBinding.setTls(
        engine,
        tls.cert,
        tls.key,
        tls.ca ?? null,
        tls.alpn === undefined || tls.alpn.length === 0 ? null : alpnWireFormat(tls.alpn),
        tls.handshakeTimeoutMs,
      );
    }
    if (websocket !== undefined) echoBinding.setWebSocket(engine, websocket.maxMessage);
    this.terminatesTls = tls !== undefined;
  }

  #connection(id: number): NativeConnection | undefined {
    const connection = this.#connections[id % this.#slots];
    return connection?.nativeId === id ? connection : undefined;
  }

  /** `address`, as the string the last client was shown by where it is the same. */
  #shown(address: string): string {
    if (address === this.#lastAddress) return this.#lastAddress;
    this.#lastAddress = address;
    return address;
  }

  #sharedText(text: string | null | undefined): string | null {
    if (text === null || text === undefined) return null;
    const known = this.#shared.get(text);
    if (known !== undefined) return known;
    if (this.#shared.size < 64) this.#shared.set(text, text);
    return text;
  }

  #track(connection: NativeConnection): NativeConnection {
    this.#connections[connection.nativeId % this.#slots] = connection;
    return connection;
  }

  acceptOn(server: net.Server, context: ConnectionContext, handler: AcceptHandler): (() => void) | undefined {
    const fd = descriptorOf(server);
    if (fd === undefined) return undefined;
    const tls = context.transport === 'tls' || context.transport === 'wss';
    const websocket = context.transport === 'ws' || context.transport === 'wss';
    let listenerId: number;
    try {
      listenerId = this.#ref.binding.acceptOn(this.#ref.engine, fd, tls, websocket);
    } catch {
      return undefined;
    }
    this.#acceptors.set(listenerId, { context, handler, websocket });
    return () => {
      if (!this.#acceptors.delete(listenerId)) return;
      this.#ref.binding.stopAccepting(this.#ref.engine, listenerId);
    };
  }

  #accepted(
    listenerId: number,
    idOrStatus: number,
    address: string | undefined,
    port: number | undefined,
    tls: Array<string | null> | undefined,
  ): void {
    const acceptor = this.#acceptors.get(listenerId);
    if (address === undefined || port === undefined) {
      const code = errorName(idOrStatus);
      acceptor?.handler.failed(Object.assign(new Error(`accept failed: ${code}`), { code }));
      return;
    }
    const nativeId = idOrStatus;
    const turnAway = () => this.#ref.binding.destroy(this.#ref.engine, nativeId);
    if (acceptor === undefined) {
      turnAway();
      return;
    }
    acceptor.handler.accepted(
      address,
      port,
      (id, shownAddress) => {
        const shown = this.#shown(shownAddress);
        const connection = acceptor.websocket
          ? new NativeWebSocketConnection(
              id,
              shown,
              port,
              acceptor.context,
              this.#ref,
              nativeId,
              this.#requestTimeoutMs,
            )
          : new NativeConnection(id, shown, port, acceptor.context, this.#ref, nativeId);
        if (tls !== undefined) {
          connection.tls = {
            protocol: this.#sharedText(tls[0]),
            cipher: this.#sharedText(tls[1]),
            sni: tls[2] ?? null,
            alpn: this.#sharedText(tls[3]),
          };
          connection.clientCertificateSubject = tls.length > 4 ? formatSubject(pairs(tls.slice(4))) : undefined;
        }
        return this.#track(connection);
      },
      turnAway,
    );
  }

  adopt(
    id: number,
    socket: net.Socket,
    remoteAddress: string,
    remotePort: number,
    context: ConnectionContext,
  ): Connection {
    const fd = descriptorOf(socket);
    // Adopted sockets (a cluster worker's) are plain TCP: the choice of engine sends the rest portable.
    if (fd !== undefined && !this.terminatesTls && context.transport === 'tcp') {
      try {
        const nativeId = this.#ref.binding.adopt(this.#ref.engine, fd);
        const connection = this.#track(
          new NativeConnection(id, this.#shown(remoteAddress), remotePort, context, this.#ref, nativeId),
        );
        // The engine holds its own duplicate: closing ours sends nothing to the peer.
        socket.destroy();
        return connection;
      } catch {
        // The socket is untouched; it is served the portable way.
      }
    }
    return portableEngine.adopt(id, socket, remoteAddress, remotePort, context);
  }

  addTotalsTo(stats: ServerStats): ServerStats {
    this.#ref.binding.totals(this.#ref.engine, this.#totals);
    stats.bytesReceived += this.#totals[0]!;
    stats.bytesSent += this.#totals[1]!;
    stats.backpressurePauses += this.#totals[2]!;
    stats.messages[this.#transport] += this.#totals[3]!;
    return stats;
  }
}

/**
 * A failed handshake's reason as Node words it: OpenSSL's `error:0A0000EB:SSL routines::no
 * application protocol` gets `reason` (what the logs show) and Node's code for it.
 */
function handshakeError(message: string): Error {
  const openssl = /^error:[0-9A-F]+:([^:]*):[^:]*:(.+)$/.exec(message);
  if (openssl === null) {
    const code = message === 'TLS handshake timeout' ? 'ERR_TLS_HANDSHAKE_TIMEOUT' : 'ECONNRESET';
    return Object.assign(new Error(message), { code });
  }
  const reason = openssl[2]!;
  const library = openssl[1] === 'SSL routines' ? 'SSL' : 'OSSL';
  return Object.assign(new Error(message), {
    reason,
    code: `ERR_${library}_${reason.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}`,
  });
}

/** ['CN', 'a', 'O', 'b'] as [['CN', 'a'], ['O', 'b']]. */
function pairs(flat: Array<string | null>): Array<[string, string]> {
  const result: Array<[string, string]> = [];
  for (let i = 0; i + 1 < flat.length; i += 2) result.push([flat[i] ?? '', flat[i + 1] ?? '']);
  return result;
}

/** ALPN's wire format: each protocol name after its length byte. */
function alpnWireFormat(protocols: readonly string[]): Buffer {
  return Buffer.concat(
    protocols.map((name) => {
      const bytes = Buffer.from(name);
      return Buffer.concat([Buffer.from([bytes.length]), bytes]);
    }),
  );
}
