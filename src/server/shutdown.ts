// Graceful shutdown: drain live connections without cutting bytes that are still flowing.

import type { Connection } from './connection.js';

export interface DrainOptions {
  /** After this long, whatever is still open is closed at once. */
  timeoutMs: number;
  /** How often connections are checked for quiet; also how long one must be quiet to be closed. */
  sweepMs?: number;
}

export interface DrainResult {
  /** Connections that were still open at the deadline and had to be closed abruptly. */
  forced: number;
}

/**
 * Closes every connection once it has gone quiet: nothing received since the last sweep and
 * nothing left to send. A client still streaming (say, a 1 MiB message in flight when SIGTERM
 * came) keeps being echoed until it pauses, so no byte it already sent is cut off. Quiet
 * connections get a clean FIN after their queued bytes; the rest are destroyed at the deadline.
 */
export function drainConnections(connections: ReadonlySet<Connection>, options: DrainOptions): Promise<DrainResult> {
  const sweepMs = options.sweepMs ?? 100;
  return new Promise((resolve) => {
    if (connections.size === 0) {
      resolve({ forced: 0 });
      return;
    }
    for (const connection of connections) connection.bytesAtLastSweep = connection.bytesReceived;

    const sweep = setInterval(() => {
      if (connections.size === 0) return done(0);
      for (const connection of connections) {
        const quiet = connection.bytesReceived === connection.bytesAtLastSweep && connection.pendingBytes === 0;
        connection.bytesAtLastSweep = connection.bytesReceived;
        if (quiet) connection.finish();
      }
    }, sweepMs);

    const deadline = setTimeout(() => {
      const forced = connections.size;
      for (const connection of [...connections]) connection.abort('closed at shutdown deadline');
      done(forced);
    }, options.timeoutMs);

    function done(forced: number): void {
      clearInterval(sweep);
      clearTimeout(deadline);
      resolve({ forced });
    }
  });
}
