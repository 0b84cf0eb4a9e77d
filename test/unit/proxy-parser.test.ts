// The PROXY protocol v1 and v2 parser under random, truncated and hostile input (no sockets).

import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  encodeProxyV1,
  encodeProxyV2,
  parseProxyHeader,
  PROXY_V2_SIGNATURE,
  type ProxyHeaderSpec,
} from '../../src/protocol/proxy-protocol.js';

const ipv4 = fc.ipV4();
const ipv6 = fc.ipV6();
const port = fc.integer({ min: 0, max: 65535 });
const endpoints = fc.oneof(
  fc.record({ source: fc.record({ address: ipv4, port }), destination: fc.record({ address: ipv4, port }) }),
  fc.record({ source: fc.record({ address: ipv6, port }), destination: fc.record({ address: ipv6, port }) }),
);
const tlvs = fc.array(
  fc.record({
    type: fc.integer({ min: 0, max: 255 }),
    value: fc.uint8Array({ maxLength: 40 }).map((bytes) => Buffer.from(bytes)),
  }),
  { maxLength: 5 },
);
const headers = fc.oneof(
  endpoints.map((spec): { spec: ProxyHeaderSpec; bytes: Buffer; version: 1 | 2 } => ({
    spec,
    bytes: encodeProxyV1(spec),
    version: 1,
  })),
  fc.tuple(endpoints, tlvs).map(([spec, extensions]) => {
    const full: ProxyHeaderSpec = { ...spec, tlvs: extensions };
    return { spec: full, bytes: encodeProxyV2(full), version: 2 as const };
  }),
);

/** The same address in one notation, whatever notation fast-check or the parser chose. */
function normal(address: string): string {
  if (net.isIPv4(address)) return address;
  const list = new net.SocketAddress({ address, family: 'ipv6' });
  return list.address;
}

function sameAddress(a: string, b: string): boolean {
  const block = new net.BlockList();
  block.addAddress(a, net.isIPv4(a) ? 'ipv4' : 'ipv6');
  return block.check(b, net.isIPv4(b) ? 'ipv4' : 'ipv6') || normal(a) === normal(b);
}

describe('PROXY header parser', () => {
  it('reads back every header it can write, whatever follows it', () => {
    fc.assert(
      fc.property(headers, fc.uint8Array({ maxLength: 64 }), ({ spec, bytes, version }, trailing) => {
        const result = parseProxyHeader(Buffer.concat([bytes, trailing]));
        assert.equal(result.status, 'complete');
        if (result.status !== 'complete') return;
        const { header } = result;
        assert.equal(header.version, version);
        assert.equal(header.length, bytes.length);
        assert.equal(header.command, 'proxy');
        assert.ok(
          sameAddress(header.source!.address, spec.source.address),
          `${header.source!.address} vs ${spec.source.address}`,
        );
        assert.ok(sameAddress(header.destination!.address, spec.destination.address));
        assert.equal(header.source!.port, spec.source.port);
        assert.equal(header.destination!.port, spec.destination.port);
        assert.deepEqual(
          header.tlvs.map((tlv) => [tlv.type, tlv.value.toString('hex')]),
          (spec.tlvs ?? []).map((tlv) => [tlv.type, tlv.value.toString('hex')]),
        );
      }),
      { numRuns: 500 },
    );
  });

  it('says incomplete for every truncation, and never reads past the bytes it was given', () => {
    fc.assert(
      fc.property(headers, fc.nat(), ({ bytes }, cut) => {
        const length = cut % bytes.length;
        // The rest of the header sits right after the view in the same memory: reading it
        // would make the parse complete.
        const view = new Uint8Array(bytes.buffer, bytes.byteOffset, length);
        assert.deepEqual(parseProxyHeader(view), { status: 'incomplete' });
      }),
      { numRuns: 500 },
    );
  });

  it('never throws on random input, and a complete parse stays within it', () => {
    const v2Start = fc.uint8Array({ maxLength: 300 }).map((rest) => Buffer.concat([PROXY_V2_SIGNATURE, rest]));
    const v1Start = fc.string({ maxLength: 120 }).map((rest) => Buffer.from(`PROXY ${rest}`, 'latin1'));
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }), v2Start, v1Start), (input) => {
        const result = parseProxyHeader(input);
        assert.ok(['complete', 'incomplete', 'invalid'].includes(result.status));
        if (result.status === 'complete') assert.ok(result.header.length <= input.length);
      }),
      { numRuns: 2000 },
    );
  });

  it('rejects what is not a header, at the first wrong byte', () => {
    assert.equal(parseProxyHeader(Buffer.from('G')).status, 'invalid');
    assert.equal(parseProxyHeader(Buffer.from('PROXZ')).status, 'invalid');
    assert.equal(parseProxyHeader(Buffer.from([0x0d, 0x0a, 0x0d, 0x0b])).status, 'invalid');
    assert.equal(parseProxyHeader(Buffer.from(`PROXY TCP4 ${'1'.repeat(120)}`)).status, 'invalid', 'oversized v1');
    assert.equal(parseProxyHeader(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n')).status, 'invalid', 'LF without CR');
    assert.equal(parseProxyHeader(Buffer.from('PROXY TCP4 1.2.3.4 ::1 1 2\r\n')).status, 'invalid', 'mixed families');
    assert.deepEqual(parseProxyHeader(Buffer.from('PROXY TCP4 1.2.3.4 ::1 1 2\r\n')), {
      status: 'invalid',
      reason: 'v1 header\'s destination address "::1" is an IPv6 address in a TCP4 header',
    });
    assert.deepEqual(parseProxyHeader(Buffer.from('PROXY TCP4 999.2.3.4 5.6.7.8 1 2\r\n')), {
      status: 'invalid',
      reason: 'v1 header\'s source address "999.2.3.4" is not an IPv4 address',
    });
    assert.equal(
      parseProxyHeader(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n')).status,
      'invalid',
      'port out of range',
    );
    const v2 = encodeProxyV2({
      source: { address: '1.2.3.4', port: 1 },
      destination: { address: '5.6.7.8', port: 2 },
      tlvs: [{ type: 0xe0, value: Buffer.from('abc') }],
    });
    const badTlv = Buffer.from(v2);
    badTlv.writeUInt16BE(200, v2.length - 5); // the TLV's length now runs past the header
    assert.equal(parseProxyHeader(badTlv).status, 'invalid');
    const badVersion = Buffer.from(v2);
    badVersion[12] = 0x31;
    assert.equal(parseProxyHeader(badVersion).status, 'invalid');
  });

  it('treats LOCAL and UNKNOWN as "use the real peer"', () => {
    const local = parseProxyHeader(encodeProxyV2());
    assert.equal(local.status === 'complete' && local.header.command, 'local');
    const unknown = parseProxyHeader(Buffer.from('PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n'));
    assert.equal(unknown.status === 'complete' && unknown.header.command, 'local');
  });
});
