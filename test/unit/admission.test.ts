// Who may connect: the total limit, the per-address limit and the allow-list, as pure rules.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Admission, canonicalAddress } from '../../src/server/limits.js';

describe('Admission', () => {
  it('has room below the total limit only', () => {
    const admission = new Admission({ maxConnections: 2 });
    assert.equal(admission.hasRoom(0), true);
    assert.equal(admission.hasRoom(1), true);
    assert.equal(admission.hasRoom(2), false);
  });

  it('counts each source address apart, and frees a place on release', () => {
    const admission = new Admission({ maxConnectionsPerIp: 2 });
    assert.equal(admission.admitSource('10.0.0.1'), undefined);
    assert.equal(admission.admitSource('10.0.0.1'), undefined);
    assert.equal(admission.admitSource('10.0.0.1'), 'max_connections_per_ip');
    assert.equal(admission.admitSource('10.0.0.2'), undefined, 'another address has its own count');
    admission.release('10.0.0.1');
    assert.equal(admission.admitSource('10.0.0.1'), undefined);
  });

  it('never counts Unix socket peers, which have no address', () => {
    const admission = new Admission({ maxConnectionsPerIp: 1 });
    assert.equal(admission.countsSource('unix:/run/echo.sock'), false);
    for (let i = 0; i < 5; i++) assert.equal(admission.admitSource('unix:/run/echo.sock'), undefined);
  });

  it('the allow-list admits exactly the addresses inside its networks, IPv4 and IPv6', () => {
    const admission = new Admission({ allow: ['10.1.0.0/16', 'fd00::/8'] });
    assert.equal(admission.admitSource('10.1.200.3'), undefined);
    assert.equal(admission.admitSource('10.2.0.1'), 'not_allowed');
    assert.equal(admission.admitSource('fd12::1'), undefined);
    assert.equal(admission.admitSource('fe80::1'), 'not_allowed');
    assert.equal(admission.allows('unix:/x'), true);
  });

  it('admits, per address, exactly the limit whatever the order of arrivals and departures', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.array(fc.tuple(fc.constantFrom('a', 'b'), fc.boolean()), { maxLength: 60 }),
        (limit, events) => {
          const admission = new Admission({ maxConnectionsPerIp: limit });
          const open: Record<string, number> = { a: 0, b: 0 };
          const address = { a: '192.0.2.1', b: '2001:db8::1' };
          for (const [who, arrives] of events) {
            if (arrives) {
              const admitted = admission.admitSource(address[who as 'a' | 'b']) === undefined;
              assert.equal(admitted, open[who]! < limit);
              if (admitted) open[who]!++;
            } else if (open[who]! > 0) {
              admission.release(address[who as 'a' | 'b']);
              open[who]!--;
            }
          }
        },
      ),
    );
  });

  it('shows IPv4-mapped IPv6 peers in IPv4 notation', () => {
    assert.equal(canonicalAddress('::ffff:10.0.0.1'), '10.0.0.1');
    assert.equal(canonicalAddress('::1'), '::1');
  });
});
