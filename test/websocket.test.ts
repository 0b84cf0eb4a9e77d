// The server's --ws mode: echoes per message with ws's own client, an independent client
// (Debian's python3-websockets) for fragments, pings and protocol errors, wss, limits, shutdown.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';
import { WebSocket, type ClientOptions } from 'ws';
import { loadTlsOptions, type EchoServerOptions } from '../src/index.js';
import { serverMetricsSource } from '../src/ops/metrics.js';
import { recordingLogger } from './helpers/logs.js';
import { forEachEngine } from './helpers/engines.js';
import { findProgram, skipUnless, suite } from './helpers/peers.js';
import { startServer, type RunningServer } from './helpers/sockets.js';
import { delay, waitUntil, withTimeout } from './helpers/timeout.js';

/** A message as received: its bytes as text, and whether it came as binary. */
interface Message {
  text: string;
  binary: boolean;
}

/** A connected ws client that queues every message it receives. */
class Peer {
  readonly messages: Message[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, binary: boolean) => this.messages.push({ text: data.toString(), binary }));
    ws.on('error', () => {});
    this.closed = new Promise((resolve) =>
      ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() })),
    );
  }

  static async open(url: string, options: ClientOptions = {}): Promise<Peer> {
    const ws = new WebSocket(url, options);
    const peer = new Peer(ws);
    await withTimeout(once(ws, 'open'), 5000, `the WebSocket handshake with ${url}`);
    return peer;
  }

  async next(count = 1): Promise<Message[]> {
    await waitUntil(() => this.messages.length >= count, 5000, `${count} messages`);
    return this.messages.splice(0, count);
  }

  close(): Promise<{ code: number; reason: string }> {
    this.ws.close(1000);
    return withTimeout(this.closed, 5000, 'the closing handshake');
  }
}

async function startWs(options: EchoServerOptions = {}): Promise<RunningServer & { url: string }> {
  const running = await startServer({ websocket: true, ...options });
  return { ...running, url: running.server.addresses[0]!.url };
}

forEachEngine('WebSocket server', () => {
  it('answers each message with one of the same kind, through the transform', async () => {
    const running = await startWs({ transform: 'upper' });
    try {
      assert.match(running.url, /^ws:\/\/127\.0\.0\.1:\d+$/);
      const peer = await Peer.open(`${running.url}/any/path?x=1`);
      peer.ws.send('hello wörld');
      peer.ws.send(Buffer.from('binary\x00bytes'));
      peer.ws.send('');
      assert.deepEqual(await peer.next(3), [
        { text: 'HELLO WöRLD', binary: false },
        { text: 'BINARY\x00BYTES', binary: true },
        { text: '', binary: false },
      ]);
      assert.equal((await peer.close()).code, 1000);
      const stats = running.server.stats();
      assert.equal(stats.messages.ws, 3);
      assert.equal(stats.messages.tcp, 0);
      await waitUntil(() => running.server.stats().wsCloses['1000'] === 1, 2000, 'the close to be counted');
    } finally {
      await running.close();
    }
  });

  it('puts the prefix before every message, and a module-style transform sees whole messages', async () => {
    const running = await startWs({
      prefix: '> ',
      transform: (message) => Buffer.from(`${message.length}:${message.toString()}`),
    });
    try {
      const peer = await Peer.open(running.url);
      // 100 KiB comes back as one message whatever the TCP segments were.
      peer.ws.send('x'.repeat(100 * 1024));
      peer.ws.send('short');
      const [big, short] = await peer.next(2);
      assert.equal(big!.text, `> ${100 * 1024}:${'x'.repeat(100 * 1024)}`);
      assert.equal(short!.text, '> 5:short');
      await peer.close();
    } finally {
      await running.close();
    }
  });

  it('a transform that throws closes only its own connection, with 1011', async () => {
    const running = await startWs({
      transform: (message) =>
        message.toString() === 'boom'
          ? (() => {
              throw new Error('boom');
            })()
          : message,
    });
    try {
      const victim = await Peer.open(running.url);
      const bystander = await Peer.open(running.url);
      victim.ws.send('boom');
      assert.equal((await withTimeout(victim.closed, 5000, 'the failing connection to close')).code, 1011);
      bystander.ws.send('still here');
      assert.deepEqual(await bystander.next(), [{ text: 'still here', binary: false }]);
      assert.equal(running.server.stats().errors.transform, 1);
      await bystander.close();
    } finally {
      await running.close();
    }
  });

  it('serves a self-contained echo page to a plain GET, and 405 to other methods', async () => {
    const running = await startWs();
    try {
      const page = await fetch(`http://127.0.0.1:${running.port}/echo`);
      assert.equal(page.status, 200);
      assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
      const html = await page.text();
      assert.match(html, /new WebSocket\(/);
      assert.doesNotMatch(html, /(src|href)="https?:/, 'no external assets');
      const post = await fetch(`http://127.0.0.1:${running.port}/`, { method: 'POST', body: 'x' });
      assert.equal(post.status, 405);
      // A bad handshake is refused, and the server goes on.
      const bad = net.connect({ host: '127.0.0.1', port: running.port });
      bad.end('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      const [response] = (await withTimeout(once(bad, 'data'), 5000, 'the answer to a handshake without a key')) as [
        Buffer,
      ];
      assert.match(response.toString(), /^HTTP\/1\.1 400 /);
      bad.destroy();
      const peer = await Peer.open(running.url);
      peer.ws.send('ok');
      assert.deepEqual(await peer.next(), [{ text: 'ok', binary: false }]);
      await peer.close();
    } finally {
      await running.close();
    }
  });

  it('closes a connection that never sends a whole HTTP request', async () => {
    const running = await startWs({ websocket: { requestTimeoutMs: 300 } });
    try {
      const slow = net.connect({ host: '127.0.0.1', port: running.port });
      slow.on('error', () => {});
      await withTimeout(once(slow, 'connect'), 5000, 'connect');
      slow.write('GET / HTTP/1.1\r\nHost: x\r\n');
      await withTimeout(once(slow, 'close'), 5000, 'the server to close a request that never ends');
      await waitUntil(() => running.server.stats().connectionsActive === 0, 2000, 'the connection to be gone');
      // A client that finishes its request in time is served.
      const peer = await Peer.open(running.url);
      await delay(500);
      peer.ws.send('in time');
      assert.deepEqual(await peer.next(), [{ text: 'in time', binary: false }]);
      await peer.close();
    } finally {
      await running.close();
    }
  });

  it('closes a message over --max-message with 1009, and only that connection', async () => {
    const logger = recordingLogger('info');
    const running = await startWs({ websocket: { maxMessage: 1000 }, logger });
    try {
      const big = await Peer.open(running.url);
      const other = await Peer.open(running.url);
      big.ws.send(Buffer.alloc(1001));
      assert.equal((await withTimeout(big.closed, 5000, 'the 1009 close')).code, 1009);
      other.ws.send(Buffer.alloc(1000, 1));
      assert.equal((await other.next())[0]!.text.length, 1000);
      await other.close();
      await waitUntil(() => running.server.stats().wsCloses['1009'] === 1, 2000, '1009 to be counted');
      assert.equal(running.server.stats().errors.websocket, 1);
      assert.ok(
        logger.messages().some((line) => /closed with code 1009/.test(line)),
        logger.messages().join('\n'),
      );
    } finally {
      await running.close();
    }
  });

  it('graceful shutdown sends 1001 after the echoes still waiting', async () => {
    const running = await startWs({ delayMs: 300 });
    const peer = await Peer.open(running.url);
    peer.ws.send('one');
    peer.ws.send('two');
    await waitUntil(() => running.server.stats().messages.ws === 2, 2000, 'both messages to arrive');
    const closing = running.server.close({ timeoutMs: 5000 });
    const { code } = await withTimeout(peer.closed, 5000, 'the going-away close');
    assert.equal(code, 1001);
    assert.deepEqual(
      peer.messages.map((m) => m.text),
      ['one', 'two'],
    );
    assert.equal((await withTimeout(closing, 5000, 'the server to close')).forced, 0);
  });

  it('stops reading a client that does not read, past --max-buffered', async () => {
    const running = await startWs({ maxBuffered: 64 * 1024 });
    const socket = net.connect({ host: '127.0.0.1', port: running.port });
    try {
      await withTimeout(once(socket, 'connect'), 5000, 'connect');
      socket.write(
        'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      );
      await withTimeout(once(socket, 'data'), 5000, 'the 101 response');
      socket.pause();
      // Masked binary frames (a zero mask leaves the payload as is), sent while never reading.
      const payload = Buffer.alloc(16 * 1024, 0x61);
      const frame = Buffer.concat([
        Buffer.from([0x82, 0xfe, payload.length >> 8, payload.length & 0xff, 0, 0, 0, 0]),
        payload,
      ]);
      for (let i = 0; i < 2000 && socket.writableLength < 8 * 1024 * 1024; i++) socket.write(frame);
      await waitUntil(() => running.server.stats().backpressurePauses > 0, 5000, 'the server to stop reading');
      await delay(300);
      const received = running.server.stats().bytesReceived;
      await delay(300);
      assert.equal(
        running.server.stats().bytesReceived,
        received,
        'nothing more is read while the client does not read',
      );
    } finally {
      socket.destroy();
      await running.close();
    }
  });

  it('pings count as traffic for --idle-timeout', async () => {
    const running = await startWs({ idleTimeoutMs: 400 });
    try {
      const pinging = await Peer.open(running.url);
      const silent = await Peer.open(running.url);
      const pinger = setInterval(() => pinging.ws.ping(), 80);
      // Told why: going away, not a dropped connection (1006).
      const { code } = await withTimeout(silent.closed, 3000, 'the silent connection to time out');
      assert.equal(code, 1001);
      await delay(400);
      clearInterval(pinger);
      assert.equal(pinging.ws.readyState, WebSocket.OPEN, 'the pinging connection is still open');
      await pinging.close();
      assert.equal(running.server.stats().idleTimeouts, 1);
    } finally {
      await running.close();
    }
  });

  it('applies --max-connections: one more client is turned away', async () => {
    const running = await startWs({ maxConnections: 1 });
    try {
      const first = await Peer.open(running.url);
      await assert.rejects(Peer.open(running.url));
      assert.equal(running.server.stats().rejected.max_connections, 1);
      await first.close();
    } finally {
      await running.close();
    }
  });

  it('speaks wss with TLS, and opens with the hello message', async () => {
    const tls = await loadTlsOptions({ selfSigned: true }, '127.0.0.1');
    const running = await startWs({ tls, hello: true, instance: 'ws-test' });
    try {
      assert.match(running.url, /^wss:\/\//);
      const peer = await Peer.open(running.url, { rejectUnauthorized: false });
      const [hello] = await peer.next();
      const fields = JSON.parse(hello!.text) as { instance: string; tls: { protocol: string } };
      assert.equal(fields.instance, 'ws-test');
      assert.match(fields.tls.protocol, /^TLSv1\.[23]$/);
      peer.ws.send(Buffer.from([1, 2, 3]));
      assert.deepEqual(await peer.next(), [{ text: '\x01\x02\x03', binary: true }]);
      await peer.close();
      assert.equal(running.server.stats().messages.wss, 1);
    } finally {
      await running.close();
    }
  });

  it('negotiates permessage-deflate only with --ws-deflate', async () => {
    for (const deflate of [false, true]) {
      const running = await startWs({ websocket: { deflate } });
      try {
        const peer = await Peer.open(running.url, { perMessageDeflate: true });
        assert.equal(
          peer.ws.extensions.includes('permessage-deflate'),
          deflate,
          `deflate ${deflate}: ${peer.ws.extensions}`,
        );
        peer.ws.send('a'.repeat(10_000));
        assert.equal((await peer.next())[0]!.text, 'a'.repeat(10_000));
        await peer.close();
      } finally {
        await running.close();
      }
    }
  });

  it('counts messages by transport and closes by code in the metrics', async () => {
    const running = await startWs();
    try {
      const peer = await Peer.open(running.url);
      peer.ws.send('a');
      peer.ws.send('b');
      await peer.next(2);
      await peer.close();
      await waitUntil(() => running.server.stats().wsCloses['1000'] === 1, 2000, 'the close to be counted');
      const text = await serverMetricsSource(running.server).metrics();
      assert.match(text, /^echoplex_messages_total\{transport="ws"\} 2$/m);
      assert.match(text, /^echoplex_ws_closes_total\{code="1000"\} 1$/m);
    } finally {
      await running.close();
    }
  });
});

const PYTHON = findProgram(['/usr/bin/python3'], ['-c', 'import websockets']);
const PEER = fileURLToPath(new URL('./fixtures/ws-peer.py', import.meta.url));

suite('WebSocket server with python3-websockets', skipUnless(PYTHON, 'python3-websockets', 'python3-websockets'), () =>
  forEachEngine('WebSocket server with python3-websockets', () => {
    it('reassembles fragmented text and binary messages, and keeps their kinds', async () => {
      const running = await startWs({ transform: 'upper' });
      try {
        const result = await pythonAsync(running.url, 'fragmented');
        assert.deepEqual(result, {
          text: 'FRAGMENTED TéXT',
          textIsStr: true,
          binary: [0, 1, 255, 66, 73, 78, 65, 82, 89],
          binaryIsBytes: true,
        });
      } finally {
        await running.close();
      }
    });

    it('answers pings with pongs', async () => {
      const running = await startWs();
      try {
        assert.deepEqual(await pythonAsync(running.url, 'ping'), { pong: true, echo: 'after ping' });
      } finally {
        await running.close();
      }
    });

    it('closes an oversized message with 1009 and an unmasked frame with 1002, harming no one else', async () => {
      const running = await startWs({ websocket: { maxMessage: 4096 } });
      try {
        const bystander = await Peer.open(running.url);
        assert.deepEqual(await pythonAsync(running.url, 'oversize', '5000'), { code: 1009 });
        assert.deepEqual(await pythonAsync(running.url, 'unmasked'), { code: 1002 });
        bystander.ws.send('fine');
        assert.deepEqual(await bystander.next(), [{ text: 'fine', binary: false }]);
        await bystander.close();
        await waitUntil(() => running.server.stats().wsCloses['1002'] === 1, 2000, '1002 to be counted');
        assert.equal(running.server.stats().wsCloses['1009'], 1);
      } finally {
        await running.close();
      }
    });

    it('answers a ping between the fragments of a message, and echoes the message whole', async () => {
      const running = await startWs();
      try {
        assert.deepEqual(await pythonAsync(running.url, 'interleaved'), { echo: 'interleaved' });
      } finally {
        await running.close();
      }
    });

    it('checks UTF-8 across fragments: a character split in two is text, a bad sequence split in two is 1007', async () => {
      const running = await startWs();
      try {
        assert.deepEqual(await pythonAsync(running.url, 'utf8-split'), { echo: 'caf\u00e9!' });
        assert.deepEqual(await pythonAsync(running.url, 'utf8-split-invalid'), { code: 1007 });
        await waitUntil(() => running.server.stats().wsCloses['1007'] === 1, 2000, '1007 to be counted');
        assert.equal(running.server.stats().errors.websocket, 1);
      } finally {
        await running.close();
      }
    });

    it('a client that drops TCP without a close frame is counted as 1006, and the server goes on', async () => {
      const running = await startWs();
      try {
        assert.deepEqual(await pythonAsync(running.url, 'abrupt'), { echo: 'before the cut' });
        await waitUntil(() => running.server.stats().wsCloses['1006'] === 1, 2000, '1006 to be counted');
        assert.equal(running.server.stats().connectionsActive, 0);
        assert.deepEqual(await pythonAsync(running.url, 'ping'), { pong: true, echo: 'after ping' });
      } finally {
        await running.close();
      }
    });
  }),
);

/**
 * Runs one scenario of the independent client and returns what it printed; asynchronously,
 * since the server under test runs on this process's event loop.
 */
async function pythonAsync(url: string, scenario: string, ...args: string[]): Promise<Record<string, unknown>> {
  const child = spawn(PYTHON!, [PEER, url, scenario, ...args]);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const [code] = (await withTimeout(once(child, 'exit'), 20_000, `ws-peer.py ${scenario}`)) as [number | null];
  assert.equal(code, 0, `ws-peer.py ${scenario}: ${stderr}`);
  return JSON.parse(stdout) as Record<string, unknown>;
}
