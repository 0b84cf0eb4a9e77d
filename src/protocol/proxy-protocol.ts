// HAProxy's PROXY protocol, versions 1 (text) and 2 (binary): parse a header, or write one.
// Specification: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt

import { isIPv4, isIPv6 } from 'node:net';

/** The 12 bytes that open every version 2 header; chosen so that no text protocol starts so. */
export const PROXY_V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** A version 1 header is at most 107 bytes, CRLF included (spec section 2.1). */
export const PROXY_V1_MAX_BYTES = 107;
const V2_FIXED_BYTES = 16;

export interface ProxyEndpoint {
  address: string;
  port: number;
}

export interface ProxyTlv {
  type: number;
  value: Buffer;
}

export interface ProxyHeader {
  version: 1 | 2;
  /**
   * `proxy`: the connection was relayed for `source`. `local`: the proxy opened it itself (a
   * health check, v2 LOCAL) or could not tell the source (v1 UNKNOWN, an unspecified or Unix
   * family): the receiver uses the real peer address.
   */
  command: 'proxy' | 'local';
  /** Where the client connected from and to, when the header carries IP addresses. */
  source?: ProxyEndpoint;
  destination?: ProxyEndpoint;
  /** v2 type-length-value extensions, in order; the server ignores the ones it does not know. */
  tlvs: ProxyTlv[];
  /** Bytes the header occupied; what follows is the client's own data. */
  length: number;
}

export type ProxyParseResult =
  { status: 'complete'; header: ProxyHeader } | { status: 'incomplete' } | { status: 'invalid'; reason: string };

const INCOMPLETE: ProxyParseResult = { status: 'incomplete' };

function invalid(reason: string): ProxyParseResult {
  return { status: 'invalid', reason };
}

/**
 * Reads a PROXY header from the start of `input`. `incomplete` means the bytes so far are a valid
 * beginning and more are needed; `invalid` is final (bad syntax, too long, or no header at all).
 * Never throws and never reads past `input`.
 */
export function parseProxyHeader(input: Uint8Array): ProxyParseResult {
  if (input.length === 0) return INCOMPLETE;
  if (input[0] === PROXY_V2_SIGNATURE[0]) return parseV2(input);
  if (input[0] === V1_PREFIX[0]) return parseV1(input);
  return invalid('no PROXY header (the connection must start with one)');
}

function startsWithPrefix(input: Uint8Array, prefix: Uint8Array): boolean | undefined {
  const n = Math.min(input.length, prefix.length);
  for (let i = 0; i < n; i++) if (input[i] !== prefix[i]) return false;
  return n === prefix.length ? true : undefined;
}

function parseV1(input: Uint8Array): ProxyParseResult {
  const prefix = startsWithPrefix(input, V1_PREFIX);
  if (prefix === false) return invalid('no PROXY header (the connection must start with one)');
  let end = -1;
  const limit = Math.min(input.length, PROXY_V1_MAX_BYTES);
  for (let i = 0; i < limit; i++) {
    if (input[i] === 0x0a) {
      end = i;
      break;
    }
  }
  if (end < 0)
    return input.length >= PROXY_V1_MAX_BYTES
      ? invalid(`v1 header longer than ${PROXY_V1_MAX_BYTES} bytes`)
      : INCOMPLETE;
  if (end === 0 || input[end - 1] !== 0x0d) return invalid('v1 header must end with CRLF');
  const line = Buffer.from(input.buffer, input.byteOffset, end - 1).toString('latin1');
  const parts = line.split(' ');
  const length = end + 1;
  const family = parts[1];
  if (family === 'UNKNOWN') return { status: 'complete', header: { version: 1, command: 'local', tlvs: [], length } };
  if (parts.length !== 6) return invalid('v1 header must be "PROXY TCP4|TCP6 src dst srcport dstport"');
  const [, , sourceAddress = '', destinationAddress = '', sourcePort = '', destinationPort = ''] = parts;
  const isFamily = family === 'TCP4' ? isIPv4 : family === 'TCP6' ? isIPv6 : undefined;
  if (isFamily === undefined) return invalid(`v1 header has unknown protocol "${family}"`);
  for (const [which, address] of [
    ['source', sourceAddress],
    ['destination', destinationAddress],
  ] as const) {
    if (isFamily(address)) continue;
    // Say what is wrong with it: not an address at all (999.2.3.4), or one of the other family.
    const other = family === 'TCP4' ? isIPv6(address) : isIPv4(address);
    return invalid(
      `v1 header's ${which} address "${address}" is ${other ? `an ${family === 'TCP4' ? 'IPv6' : 'IPv4'} address in a ${family} header` : `not an ${family === 'TCP4' ? 'IPv4' : 'IPv6'} address`}`,
    );
  }
  const sport = parseV1Port(sourcePort);
  const dport = parseV1Port(destinationPort);
  if (sport === undefined || dport === undefined) return invalid('v1 header has an invalid port');
  return {
    status: 'complete',
    header: {
      version: 1,
      command: 'proxy',
      source: { address: sourceAddress, port: sport },
      destination: { address: destinationAddress, port: dport },
      tlvs: [],
      length,
    },
  };
}

function parseV1Port(text: string): number | undefined {
  // Decimal, no leading zeros, 0-65535 (spec: "1 to 5 digits").
  if (!/^(0|[1-9]\d{0,4})$/.test(text)) return undefined;
  const port = Number(text);
  return port <= 65535 ? port : undefined;
}

function parseV2(input: Uint8Array): ProxyParseResult {
  const signature = startsWithPrefix(input, PROXY_V2_SIGNATURE);
  if (signature === false) return invalid('no PROXY header (the connection must start with one)');
  if (input.length < V2_FIXED_BYTES) return INCOMPLETE;
  const versionCommand = input[12]!;
  if (versionCommand >> 4 !== 2) return invalid(`v2 header has version ${versionCommand >> 4}, expected 2`);
  const commandBits = versionCommand & 0x0f;
  if (commandBits > 1) return invalid(`v2 header has unknown command ${commandBits}`);
  const familyProtocol = input[13]!;
  const family = familyProtocol >> 4;
  const protocol = familyProtocol & 0x0f;
  if (family > 3 || protocol > 2)
    return invalid(`v2 header has unknown family/protocol 0x${familyProtocol.toString(16).padStart(2, '0')}`);
  const bodyLength = (input[14]! << 8) | input[15]!;
  const length = V2_FIXED_BYTES + bodyLength;
  if (input.length < length) return INCOMPLETE;
  const body = Buffer.from(input.buffer, input.byteOffset + V2_FIXED_BYTES, bodyLength);

  let addressBytes = 0;
  let source: ProxyEndpoint | undefined;
  let destination: ProxyEndpoint | undefined;
  if (family === 1 || family === 2) {
    const size = family === 1 ? 4 : 16;
    addressBytes = 2 * size + 4;
    if (bodyLength < addressBytes)
      return invalid(`v2 header too short for its ${family === 1 ? 'IPv4' : 'IPv6'} addresses`);
    const format = family === 1 ? formatIPv4 : formatIPv6;
    source = { address: format(body.subarray(0, size)), port: body.readUInt16BE(2 * size) };
    destination = { address: format(body.subarray(size, 2 * size)), port: body.readUInt16BE(2 * size + 2) };
  } else if (family === 3) {
    addressBytes = 216;
    if (bodyLength < addressBytes) return invalid('v2 header too short for its Unix addresses');
  }

  const tlvs: ProxyTlv[] = [];
  let offset = addressBytes;
  while (offset < bodyLength) {
    if (offset + 3 > bodyLength) return invalid('v2 header has a truncated TLV');
    const type = body[offset]!;
    const valueLength = body.readUInt16BE(offset + 1);
    const valueStart = offset + 3;
    if (valueStart + valueLength > bodyLength) return invalid(`v2 TLV 0x${type.toString(16)} runs past the header`);
    tlvs.push({ type, value: Buffer.from(body.subarray(valueStart, valueStart + valueLength)) });
    offset = valueStart + valueLength;
  }

  // LOCAL, and PROXY over an unspecified or Unix family, carry no IP source: use the real peer.
  const relayed = commandBits === 1 && source !== undefined;
  return {
    status: 'complete',
    header: {
      version: 2,
      command: relayed ? 'proxy' : 'local',
      ...(relayed && { source, destination }),
      tlvs,
      length,
    },
  };
}

function formatIPv4(bytes: Uint8Array): string {
  return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
}

function formatIPv6(bytes: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  // Compress the longest run of zero groups (RFC 5952), so logs show the usual notation.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (bestStart < 0) return groups.join(':');
  const head = groups.slice(0, bestStart).join(':');
  const tail = groups.slice(bestStart + bestLength).join(':');
  const text = `${head}::${tail}`;
  // An IPv4-mapped source is shown as a.b.c.d, as the server shows such peers everywhere else.
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(text);
  if (mapped) {
    const high = parseInt(mapped[1]!, 16);
    const low = parseInt(mapped[2]!, 16);
    return `::ffff:${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
  }
  return text;
}

export interface ProxyHeaderSpec {
  source: ProxyEndpoint;
  destination: ProxyEndpoint;
  tlvs?: readonly ProxyTlv[];
}

/** Writes a v1 header for a TCP connection from `source` to `destination` (same IP family). */
export function encodeProxyV1({ source, destination }: ProxyHeaderSpec): Buffer {
  const family = isIPv4(source.address) ? 'TCP4' : 'TCP6';
  return Buffer.from(
    `PROXY ${family} ${source.address} ${destination.address} ${source.port} ${destination.port}\r\n`,
    'latin1',
  );
}

/** Writes a v2 PROXY header over TCP, or a LOCAL one when `spec` is omitted. */
export function encodeProxyV2(spec?: ProxyHeaderSpec): Buffer {
  if (spec === undefined) return Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
  const v4 = isIPv4(spec.source.address);
  const size = v4 ? 4 : 16;
  const addresses = Buffer.alloc(2 * size + 4);
  ipBytes(spec.source.address).copy(addresses, 0);
  ipBytes(spec.destination.address).copy(addresses, size);
  addresses.writeUInt16BE(spec.source.port, 2 * size);
  addresses.writeUInt16BE(spec.destination.port, 2 * size + 2);
  const tlvs = (spec.tlvs ?? []).map(({ type, value }) => {
    const head = Buffer.from([type, 0, 0]);
    head.writeUInt16BE(value.length, 1);
    return Buffer.concat([head, value]);
  });
  const body = Buffer.concat([addresses, ...tlvs]);
  const fixed = Buffer.from([0x21, v4 ? 0x11 : 0x21, 0, 0]);
  fixed.writeUInt16BE(body.length, 2);
  return Buffer.concat([PROXY_V2_SIGNATURE, fixed, body]);
}

function ipBytes(address: string): Buffer {
  if (isIPv4(address)) return Buffer.from(address.split('.').map(Number));
  // An embedded IPv4 tail (::ffff:192.0.2.1) is two 16-bit groups.
  const v4Tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(address);
  if (v4Tail) {
    const b = ipBytes(v4Tail[1]!);
    address = `${address.slice(0, v4Tail.index)}${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const groups = (part: string | undefined): number[] =>
    part ? part.split(':').map((group) => parseInt(group, 16)) : [];
  const [head, tail] = address.split('::');
  const headGroups = groups(head);
  const tailGroups = groups(tail);
  const zeros = new Array<number>(8 - headGroups.length - tailGroups.length).fill(0);
  const bytes = Buffer.alloc(16);
  [...headGroups, ...zeros, ...tailGroups].forEach((group, i) => bytes.writeUInt16BE(group, i * 2));
  return bytes;
}
