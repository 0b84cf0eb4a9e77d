// The address the bench's native engine connects to: the first of a host's addresses that accepts, on real sockets.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { connectAddress, firstAccepting } from '../src/bench/address.js';
import { withTimeout } from './helpers/timeout.js';

const servers: net.Server[] = [];
after(() => servers.forEach((server) => server.close()));

/** A server on `host` only, accepting and closing; its port. */
async function listenOn(host: string, port = 0): Promise<number> {
  const server = net.createServer((socket) => socket.destroy());
  servers.push(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, ipv6Only: host === '::1' }, resolve);
  });
  return (server.address() as net.AddressInfo).port;
}

describe('the address the native engine connects to', () => {
  it('skips an address nothing listens on for the next that accepts, either family first', async () => {
    const v4 = await listenOn('127.0.0.1');
    assert.equal(await withTimeout(firstAccepting(['::1', '127.0.0.1'], v4, 2000), 5000, 'probe'), '127.0.0.1');
    const v6 = await listenOn('::1');
    assert.equal(await withTimeout(firstAccepting(['127.0.0.1', '::1'], v6, 2000), 5000, 'probe'), '::1');
  });

  it('takes the first address when several accept, and none when none does', async () => {
    const port = await listenOn('127.0.0.1');
    await listenOn('::1', port);
    assert.equal(await withTimeout(firstAccepting(['::1', '127.0.0.1'], port, 2000), 5000, 'probe'), '::1');
    const closed = await listenOn('127.0.0.1');
    servers.pop()!.close();
    assert.equal(await withTimeout(firstAccepting(['::1', '127.0.0.1'], closed, 2000), 5000, 'probe'), undefined);
  });

  it('looks a name up, and takes an address literal as it is', async () => {
    const port = await listenOn('127.0.0.1');
    assert.equal(await withTimeout(connectAddress('127.0.0.1', port, 2000), 5000, 'lookup'), '127.0.0.1');
    assert.equal(await withTimeout(connectAddress('::1', port, 2000), 5000, 'lookup'), '::1');
    assert.equal(await withTimeout(connectAddress('no-such-host.invalid', port, 2000), 5000, 'lookup'), undefined);
  });
});
