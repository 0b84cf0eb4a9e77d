// A client that sends and never reads must not grow the server's memory; everything arrives later.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { startServe } from './helpers/cli.js';
import { residentBytes } from './helpers/proc.js';
import { connectTo, readBytes } from './helpers/sockets.js';
import { delay, withTimeout } from './helpers/timeout.js';

const CHUNK = 64 * 1024;

function chunkAt(index: number): Buffer {
  // Deterministic, varied content, so a reordered or repeated chunk changes the hash.
  const chunk = Buffer.alloc(CHUNK);
  for (let i = 0; i < CHUNK; i += 4) chunk.writeUInt32LE((index * 2654435761 + i * 40503) >>> 0, i);
  return chunk;
}

/** `echoplex serve` with its settled memory noted, and one connected client that does not read. */
async function serveWithIdleReader(env: NodeJS.ProcessEnv) {
  const server = await startServe(['--quiet'], { env });
  try {
    await delay(300);
    const baseline = residentBytes(server.child.pid!);
    const socket = await connectTo(server.port);
    socket.pause();
    return { server, socket, grown: () => residentBytes(server.child.pid!) - baseline };
  } catch (err) {
    await server.stop();
    throw err;
  }
}

// TCP connections run on the native engine where it was built; the same limits hold on the
// portable one.
for (const [path, env] of [
  ['the native engine', {}],
  ['the portable engine', { ECHOPLEX_ENGINE: 'portable' }],
] as const) {
  describe(`slow reader (${path})`, () => {
    it('bounds server memory while the client does not read, then delivers every byte', async () => {
      const { server, socket, grown: memoryGrowth } = await serveWithIdleReader(env);
      try {
        const sent = createHash('sha256');
        let sentBytes = 0;
        let index = 0;
        // Write until the whole path is full: no 'drain' for a full second means nobody is reading.
        for (;;) {
          const chunk = chunkAt(index++);
          sent.update(chunk);
          sentBytes += chunk.length;
          if (!socket.write(chunk)) {
            const drained = await Promise.race([
              new Promise((resolve) => socket.once('drain', () => resolve(true))),
              delay(1000).then(() => false),
            ]);
            if (!drained) break;
          }
          assert.ok(sentBytes < 512 * 1024 * 1024, 'the server never applied backpressure');
        }
        const grown = memoryGrowth();
        if (process.env['ECHOPLEX_TEST_VERBOSE']) console.log({ grown, sentBytes });
        assert.ok(
          grown < 12 * 1024 * 1024,
          `server grew by ${(grown / 1048576).toFixed(1)} MiB with ${(sentBytes / 1048576).toFixed(1)} MiB sent and nothing read`,
        );

        const received = createHash('sha256');
        let receivedBytes = 0;
        const allBack = new Promise<void>((resolve) => {
          socket.on('data', (chunk: Buffer) => {
            received.update(chunk);
            receivedBytes += chunk.length;
            if (receivedBytes >= sentBytes) resolve();
          });
        });
        socket.resume();
        socket.end();
        await withTimeout(allBack, 30_000, `${sentBytes} bytes back`);
        assert.equal(receivedBytes, sentBytes);
        assert.equal(received.digest('hex'), sent.digest('hex'));
        socket.destroy();
      } finally {
        await server.stop();
      }
    });
  });

  describe(`many tiny writes (${path})`, () => {
    it('a client sending one byte at a time and never reading cannot inflate the server', async () => {
      const { server, socket, grown: memoryGrowth } = await serveWithIdleReader(env);
      try {
        socket.setNoDelay(true);
        let sent = 0;
        // One byte per write, yielding now and then so the bytes leave as separate segments.
        for (let burst = 0; burst < 400; burst++) {
          for (let i = 0; i < 500; i++) socket.write(Buffer.of(0x41 + (sent++ % 26)));
          if (socket.writableLength > 64 * 1024) break;
          await new Promise((resolve) => setImmediate(resolve));
        }
        await delay(500);
        const grown = memoryGrowth();
        if (process.env['ECHOPLEX_TEST_VERBOSE']) console.log({ grown, sent });
        assert.ok(
          grown < 24 * 1024 * 1024,
          `server grew by ${(grown / 1048576).toFixed(1)} MiB after ${sent} one-byte writes`,
        );
        const back = readBytes(socket, sent);
        socket.resume();
        const received = await back;
        assert.equal(received.length, sent);
        for (let i = 0; i < received.length; i++)
          if (received[i] !== 0x41 + (i % 26)) assert.fail(`byte ${i} out of order`);
        socket.destroy();
      } finally {
        await server.stop();
      }
    });
  });
}
