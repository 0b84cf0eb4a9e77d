// Admission control: connection limits (total and per source address) and the address allow-list.

import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { UsageError } from '../errors.js';
import type { RejectReason } from './stats.js';

export const DEFAULT_MAX_CONNECTIONS = 10_000;

export interface AdmissionOptions {
  /** Connections open at once; one more is closed at once. Default 10,000. */
  maxConnections?: number;
  /** Connections open at once from one source address. Default: unlimited. */
  maxConnectionsPerIp?: number;
  /** CIDRs (IPv4 or IPv6) allowed to connect. Default: everyone. */
  allow?: readonly string[];
}

/** Strips the IPv4-mapped prefix a dual-stack listener reports (`::ffff:10.0.0.1`). */
export function canonicalAddress(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped ? mapped[1]! : address;
}

/** Parses `10.0.0.0/8`, `::1/128` or a bare address into a BlockList; throws UsageError on anything else. */
export function parseAllowList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const raw of cidrs) {
    const cidr = raw.trim();
    const [address = '', prefixText, extra] = cidr.split('/');
    const family = isIPv4(address) ? 'ipv4' : isIPv6(address) ? 'ipv6' : undefined;
    const maxPrefix = family === 'ipv4' ? 32 : 128;
    const prefix = prefixText === undefined ? maxPrefix : /^\d+$/.test(prefixText) ? Number(prefixText) : Number.NaN;
    if (family === undefined || extra !== undefined || !(prefix >= 0 && prefix <= maxPrefix)) {
      throw new UsageError(`invalid CIDR "${cidr}" (examples: 10.0.0.0/8, 127.0.0.1, ::1/128)`);
    }
    list.addSubnet(address, prefix, family);
  }
  return list;
}

/** Decides whether a new connection may stay, and keeps the per-address counts. */
export class Admission {
  readonly #maxConnections: number;
  readonly #maxPerIp: number;
  readonly #allow: BlockList | undefined;
  readonly #perIp = new Map<string, number>();

  constructor(options: AdmissionOptions = {}) {
    this.#maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    this.#maxPerIp = options.maxConnectionsPerIp ?? Number.POSITIVE_INFINITY;
    this.#allow = options.allow && options.allow.length > 0 ? parseAllowList(options.allow) : undefined;
  }

  /** Returns why `address` must be turned away, or undefined after counting it in. */
  admit(address: string, openConnections: number): RejectReason | undefined {
    const canonical = canonicalAddress(address);
    if (this.#allow && !this.#allow.check(canonical, isIPv4(canonical) ? 'ipv4' : 'ipv6')) return 'not_allowed';
    if (openConnections >= this.#maxConnections) return 'max_connections';
    const fromHere = this.#perIp.get(canonical) ?? 0;
    if (fromHere >= this.#maxPerIp) return 'max_connections_per_ip';
    if (this.#maxPerIp !== Number.POSITIVE_INFINITY) this.#perIp.set(canonical, fromHere + 1);
    return undefined;
  }

  /** Forgets one admitted connection from `address`. */
  release(address: string): void {
    if (this.#maxPerIp === Number.POSITIVE_INFINITY) return;
    const canonical = canonicalAddress(address);
    const left = (this.#perIp.get(canonical) ?? 1) - 1;
    if (left > 0) this.#perIp.set(canonical, left);
    else this.#perIp.delete(canonical);
  }
}
