// Formatting of socket addresses for logs, URLs and the listening line.

import { isIPv6 } from 'node:net';

/** `127.0.0.1:1234` or `[::1]:1234`: the form a user can paste back into a client. */
export function formatHostPort(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

/** A listener's address as a URL-like string, e.g. `tcp://127.0.0.1:1234`. */
export function formatEndpoint(transport: string, host: string, port: number): string {
  return `${transport}://${formatHostPort(host, port)}`;
}
