// Admission control: connection limits (total and per source address) and the address allow-list.

import { BlockList, isIP, isIPv4, isIPv6 } from 'node:net';
import { UsageError } from '../core/errors.js';
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

  /** Whether one more connection fits under the total limit. */
  hasRoom(openConnections: number): boolean {
    return openConnections < this.#maxConnections;
  }

  /** Whether `address` passes the allow-list (a non-IP peer, on a Unix socket, always does). */
  allows(address: string): boolean {
    return this.#allow === undefined || !isIP(address) || this.#allow.check(address, isIPv4(address) ? 'ipv4' : 'ipv6');
  }

  /**
   * Returns why a client from `address` must be turned away, or undefined once admitted. An
   * admitted client for which `countsSource` is true is counted: call `release` when it leaves.
   */
  admitSource(address: string): RejectReason | undefined {
    if (!this.allows(address)) return 'not_allowed';
    if (!this.countsSource(address)) return undefined;
    const fromHere = this.#perIp.get(address) ?? 0;
    if (fromHere >= this.#maxPerIp) return 'max_connections_per_ip';
    this.#perIp.set(address, fromHere + 1);
    return undefined;
  }

  /** Whether connections from `address` are counted per source (IP clients, with a limit set). */
  countsSource(address: string): boolean {
    return this.#maxPerIp !== Number.POSITIVE_INFINITY && isIP(address) !== 0;
  }

  /** Forgets one admitted connection from `address`. */
  release(address: string): void {
    const left = (this.#perIp.get(address) ?? 1) - 1;
    if (left > 0) this.#perIp.set(address, left);
    else this.#perIp.delete(address);
  }
}
