// The OS descriptor under a Node socket (net or dgram), which the native engines take a duplicate of.
//
// Node documents no accessor for it; `_handle.fd` is what net itself reads (and what
// `net.Socket({ fd })` round-trips). Where it is missing, callers keep the portable engine.

import type dgram from 'node:dgram';
import type net from 'node:net';

/** The descriptor, or undefined where this Node or platform shows none. */
export function descriptorOf(socket: net.Socket | net.Server): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * The descriptor under a bound dgram.Socket, or undefined. `dgram.Socket#_handle` is deprecated
 * (DEP0112, and warns), so the handle is taken from the socket's internal state, where Node keeps
 * it; a Node without that layout serves UDP the portable way.
 */
export function datagramDescriptorOf(socket: dgram.Socket): number | undefined {
  const state = Object.getOwnPropertySymbols(socket).find((symbol) => symbol.description === 'state symbol');
  const handle =
    state === undefined
      ? undefined
      : (socket as unknown as Record<symbol, { handle?: { fd?: unknown } | null } | undefined>)[state]?.handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}
