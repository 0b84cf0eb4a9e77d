// The bench over WebSocket and TLS on both engines, against servers whose every answer is known:
// fragmented replies with pings between the pieces, replies of the wrong kind, a server that
// closes, refused upgrades and untrusted certificates.

import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { WebSocketServer, type WebSocket } from 'ws';
import { runBench } from '../src/bench/loadgen.js';
import { nativeBenchAvailable } from '../src/bench/native-bench.js';
import type { BenchOptions, BenchResult } from '../src/bench/settings.js';
import { loadTlsOptions } from '../src/index.js';
import { skipUnless } from './helpers/peers.js';
import { startServer } from './helpers/sockets.js';
import { waitUntil, withTimeout } from './helpers/timeout.js';

const ENGINES = [
  {
    name: 'the native engine',
    engine: 'native' as const,
    skip: skipUnless(nativeBenchAvailable ? 'built' : undefined, 'the native engine', 'g++ make (then npm install)'),
  },
  { name: 'the portable engine', engine: 'portable' as const, skip: undefined },
];

/** What a known-answer WebSocket server did and heard. */
interface Truth {
  port: number;
  pingsSent: number;
  pongsHeard: number;
  wrongSent: number;
  /** Close codes the clients sent. */
  closeCodes: number[];
  stop(): Promise<void>;
}

/**
 * A WebSocket echo server (the `ws` library) that answers every message as `mode` says:
 * `fragments` in three pieces with a ping between the first two; `kind` every tenth reply of
 * the other kind (binary for text); `close` closes each connection (1001) after its twentieth reply.
 */
async function truthServer(mode: 'fragments' | 'kind' | 'close'): Promise<Truth> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
  await new Promise<void>((resolve) => wss.once('listening', resolve));
  const truth: Truth = {
    port: (wss.address() as AddressInfo).port,
    pingsSent: 0,
    pongsHeard: 0,
    wrongSent: 0,
    closeCodes: [],
    stop: () => new Promise<void>((resolve) => wss.close(() => resolve())),
  };
  wss.on('connection', (socket: WebSocket) => {
    let replies = 0;
    socket.on('pong', () => truth.pongsHeard++);
    socket.on('close', (code: number) => truth.closeCodes.push(code));
    socket.on('message', (data: Buffer, binary: boolean) => {
      replies++;
      if (mode === 'fragments') {
        const third = Math.ceil(data.length / 3);
        socket.send(data.subarray(0, third), { binary, fin: false });
        socket.ping(Buffer.from('truth'));
        truth.pingsSent++;
        socket.send(data.subarray(third, 2 * third), { binary, fin: false });
        socket.send(data.subarray(2 * third), { binary, fin: true });
      } else if (mode === 'kind' && replies % 10 === 0) {
        truth.wrongSent++;
        socket.send(data, { binary: !binary });
      } else {
        socket.send(data, { binary });
        if (mode === 'close' && replies === 20) socket.close(1001);
      }
    });
  });
  return truth;
}

const truths: Truth[] = [];
after(async () => {
  for (const truth of truths) await truth.stop();
});
async function truth(mode: 'fragments' | 'kind' | 'close'): Promise<Truth> {
  const server = await truthServer(mode);
  truths.push(server);
  return server;
}

function bench(options: BenchOptions): Promise<BenchResult> {
  return withTimeout(runBench({ timeoutSeconds: 3, ...options }), 30_000, `bench ${JSON.stringify(options)}`);
}

for (const { name, engine, skip } of ENGINES) {
  describe(`bench over WebSocket and TLS (${name})`, { skip }, () => {
    it('takes a reply in fragments with pings between them as one reply, and answers every ping', async () => {
      const server = await truth('fragments');
      const result = await bench({
        engine,
        port: server.port,
        websocket: { path: '/' },
        connections: 3,
        messages: 600,
      });
      assert.equal(result.engine, engine);
      assert.equal(result.errors, 0, JSON.stringify(result.errorsByKind));
      assert.equal(result.messages, 600);
      // Every ping is answered (the last pongs may still be on their way when the run ends).
      await waitUntil(() => server.pongsHeard === server.pingsSent, 5000, 'a pong for every ping');
      assert.ok(server.pingsSent >= 600);
    });

    it('counts a reply of the wrong kind (binary for text) as corrupt, once each, and the rest as right', async () => {
      const server = await truth('kind');
      const result = await bench({
        engine,
        port: server.port,
        websocket: { path: '/', text: true },
        connections: 2,
        messages: 500,
      });
      assert.ok(server.wrongSent >= 45, `${server.wrongSent} wrong replies sent`);
      assert.equal(result.errorsByKind.corrupt, server.wrongSent);
      assert.equal(result.errors, result.errorsByKind.corrupt, JSON.stringify(result.errorsByKind));
      // A wrong reply answers its message, without a latency: -n counts the right ones.
      assert.equal(result.messages + result.errorsByKind.corrupt, 500);
      assert.ok(result.mismatchedBytes >= server.wrongSent * result.size);
    });

    it('closes cleanly (1000) at the end of a run, and counts a server that closes as closed', async () => {
      const clean = await truth('fragments');
      await bench({ engine, port: clean.port, websocket: { path: '/' }, connections: 3, messages: 30 });
      await waitUntil(() => clean.closeCodes.length >= 3, 5000, 'three closes');
      assert.deepEqual(clean.closeCodes, [1000, 1000, 1000]);

      const closing = await truth('close');
      const result = await bench({
        engine,
        port: closing.port,
        websocket: { path: '/' },
        connections: 2,
        durationSeconds: 0.5,
        warmupSeconds: 0,
      });
      assert.equal(result.errorsByKind.closed, 2, JSON.stringify(result.errorsByKind));
      assert.equal(result.messagesTotal, 40);
      // The server's 1001 came back to it, as RFC 6455 asks.
      await waitUntil(() => closing.closeCodes.length >= 2, 5000, 'two closes');
      assert.deepEqual(closing.closeCodes, [1001, 1001]);
    });

    it('says why an upgrade was refused: a web server without WebSocket, a plain echo server', async () => {
      const web = createHttpServer((_request, response) => response.writeHead(404).end());
      await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
      const plain = await startServer();
      try {
        await assert.rejects(
          bench({ engine, port: (web.address() as AddressInfo).port, websocket: { path: '/' }, messages: 10 }),
          /the server answered the WebSocket upgrade with HTTP 404/,
        );
        await assert.rejects(
          bench({ engine, port: plain.port, websocket: { path: '/' }, messages: 10 }),
          /the server did not answer in HTTP/,
        );
      } finally {
        web.close();
        await plain.close();
      }
    });

    it('over TLS and wss: verifies every reply, refuses an untrusted certificate, and trusts it with tlsCa', async () => {
      const tls = await loadTlsOptions({ selfSigned: true }, '127.0.0.1');
      for (const websocket of [undefined, { path: '/' }]) {
        const running = await startServer({ tls, ...(websocket !== undefined && { websocket: true }) });
        try {
          const target = { engine, port: running.port, tls: true, ...(websocket !== undefined && { websocket }) };
          await assert.rejects(bench({ ...target, messages: 10 }), /the server's certificate is not trusted/);
          const result = await bench({
            ...target,
            tlsCa: Buffer.from(String(tls.cert)),
            connections: 3,
            messages: 900,
          });
          assert.equal(result.engine, engine);
          assert.equal(result.errors, 0, JSON.stringify(result.errorsByKind));
          assert.equal(result.messages, 900);
          assert.equal(running.server.stats().bytesReceived, 900 * result.size);
        } finally {
          await running.close();
        }
      }
    });
  });
}
