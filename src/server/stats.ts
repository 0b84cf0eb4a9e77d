// Counters kept by the server: plain numbers bumped on the hot path, read by metrics and tests.

export type RejectReason = 'max_connections' | 'max_connections_per_ip' | 'not_allowed';
export type ErrorKind = 'reset' | 'socket' | 'transform' | 'accept';

export interface ServerStats {
  connectionsActive: number;
  connectionsTotal: number;
  bytesReceived: number;
  bytesSent: number;
  backpressurePauses: number;
  idleTimeouts: number;
  rejected: Record<RejectReason, number>;
  errors: Record<ErrorKind, number>;
}

export function emptyStats(): ServerStats {
  return {
    connectionsActive: 0,
    connectionsTotal: 0,
    bytesReceived: 0,
    bytesSent: 0,
    backpressurePauses: 0,
    idleTimeouts: 0,
    rejected: { max_connections: 0, max_connections_per_ip: 0, not_allowed: 0 },
    errors: { reset: 0, socket: 0, transform: 0, accept: 0 },
  };
}

export function copyStats(stats: ServerStats): ServerStats {
  return { ...stats, rejected: { ...stats.rejected }, errors: { ...stats.errors } };
}
