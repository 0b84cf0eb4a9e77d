// The echo server through its library API, against real sockets on port 0.

import assert from 'node:assert/strict';
import { createHook } from 'node:async_hooks';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createEchoServer } from '../src/index.js';
import { addonAbsence } from '../src/native/addon.js';
import { recordingLogger } from './helpers/logs.js';
import { skipUnless, suite } from './helpers/peers.js';
import {
  closed,
  connectTo,
  readBytes,
  readToEnd,
  roundTrip,
  startServer,
  type RunningServer,
} from './helpers/sockets.js';
import { waitUntil, withTimeout } from './helpers/timeout.js';

function pythonUpper(bytes: Buffer): Buffer {
  // Independent reference: Python's bytes.upper() changes exactly the bytes a-z.
  return Buffer.from(bytes.map((b) => (b >= 97 && b <= 122 ? b - 32 : b)));
}

const nativeSkip = skipUnless(
  addonAbsence() === undefined ? 'built' : undefined,
  'the native engine',
  'g++ make (then npm install)',
);

// Every behaviour holds on each engine: the native one (the default where it was built) and
// the portable one.
const ENGINES = [
  { name: 'the native engine', options: { engine: 'native' as const }, skip: nativeSkip },
  { name: 'the portable engine', options: { engine: 'portable' as const }, skip: undefined },
];
for (const { name, options: path, skip } of ENGINES) {
  suite(`server on ${name}`, skip, () => {
    it('has let go of its port when close() resolves: the same port listens again at once', async () => {
      const first = await startServer(path);
      await first.server.close();
      const again = createEchoServer({ ...path, port: first.port });
      await withTimeout(again.listen(), 5000, 'listening again');
      await again.close();
    });

    it('uses the engine asked for', async () => {
      const running = await startServer(path);
      assert.equal(running.server.engine, path.engine);
      await running.close();
    });

    describe('echo transform', () => {
      let running: RunningServer;
      before(async () => {
        running = await startServer(path);
      });
      after(() => running.close());

      it('returns all 256 byte values intact', async () => {
        const payload = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
        assert.deepEqual(await roundTrip(running.port, payload), payload);
      });

      it('echoes an 8 MiB message whole and in order', async () => {
        const payload = randomBytes(8 * 1024 * 1024);
        const reply = await roundTrip(running.port, payload, 30_000);
        assert.equal(reply.length, payload.length);
        assert.ok(reply.equals(payload), '8 MiB reply differs from what was sent');
      });

      it('serves 200 concurrent clients with random binary payloads', async () => {
        const clients = Array.from({ length: 200 }, async (_, i) => {
          const payload = randomBytes(1 + ((i * 7919) % 20_000));
          const reply = await roundTrip(running.port, payload, 20_000);
          assert.ok(reply.equals(payload), `client ${i} got different bytes back`);
        });
        await withTimeout(Promise.all(clients), 30_000, '200 clients');
      });

      it('after a half-close, sends every pending byte and then closes', async () => {
        const socket = await connectTo(running.port);
        const payload = randomBytes(3 * 1024 * 1024);
        const reply = readToEnd(socket, 20_000);
        socket.end(payload);
        const received = await reply;
        assert.ok(received.equals(payload), 'reply after half-close differs');
        await closed(socket);
      });

      it('survives a client that resets mid-stream and keeps serving others', async () => {
        const before = running.server.stats().errors.reset;
        for (let i = 0; i < 5; i++) {
          const victim = await connectTo(running.port);
          victim.write(randomBytes(512 * 1024));
          victim.resetAndDestroy();
          await closed(victim);
        }
        await waitUntil(() => running.server.connections.size === 0, 5000, 'reset connections to be dropped');
        assert.ok(running.server.stats().errors.reset >= 1, `no reset counted (before: ${before})`);
        const payload = randomBytes(1000);
        assert.deepEqual(await roundTrip(running.port, payload), payload);
      });

      it('counts connections and bytes exactly', async () => {
        const start = running.server.stats();
        const payload = randomBytes(12_345);
        await roundTrip(running.port, payload);
        await waitUntil(
          () => running.server.stats().connectionsActive === start.connectionsActive,
          5000,
          'connection to close',
        );
        const end = running.server.stats();
        assert.equal(end.connectionsTotal - start.connectionsTotal, 1);
        assert.equal(end.bytesReceived - start.bytesReceived, payload.length);
        assert.equal(end.bytesSent - start.bytesSent, payload.length);
      });
    });

    describe('upper transform', () => {
      let running: RunningServer;
      before(async () => {
        running = await startServer({ ...path, transform: 'upper' });
      });
      after(() => running.close());

      it('uppercases ASCII only, leaving UTF-8 split at every byte position intact', async () => {
        const text = Buffer.from('héllo wörld, 你好世界 — ascii mixed with 中文 and émoji 🎉 end\n', 'utf8');
        const expected = pythonUpper(text);
        for (let split = 1; split < text.length; split++) {
          const socket = await connectTo(running.port);
          const reply = readBytes(socket, text.length);
          socket.write(text.subarray(0, split));
          // A separate write after a turn of the loop makes the server see two reads.
          await new Promise((resolve) => setImmediate(resolve));
          socket.write(text.subarray(split));
          assert.deepEqual(await reply, expected, `split at byte ${split}`);
          socket.destroy();
        }
      });

      it('matches bytes.upper() on random binary data', async () => {
        const payload = randomBytes(100_000);
        assert.deepEqual(await roundTrip(running.port, payload), pythonUpper(payload));
      });
    });

    describe('graceful close', () => {
      it('stops accepting, finishes in-flight echoes, and resolves', async () => {
        const running = await startServer(path);
        const socket = await connectTo(running.port);
        const payload = randomBytes(1024 * 1024);
        const reply = readToEnd(socket, 20_000);
        socket.write(payload);
        const closing = running.server.close({ timeoutMs: 5000 });
        assert.equal(running.server.ready, false, 'readiness must flip as soon as close starts');
        const received = await reply;
        assert.ok(received.equals(payload), `got ${received.length} of ${payload.length} bytes`);
        socket.end();
        const result = await withTimeout(closing, 8000, 'close');
        assert.equal(result.forced, 0);
        await assert.rejects(connectTo(running.port), /ECONNREFUSED/);
      });

      it('serves a client already waiting in the accept queue when close() begins, instead of resetting it', async () => {
        const running = await startServer(path);
        const client = net.connect({ host: '127.0.0.1', port: running.port });
        client.on('error', () => {});
        // net.connect() makes its connect() system call on the next tick; once that has run, the
        // kernel has completed the handshake on loopback and the client waits in the accept queue,
        // with no poll of the event loop since, so the server has not accepted it yet.
        await new Promise((resolve) => process.nextTick(resolve));
        const closing = running.server.close({ timeoutMs: 5000 });
        await withTimeout(once(client, 'connect'), 5000, 'connect');
        const reply = readBytes(client, 5, 5000);
        client.write('hello');
        assert.equal((await reply).toString(), 'hello', 'the queued client was served, not reset');
        client.end();
        const result = await withTimeout(closing, 8000, 'close');
        assert.equal(result.forced, 0);
        await assert.rejects(
          connectTo(running.port),
          /ECONNREFUSED/,
          'no longer listening once the queue was taken in',
        );
      });

      it('closes connections that outlive the timeout and counts them', async () => {
        const running = await startServer(path);
        const socket = await connectTo(running.port);
        // A client that keeps streaming never goes quiet, so only the deadline ends it.
        const streaming = setInterval(() => socket.write(randomBytes(1000)), 10);
        socket.on('data', () => {});
        socket.on('error', () => {});
        try {
          const result = await withTimeout(running.server.close({ timeoutMs: 500 }), 5000, 'close');
          assert.equal(result.forced, 1);
        } finally {
          clearInterval(streaming);
          socket.destroy();
        }
      });
    });
  });
}

describe('IPv6 and dual stack', () => {
  for (const engine of ['native', 'portable'] as const) {
    it(
      `serves on ::1 and shows IPv4 clients of :: in IPv4 notation (${engine} engine)`,
      { skip: engine === 'native' ? nativeSkip : undefined },
      async () => {
        const v6 = await startServer({ host: '::1', engine });
        try {
          assert.equal(v6.server.addresses[0]!.url, `tcp://[::1]:${v6.port}`);
          const payload = randomBytes(1000);
          assert.deepEqual(await roundTrip(v6.port, payload, 5000, '::1'), payload);
        } finally {
          await v6.close();
        }
        const dual = await startServer({ host: '::', engine });
        try {
          const seen: string[] = [];
          dual.server.on('connection', (connection) => seen.push(connection.peer));
          await roundTrip(dual.port, Buffer.from('v4'), 5000, '127.0.0.1');
          await roundTrip(dual.port, Buffer.from('v6'), 5000, '::1');
          assert.match(seen[0]!, /^127\.0\.0\.1:\d+$/);
          assert.match(seen[1]!, /^\[::1\]:\d+$/);
        } finally {
          await dual.close();
        }
      },
    );
  }
});

suite('what the native engine takes', nativeSkip, () => {
  it('accepts in C: Node makes no socket for a client, which is still admitted, served and counted', async () => {
    // Clients connect from another process, so that every TCP handle made here is the server's.
    const clients = `const net = require('node:net');
      (async () => {
        for (let i = 0; i < 5; i++) {
          await new Promise((resolve, reject) => {
            const socket = net.connect(Number(process.argv[1]), '127.0.0.1', () => socket.end('hello'));
            let echoed = '';
            socket.on('data', (chunk) => (echoed += chunk));
            socket.on('end', () => (echoed === 'hello' ? resolve() : reject(new Error('echoed ' + echoed))));
            socket.on('error', reject);
          });
        }
      })().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });`;
    const socketsMadeFor = async (engine: 'native' | 'portable'): Promise<number> => {
      let made = 0;
      const hook = createHook({ init: (_id, type) => void (type === 'TCPWRAP' && made++) });
      const running = await startServer({ engine });
      const served: number[] = [];
      running.server.on('connection', (connection) => served.push(connection.id));
      hook.enable();
      try {
        const child = spawn(process.execPath, ['-e', clients, String(running.port)], {
          stdio: ['ignore', 'ignore', 'inherit'],
        });
        const [code] = (await withTimeout(once(child, 'exit'), 10_000, 'the clients')) as [number | null];
        assert.equal(code, 0, 'every client got its echo');
        assert.equal(served.length, 5, 'every client was admitted as a connection');
        await waitUntil(() => running.server.stats().connectionsActive === 0, 5000, 'the connections to close');
        assert.equal(running.server.stats().bytesReceived, 25);
      } finally {
        hook.disable();
        await running.close();
      }
      return made;
    };
    assert.equal(await socketsMadeFor('native'), 0);
    // The count sees sockets where Node accepts.
    assert.equal(await socketsMadeFor('portable'), 5);
  });

  it('takes plain echo and upper, with open and close logged, and leaves the rest to the portable engine', async () => {
    const cases: Array<[string, Parameters<typeof startServer>[0], boolean]> = [
      ['echo', {}, true],
      ['upper', { transform: 'upper' }, true],
      ['line mode', { framing: 'line' }, false],
      ['a PROXY header', { proxyProtocol: true }, false],
      ['a delay', { delayMs: 10 }, false],
      ['a transform function', { transform: (chunk) => chunk }, false],
      ['open and close logged (info)', { logger: recordingLogger('info') }, true],
      ['each chunk logged (debug)', { logger: recordingLogger('debug') }, false],
      ['the portable engine asked for', { engine: 'portable' }, false],
    ];
    for (const [name, options, expected] of cases) {
      // Against `auto`, the default, whatever ECHOPLEX_ENGINE this test run has.
      const running = await startServer({ engine: 'auto', ...options });
      try {
        assert.equal(running.server.engine, expected ? 'native' : 'portable', name);
        // Either way the connection is served the same.
        const upper = options?.transform === 'upper';
        const header = options?.proxyProtocol ? 'PROXY TCP4 127.0.0.1 127.0.0.1 40000 1234\r\n' : '';
        const socket = await connectTo(running.port);
        const reply = readBytes(socket, 'native?\n'.length);
        socket.write(`${header}native?\n`);
        assert.equal((await reply).toString(), upper ? 'NATIVE?\n' : 'native?\n', name);
        socket.destroy();
      } finally {
        await running.close();
      }
    }
  });

  it('counts the bytes of a connection it served, and reports its close to the server', async () => {
    const running = await startServer({ engine: 'native' });
    try {
      assert.equal(running.server.engine, 'native');
      const payload = randomBytes(300_000);
      assert.ok((await roundTrip(running.port, payload, 10_000)).equals(payload));
      await waitUntil(() => running.server.connections.size === 0, 5000, 'the connection to close');
      const stats = running.server.stats();
      assert.equal(stats.bytesReceived, payload.length);
      assert.equal(stats.bytesSent, payload.length);
      assert.equal(stats.connectionsActive, 0);
    } finally {
      await running.close();
    }
  });
});
