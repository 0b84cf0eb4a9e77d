// Counters kept by the server: plain numbers bumped on the hot path, read by metrics and tests.

import type { FaultKind } from './faults.js';

export type RejectReason = 'max_connections' | 'max_connections_per_ip' | 'not_allowed' | 'proxy_not_trusted';
export type ErrorKind =
  | 'reset'
  | 'socket'
  | 'transform'
  | 'accept'
  | 'proxy_header'
  | 'tls_handshake'
  | 'line_too_long'
  | 'udp'
  | 'websocket';
/** Transports of connections; `udp` has datagrams rather than connections. */
export type StreamTransport = 'tcp' | 'tls' | 'unix' | 'ws' | 'wss';
export type Transport = StreamTransport | 'udp';

export interface ServerStats {
  connectionsActive: number;
  connectionsTotal: number;
  bytesReceived: number;
  bytesSent: number;
  /** Whole messages echoed: UDP datagrams, WebSocket messages, and lines in line mode (raw TCP has no messages). */
  messages: Record<Transport, number>;
  backpressurePauses: number;
  idleTimeouts: number;
  rejected: Record<RejectReason, number>;
  errors: Record<ErrorKind, number>;
  /** Faults injected on purpose (--fault), by kind. */
  faults: Record<FaultKind, number>;
  /** WebSocket connections closed, by close code (`1006`: closed without a close frame). */
  wsCloses: Record<string, number>;
}

export function emptyStats(): ServerStats {
  return {
    connectionsActive: 0,
    connectionsTotal: 0,
    bytesReceived: 0,
    bytesSent: 0,
    messages: { tcp: 0, tls: 0, unix: 0, ws: 0, wss: 0, udp: 0 },
    backpressurePauses: 0,
    idleTimeouts: 0,
    rejected: { max_connections: 0, max_connections_per_ip: 0, not_allowed: 0, proxy_not_trusted: 0 },
    errors: {
      reset: 0,
      socket: 0,
      transform: 0,
      accept: 0,
      proxy_header: 0,
      tls_handshake: 0,
      line_too_long: 0,
      udp: 0,
      websocket: 0,
    },
    faults: { reset: 0, close: 0, stall: 0, truncate: 0, drop: 0, delay: 0 },
    wsCloses: {},
  };
}

export function copyStats(stats: ServerStats): ServerStats {
  return {
    ...stats,
    messages: { ...stats.messages },
    rejected: { ...stats.rejected },
    errors: { ...stats.errors },
    faults: { ...stats.faults },
    wsCloses: { ...stats.wsCloses },
  };
}

/** Adds `more` into `total`, field by field (for the sum over cluster workers). */
export function addStats(total: ServerStats, more: ServerStats): ServerStats {
  for (const key of [
    'connectionsActive',
    'connectionsTotal',
    'bytesReceived',
    'bytesSent',
    'backpressurePauses',
    'idleTimeouts',
  ] as const)
    total[key] += more[key];
  for (const group of ['messages', 'rejected', 'errors', 'faults', 'wsCloses'] as const) {
    const into = total[group] as Record<string, number>;
    for (const [name, count] of Object.entries(more[group])) into[name] = (into[name] ?? 0) + count;
  }
  return total;
}
