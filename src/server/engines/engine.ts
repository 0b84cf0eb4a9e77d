// The seam between the server and whatever moves a connection's bytes: one interface, two engines.
//
// The server decides who may connect and keeps the books; an engine takes an accepted socket and
// returns a Connection (see ../connection.ts), whose abstract members are the per-connection half
// of the seam: finish, destroy, pending bytes, counters, and one `closed` call at the end.

import type net from 'node:net';
import type { EngineName } from '../../native/engine.js';
import type { Connection, ConnectionContext } from '../connection.js';
import type { ServerStats } from '../stats.js';

export interface ServerEngine {
  readonly name: EngineName;
  /**
   * Takes over an accepted socket (paused where the listener could pause it) and returns its
   * Connection. From here on the engine owns the socket.
   */
  adopt(id: number, socket: net.Socket, remoteAddress: string, remotePort: number, context: ConnectionContext): Connection;
  /**
   * False where something other than the Connection must parse the stream first (HTTP, for
   * WebSocket): the listener then reads a PROXY header itself, before handing the socket over.
   */
  readonly readsProxyHeader?: boolean;
  /** Adds what the engine counts itself (bytes moved in C, say) to `stats`, a copy being reported. */
  addTotalsTo(stats: ServerStats): ServerStats;
}
