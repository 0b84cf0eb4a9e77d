// --delay: each chunk answered a fixed time after it arrived, in order, on both TCP paths and UDP,
// without growing memory for a client that floods, and without losing replies at a half-close
// or a graceful shutdown.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { createEchoServer, UsageError } from '../src/index.js';
import { runCli, startServe } from './helpers/cli.js';
import { closed, connectTo, readBytes, readToEnd, roundTrip, startServer } from './helpers/sockets.js';
import { delay, waitUntil, withTimeout } from './helpers/timeout.js';

{
  describe('--delay', () => {
    it('answers each chunk the delay after it arrived, in order', async () => {
      const running = await startServer({ delayMs: 150 });
      try {
        const socket = await connectTo(running.port);
        const arrivals: Array<{ at: number; bytes: string }> = [];
        socket.on('data', (chunk: Buffer) => arrivals.push({ at: performance.now(), bytes: chunk.toString() }));
        const sentAt: number[] = [];
        for (const letter of ['a', 'b', 'c']) {
          sentAt.push(performance.now());
          socket.write(letter);
          await delay(50);
        }
        await waitUntil(() => arrivals.map((a) => a.bytes).join('') === 'abc', 3000, 'three replies');
        // Each letter came back on its own, no sooner than the delay after it was sent.
        assert.deepEqual(
          arrivals.map((a) => a.bytes),
          ['a', 'b', 'c'],
        );
        arrivals.forEach((arrival, i) =>
          assert.ok(arrival.at - sentAt[i]! >= 140, `reply ${i} after ${arrival.at - sentAt[i]!} ms`),
        );
        socket.destroy();
      } finally {
        await running.close();
      }
    });

    it('a half-close waits for the delayed replies, then FIN', async () => {
      const running = await startServer({ delayMs: 100 });
      try {
        const socket = await connectTo(running.port);
        const payload = randomBytes(10_000);
        const reply = readToEnd(socket, 5000);
        socket.end(payload);
        assert.ok((await reply).equals(payload));
      } finally {
        await running.close();
      }
    });

    it('holds reading while delayed chunks pile up, so a flooding client cannot grow memory', async () => {
      const maxBuffered = 64 * 1024;
      const running = await startServer({ delayMs: 100, maxBuffered });
      try {
        const socket = await connectTo(running.port);
        const payload = randomBytes(1024 * 1024);
        socket.pause();
        socket.write(payload);
        await delay(60);
        // Within the first delay, nothing is answered yet: what was read is what waits.
        const [connection] = running.server.connections;
        assert.ok(
          connection!.bytesReceived <= 3 * maxBuffered,
          `read ${connection!.bytesReceived} bytes while holding`,
        );
        assert.ok(running.server.stats().backpressurePauses > 0);
        const echoed = readBytes(socket, payload.length, 15_000);
        socket.resume();
        assert.ok((await echoed).equals(payload), 'every byte back, in order');
        socket.destroy();
      } finally {
        await running.close();
      }
    });

    it('the idle timeout does not count the delay as the client being idle', async () => {
      const running = await startServer({ delayMs: 400, idleTimeoutMs: 150 });
      try {
        const socket = await connectTo(running.port);
        // Everything up to the server's FIN, which the idle timeout sends once both sides are quiet.
        const untilIdle = readToEnd(socket, 3000);
        socket.write('hello');
        assert.equal((await untilIdle).toString(), 'hello', 'answered after 400 ms, though the idle timeout is 150 ms');
        assert.equal(running.server.stats().idleTimeouts, 1);
        socket.destroy();
      } finally {
        await running.close();
      }
    });

    it('a reply that ends the connection (a line too long) lets it close even while input is held', async () => {
      const running = await startServer({ delayMs: 50, maxBuffered: 1024, framing: 'line', maxLine: 100 });
      try {
        const socket = await connectTo(running.port);
        const untilFin = readToEnd(socket, 3000);
        socket.write(Buffer.alloc(8000, 0x61)); // no newline: past --max-line, and past maxBuffered waiting
        assert.match((await untilFin).toString(), /^error: line longer than 100 bytes/);
        socket.end();
        await waitUntil(
          () => running.server.stats().connectionsActive === 0,
          3000,
          'the server to see our FIN and close',
        );
      } finally {
        await running.close();
      }
    });

    it('a graceful close still delivers replies that were waiting', async () => {
      const running = await startServer({ delayMs: 200 });
      const socket = await connectTo(running.port);
      const reply = readToEnd(socket, 5000);
      socket.write('last words');
      await delay(20);
      const closing = running.server.close({ timeoutMs: 3000 });
      assert.equal((await reply).toString(), 'last words');
      socket.end();
      assert.equal((await withTimeout(closing, 5000, 'close')).forced, 0);
      await closed(socket);
    });
  });
}

describe('--delay over UDP and from the command line', () => {
  it('delays each datagram reply', async () => {
    const running = await startServer({ delayMs: 120, udp: true });
    const client = dgram.createSocket('udp4');
    try {
      const sentAt = performance.now();
      client.send('ping', running.port, '127.0.0.1');
      const [message] = (await withTimeout(once(client, 'message'), 3000, 'the reply')) as [Buffer];
      assert.equal(message.toString(), 'ping');
      assert.ok(performance.now() - sentAt >= 110, 'no sooner than the delay');
    } finally {
      client.close();
      await running.close();
    }
  });

  it('echoplex serve --delay: replies late from the command line; a negative delay is refused', async () => {
    const server = await startServe(['--quiet', '--delay', '0.15']);
    try {
      const started = performance.now();
      assert.equal((await roundTrip(server.port, Buffer.from('slow'))).toString(), 'slow');
      assert.ok(performance.now() - started >= 140);
    } finally {
      await server.stop();
    }
    assert.equal((await runCli(['serve', '--delay', '-1'])).code, 2);
    assert.throws(() => createEchoServer({ delayMs: -5 }), UsageError);
  });
});
