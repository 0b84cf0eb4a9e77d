// PROXY protocol v1 and v2 in the server: the header's source address for logs and limits,
// trust, bad and late headers (the parser alone: unit/proxy-parser.test.ts).

import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { encodeProxyV1, encodeProxyV2 } from '../src/index.js';
import { recordingLogger } from './helpers/logs.js';
import { connectTo, readBytes, readToEnd, startServer } from './helpers/sockets.js';
import { delay, waitUntil } from './helpers/timeout.js';

const CLIENT = { source: { address: '203.0.113.7', port: 40_001 }, destination: { address: '192.0.2.1', port: 1234 } };

/** Writes `bytes` one byte at a time, with a pause now and then, as a slow proxy might. */
async function writeByteByByte(socket: net.Socket, bytes: Buffer): Promise<void> {
  for (let i = 0; i < bytes.length; i++) {
    socket.write(bytes.subarray(i, i + 1));
    if (i % 8 === 0) await delay(2);
  }
}

{
  describe('server with --proxy-protocol', () => {
    for (const [name, header] of [
      ['v1', encodeProxyV1(CLIENT)],
      [
        'v2 with TLVs',
        encodeProxyV2({
          ...CLIENT,
          tlvs: [
            { type: 0x01, value: Buffer.from('h2') },
            { type: 0xee, value: Buffer.alloc(300, 7) },
          ],
        }),
      ],
    ] as const) {
      it(`consumes a ${name} header sent byte by byte and logs the client it names`, async () => {
        const logger = recordingLogger();
        const running = await startServer({ proxyProtocol: true, logger });
        try {
          const socket = await connectTo(running.port);
          await writeByteByByte(socket, header);
          const reply = readBytes(socket, 5);
          socket.write('hello');
          assert.equal((await reply).toString(), 'hello', 'the header is never echoed');
          const open = logger.events.find((event) => event.fields['event'] === 'open');
          assert.equal(open?.fields['peer'], '203.0.113.7:40001');
          assert.match(String(open?.fields['proxy']), /^127\.0\.0\.1:\d+$/);
          assert.match(open!.message, /new connection from 203\.0\.113\.7:40001 via 127\.0\.0\.1:\d+/);
          assert.equal(running.server.stats().bytesReceived, 5, 'header bytes are not payload');
          socket.destroy();
        } finally {
          await running.close();
        }
      });
    }

    it('serves a v2 LOCAL connection (a health check) as the real peer', async () => {
      const logger = recordingLogger();
      const running = await startServer({ proxyProtocol: true, logger });
      try {
        const socket = await connectTo(running.port);
        const reply = readBytes(socket, 4);
        socket.write(Buffer.concat([encodeProxyV2(), Buffer.from('ping')]));
        assert.equal((await reply).toString(), 'ping');
        assert.match(
          String(logger.events.find((event) => event.fields['event'] === 'open')?.fields['peer']),
          /^127\.0\.0\.1:/,
        );
        socket.destroy();
      } finally {
        await running.close();
      }
    });

    it('closes and counts a connection with no header, a bad one, or one too slow', async () => {
      const running = await startServer({ proxyProtocol: true, proxyHeaderTimeoutMs: 300 });
      try {
        const plain = await connectTo(running.port);
        const plainReply = readToEnd(plain);
        plain.on('error', () => {});
        plain.write('GET / HTTP/1.1\r\n\r\n');
        assert.equal((await plainReply).length, 0, 'nothing echoed without a header');

        const malformed = await connectTo(running.port);
        malformed.on('error', () => {});
        const malformedReply = readToEnd(malformed);
        malformed.write('PROXY TCP4 300.1.1.1 1.1.1.1 1 2\r\nhello');
        assert.equal((await malformedReply).length, 0);

        const slow = await connectTo(running.port);
        slow.on('error', () => {});
        const slowReply = readToEnd(slow);
        const started = Date.now();
        slow.write(encodeProxyV1(CLIENT).subarray(0, 10));
        assert.equal((await slowReply).length, 0);
        assert.ok(Date.now() - started >= 250, 'closed at the header deadline, not before');

        await waitUntil(() => running.server.stats().errors.proxy_header === 3, 2000, 'three header errors counted');
        await waitUntil(() => running.server.connections.size === 0, 2000, 'all three closed');
      } finally {
        await running.close();
      }
    });

    it('applies --allow and per-IP limits to the source the header names', async () => {
      const running = await startServer({ proxyProtocol: true, allow: ['203.0.113.0/24'], maxConnectionsPerIp: 1 });
      const header = (address: string) =>
        encodeProxyV1({ source: { address, port: 5000 }, destination: CLIENT.destination });
      try {
        const first = await connectTo(running.port);
        const firstReply = readBytes(first, 2);
        first.write(Buffer.concat([header('203.0.113.7'), Buffer.from('ok')]));
        assert.equal((await firstReply).toString(), 'ok');

        const sameSource = await connectTo(running.port);
        sameSource.on('error', () => {});
        const sameReply = readToEnd(sameSource);
        sameSource.write(Buffer.concat([header('203.0.113.7'), Buffer.from('no')]));
        assert.equal((await sameReply).length, 0, 'a second connection from the same source is over the per-IP limit');

        const otherSource = await connectTo(running.port);
        const otherReply = readBytes(otherSource, 2);
        otherSource.write(Buffer.concat([header('203.0.113.8'), Buffer.from('ok')]));
        assert.equal((await otherReply).toString(), 'ok', 'the same proxy relays another client');

        const outside = await connectTo(running.port);
        outside.on('error', () => {});
        const outsideReply = readToEnd(outside);
        outside.write(Buffer.concat([header('198.51.100.1'), Buffer.from('no')]));
        assert.equal((await outsideReply).length, 0);

        const stats = running.server.stats();
        assert.equal(stats.rejected.max_connections_per_ip, 1);
        assert.equal(stats.rejected.not_allowed, 1);
        first.destroy();
        otherSource.destroy();
        // Once the first leaves, its source may connect again.
        await waitUntil(() => running.server.connections.size === 0, 2000, 'connections to close');
        const again = await connectTo(running.port);
        const againReply = readBytes(again, 2);
        again.write(Buffer.concat([header('203.0.113.7'), Buffer.from('ok')]));
        assert.equal((await againReply).toString(), 'ok');
        again.destroy();
      } finally {
        await running.close();
      }
    });

    it('turns away proxies outside --proxy-trust', async () => {
      const running = await startServer({ proxyProtocol: true, proxyTrust: ['10.0.0.0/8'] });
      try {
        const socket = await connectTo(running.port);
        socket.on('error', () => {});
        const reply = readToEnd(socket);
        socket.write(Buffer.concat([encodeProxyV1(CLIENT), Buffer.from('hi')]));
        assert.equal((await reply).length, 0);
        assert.equal(running.server.stats().rejected.proxy_not_trusted, 1);
      } finally {
        await running.close();
      }
    });
  });
}
