// Ports that several processes share with SO_REUSEPORT, each accepting or reading on a socket of its own (native/shared_port.c).
//
// `serve --workers` uses them where the addon is built: the primary claims each TCP port, and
// every worker binds its own sockets to it, TCP and UDP, so that the kernel spreads connections
// and datagrams over the workers with no process handing them over.

import { closeSync } from 'node:fs';
import net from 'node:net';
import { addonBinding } from './addon.js';

interface SharedPortBinding {
  bindSharedPort(ip: string, port: number, claim: boolean, datagram: boolean): [fd: number, port: number];
}

function binding(): SharedPortBinding | undefined {
  return process.platform === 'linux' ? addonBinding<SharedPortBinding>(['bindSharedPort']) : undefined;
}

/** Whether ports can be shared here (Linux, with the addon built). */
export function sharedPortsAvailable(): boolean {
  return binding() !== undefined;
}

/** A port claimed for workers to share; holding it keeps the number theirs while workers restart. */
export interface ClaimedPort {
  readonly port: number;
  release(): void;
}

/**
 * Claims `port` on `ip` (a free one where `port` is 0) for processes of this user to share. It
 * fails with EADDRINUSE where anything listens on the port, sharing or not. The claiming socket
 * never listens, so it takes no connections.
 */
export function claimSharedPort(ip: string, port: number): ClaimedPort {
  const [fd, bound] = required().bindSharedPort(ip, port, true, false);
  let open = true;
  return {
    port: bound,
    release() {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

/**
 * A socket of this process's own bound to a claimed port, for `net.Server#listen(handle)`: the
 * server listens on it and closes it as on any socket it bound itself.
 */
export function joinSharedPort(ip: string, port: number): net.Socket {
  const [fd] = required().bindSharedPort(ip, port, false, false);
  return new net.Socket({ fd, readable: false, writable: false });
}

/**
 * A UDP socket of this process's own bound to `port`, shared with the other processes bound
 * there, for `dgram.Socket#bind({ fd, exclusive: true })`. Nothing holds the UDP port between
 * processes: a port that something else binds without sharing fails here with EADDRINUSE.
 */
export function joinSharedDatagramPort(ip: string, port: number): number {
  return required().bindSharedPort(ip, port, false, true)[0];
}

function required(): SharedPortBinding {
  const found = binding();
  if (found === undefined) throw new Error('shared ports need the native addon on Linux');
  return found;
}
