// Formatting of socket addresses for logs, URLs and the listening line.

import { lookup } from 'node:dns/promises';
import { isIP, isIPv6 } from 'node:net';

/** `127.0.0.1:1234` or `[::1]:1234`: the form a user can paste back into a client. */
export function formatHostPort(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

/** `host` as an IP address: itself if it is one, else the first the resolver gives, as net.Server#listen binds. */
export async function ipOf(host: string): Promise<string> {
  return isIP(host) ? host : (await lookup(host)).address;
}

/** A listener's address as a URL-like string, e.g. `tcp://127.0.0.1:1234`. */
export function formatEndpoint(transport: string, host: string, port: number): string {
  return `${transport}://${formatHostPort(host, port)}`;
}
