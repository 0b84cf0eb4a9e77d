// The address the native engine connects every connection to: a host name is looked up once,
// and where it has several addresses, the first that accepts a connection is taken, as wrk does.

import { lookup } from 'node:dns/promises';
import net from 'node:net';

/**
 * The address of `host` to connect to on `port`, or undefined where the name cannot be looked
 * up. With one address, that one; with several (`localhost` as ::1 and 127.0.0.1, say), the
 * first that accepts a TCP connection within `timeoutMs`, which is closed at once; with none
 * accepting, the first, so that the run's own connections report why.
 */
export async function connectAddress(host: string, port: number, timeoutMs: number): Promise<string | undefined> {
  const addresses = await lookup(host, { all: true }).catch(() => []);
  if (addresses.length <= 1) return addresses[0]?.address;
  return (
    (await firstAccepting(
      addresses.map((entry) => entry.address),
      port,
      timeoutMs,
    )) ?? addresses[0]!.address
  );
}

/** The first of `addresses` at which something accepts a connection on `port`, tried in order. */
export async function firstAccepting(
  addresses: readonly string[],
  port: number,
  timeoutMs: number,
): Promise<string | undefined> {
  for (const address of addresses) if (await accepts(address, port, timeoutMs)) return address;
  return undefined;
}

function accepts(address: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: address, port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
