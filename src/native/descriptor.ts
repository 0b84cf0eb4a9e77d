// The OS descriptor under a net.Socket or net.Server, which the native engines take a duplicate of.
//
// Node documents no accessor for it; `_handle.fd` is what net itself reads (and what
// `net.Socket({ fd })` round-trips). Where it is missing, callers keep the portable engine.

import type net from 'node:net';

/** The descriptor, or undefined where this Node or platform shows none. */
export function descriptorOf(socket: net.Socket | net.Server): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}
