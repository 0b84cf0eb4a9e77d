// Value parsers for flags: each returns the typed value or throws commander's InvalidArgumentError.

import { isIP, isIPv4 } from 'node:net';
import { availableParallelism } from 'node:os';
import { InvalidArgumentError } from 'commander';
import { parseAllowList } from '../server/limits.js';
import { isTransformName, isTransformPath, TRANSFORM_NAMES } from '../protocol/transforms.js';

export function parsePort(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`"${value}" is not a port number (0-65535).`);
  const port = Number(value);
  if (port > 65535) throw new InvalidArgumentError(`${value} is out of range: a port is 0-65535.`);
  return port;
}

/** `9000` or `9000,9001,9002`; a port given twice (other than 0, a fresh pick each time) is an error. */
export function parsePortList(value: string): number[] {
  const ports = value.split(',').map((part) => parsePort(part.trim()));
  const twice = ports.find((port, index) => port !== 0 && ports.indexOf(port) !== index);
  if (twice !== undefined) throw new InvalidArgumentError(`port ${twice} is given twice.`);
  return ports;
}

export function parseNonNegativeInteger(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`"${value}" is not a whole number.`);
  return Number(value);
}

export function parsePositiveInteger(value: string): number {
  const n = parseNonNegativeInteger(value);
  if (n === 0) throw new InvalidArgumentError('must be at least 1.');
  return n;
}

/** Seconds, fractions allowed (`0.5`), as Python's timeouts. */
export function parseSeconds(value: string): number {
  if (!/^\d+(\.\d+)?$|^\.\d+$/.test(value)) throw new InvalidArgumentError(`"${value}" is not a number of seconds.`);
  return Number(value);
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/** A byte count: `65536`, `64k`, `64KiB`, `1m` (units are powers of 1024). */
export function parseSize(value: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
  const unit = match ? SIZE_UNITS[match[2]!.toLowerCase()] : undefined;
  if (!match || unit === undefined)
    throw new InvalidArgumentError(`"${value}" is not a size (examples: 65536, 64k, 1MiB).`);
  const bytes = Math.round(Number(match[1]) * unit);
  if (!Number.isSafeInteger(bytes)) throw new InvalidArgumentError(`"${value}" is too large.`);
  return bytes;
}

/** A size of at least one byte: a limit of 0 (`--max-line 0`) would refuse everything. */
export function parsePositiveSize(value: string): number {
  const bytes = parseSize(value);
  if (bytes < 1) throw new InvalidArgumentError(`"${value}" must be at least 1 byte.`);
  return bytes;
}

/** `10.0.0.0/8,::1/128`: checked here so a bad CIDR is a usage error before anything starts. */
export function parseCidrList(value: string): string[] {
  const cidrs = value
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean);
  try {
    parseAllowList(cidrs);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return cidrs;
}

/** A built-in transform's name, or a path to a transform module. */
export function parseTransform(value: string): string {
  if (isTransformName(value) || isTransformPath(value)) return value;
  throw new InvalidArgumentError(
    `"${value}" is neither ${TRANSFORM_NAMES.join(' nor ')} nor a module path (./my-transform.js).`,
  );
}

/** `4`, or `auto`: one per CPU (`--workers`, for serve and bench alike). */
export function parseWorkers(value: string): number {
  if (value === 'auto') return availableParallelism();
  return parsePositiveInteger(value);
}

/** The most addresses one `--source-ip` range may name. */
const MAX_ADDRESS_RANGE = 65_536;

/**
 * `127.0.0.2-127.0.0.9,10.0.0.5,::1`: addresses, and IPv4 ranges from one address to another,
 * in order. A range runs over the last octets as one number (127.0.0.250-127.0.1.3 is ten).
 */
export function parseAddressList(value: string): string[] {
  const addresses: string[] = [];
  for (const part of value
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean)) {
    const range = /^([^-]+)-([^-]+)$/.exec(part);
    if (range === null) {
      if (isIP(part) === 0) throw new InvalidArgumentError(`"${part}" is not an IP address.`);
      addresses.push(part);
      continue;
    }
    const [from, to] = [range[1]!, range[2]!];
    if (!isIPv4(from) || !isIPv4(to))
      throw new InvalidArgumentError(`"${part}": a range runs from one IPv4 address to another (127.0.0.2-127.0.0.9).`);
    const [low, high] = [ipv4Number(from), ipv4Number(to)];
    if (high < low) throw new InvalidArgumentError(`"${part}": the range runs backwards.`);
    if (high - low + 1 > MAX_ADDRESS_RANGE)
      throw new InvalidArgumentError(`"${part}": more than ${MAX_ADDRESS_RANGE} addresses.`);
    for (let n = low; n <= high; n++) addresses.push([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.'));
  }
  if (addresses.length === 0) throw new InvalidArgumentError('no address given.');
  return addresses;
}

function ipv4Number(address: string): number {
  return address.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
}
