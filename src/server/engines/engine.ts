// The seam between the server and whatever moves a connection's bytes: one interface, two engines.
//
// The server decides who may connect and keeps the books; an engine takes an accepted socket and
// returns a Connection (see ../connection.ts), whose abstract members are the per-connection half
// of the seam: finish, destroy, pending bytes, counters, and one `closed` call at the end.

import type net from 'node:net';
import type { EngineName } from '../../native/engine.js';
import type { ProxyHeader } from '../../protocol/proxy-protocol.js';
import type { Connection, ConnectionContext } from '../connection.js';
import type { ServerStats } from '../stats.js';

export interface ServerEngine {
  readonly name: EngineName;
  /**
   * Takes over an accepted socket (paused where the listener could pause it) and returns its
   * Connection. From here on the engine owns the socket.
   */
  adopt(
    id: number,
    socket: net.Socket,
    remoteAddress: string,
    remotePort: number,
    context: ConnectionContext,
  ): Connection;
  /**
   * False where something other than the Connection must parse the stream first (HTTP, for
   * WebSocket): the listener then reads a PROXY header itself, before handing the socket over.
   */
  readonly readsProxyHeader?: boolean;
  /**
   * True where the engine answers TLS itself (in C): the listener then listens in plain TCP and
   * hands the listening socket to `acceptOn`, which must take it.
   */
  readonly terminatesTls?: boolean;
  /**
   * Where the engine can accept by itself: takes over accepting on `server`, listening, and
   * reports each client to `handler`; returns what stops it. Undefined where it cannot (the
   * listener then accepts in Node and hands each socket to `adopt`); the caller closes `server`
   * once it is taken.
   */
  acceptOn?(server: net.Server, context: ConnectionContext, handler: AcceptHandler): (() => void) | undefined;
  /** Adds what the engine counts itself (bytes moved in C, say) to `stats`, a copy being reported. */
  addTotalsTo(stats: ServerStats): ServerStats;
}

/** What a listener reports to the server. */
export interface AcceptHandler {
  /**
   * A connection arrived from `remoteAddress` (undefined if it already left; `unix:PATH` on a
   * Unix socket). The server either calls `adopt` (with the address as it should be shown) to
   * wrap it in a Connection, or `reject` to close it at once.
   */
  accepted(
    remoteAddress: string | undefined,
    remotePort: number | undefined,
    adopt: (id: number, remoteAddress: string) => Connection,
    reject: () => void,
    /** A PROXY header the listener read itself, in front of TLS. */
    header?: ProxyHeader,
  ): void;
  failed(err: Error): void;
  /** A PROXY header in front of TLS was missing, malformed or late. */
  proxyHeaderFailed?(reason: string, remoteAddress: string | undefined, remotePort: number | undefined): void;
  /**
   * A TLS client failed its handshake (bad certificate, wrong protocol, gone midway). Behind a
   * PROXY header, the address is the proxy's and `header` names the client.
   */
  handshakeFailed?(
    err: Error,
    remoteAddress: string | undefined,
    remotePort: number | undefined,
    header?: ProxyHeader,
  ): void;
}
