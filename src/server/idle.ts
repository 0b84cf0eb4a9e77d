// Idle timeout without a timer per connection: one coarse sweep counts quiet periods.

import type { Connection } from './connection.js';

/** Sweeps per timeout: a connection is closed after 4-5 quiet sweeps, i.e. within 25% late. */
const SWEEPS_PER_TIMEOUT = 4;

/**
 * Every timeout/4 the sweep compares each connection's traffic counters with the last sweep;
 * a connection quiet for four sweeps in a row (no byte in either direction) is closed. The
 * per-byte path pays nothing: it only bumps counters it already keeps.
 */
export function startIdleSweeper(
  connections: ReadonlySet<Connection>,
  timeoutMs: number,
  onIdle: (connection: Connection) => void,
): () => void {
  const periodMs = Math.max(10, timeoutMs / SWEEPS_PER_TIMEOUT);
  const timer = setInterval(() => {
    for (const connection of connections) {
      const traffic = connection.trafficCount;
      // Replies waiting out --delay are the server's silence, not the client's.
      if (traffic !== connection.trafficAtLastIdleSweep || connection.delayedBytes > 0) {
        connection.trafficAtLastIdleSweep = traffic;
        connection.quietSweeps = 0;
      } else if (++connection.quietSweeps >= SWEEPS_PER_TIMEOUT) {
        onIdle(connection);
      }
    }
  }, periodMs);
  timer.unref();
  return () => clearInterval(timer);
}
