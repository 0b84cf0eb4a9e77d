// WebSocket from the command line: `serve --ws` (or ECHOPLEX_WS), and the client, ping and bench
// given ws:// and wss:// URLs, each checked against a real server process.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { WebSocketServer } from 'ws';
import { runBench } from '../src/bench/index.js';
import { runCli, startServe, type ServeProcess } from './helpers/cli.js';
import { withTimeout } from './helpers/timeout.js';

interface BenchJson {
  target: string;
  messages: number;
  errors: number;
  errorsByKind: Record<string, number>;
  mismatchedBytes: number;
}

describe('WebSocket on the command line', () => {
  let server: ServeProcess;
  let url = '';
  before(async () => {
    // From the environment, as a container would set it.
    server = await startServe(['--transform', 'upper', '--quiet'], { env: { ECHOPLEX_WS: '1' } });
    url = `ws://127.0.0.1:${server.port}`;
    assert.match(server.stdout(), /listening on ws:\/\/127\.0\.0\.1:\d+ .*WebSocket/);
  });
  after(async () => {
    await server.stop();
  });

  it('bench verifies every message, binary by default and text with --ws-text', async () => {
    for (const extra of [[], ['--ws-text', '--pipeline', '4']]) {
      const run = await runCli(
        ['bench', `${url}/bench`, '--expect', 'upper', '--connections', '4', '--messages', '2000', '--json', ...extra],
        { ms: 30_000 },
      );
      assert.equal(run.code, 0, run.stderr);
      const result = JSON.parse(run.stdout) as BenchJson;
      assert.equal(result.target, `${url}/bench`);
      assert.ok(result.messages >= 2000);
      assert.equal(result.errors, 0);
    }
  });

  it('bench fails when the replies are not what it expects', async () => {
    const run = await runCli(['bench', url, '--expect', 'echo', '--connections', '2', '--messages', '200', '--json'], {
      ms: 30_000,
    });
    assert.equal(run.code, 1);
    const result = JSON.parse(run.stdout) as BenchJson;
    assert.ok(result.errorsByKind['corrupt']! > 0, JSON.stringify(result.errorsByKind));
    assert.ok(result.mismatchedBytes > 0);
  });

  it('bench measures handshakes with --messages-per-connection', async () => {
    const run = await runCli(
      [
        'bench',
        url,
        '--expect',
        'upper',
        '--connections',
        '4',
        '--messages',
        '400',
        '--messages-per-connection',
        '10',
        '--json',
      ],
      { ms: 30_000 },
    );
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as BenchJson & {
      connectsPerSecond: number | null;
      connectLatencyUs: { p50: number } | null;
    };
    assert.equal(result.errors, 0);
    // 400 messages, 10 per connection: about 40 handshakes, timed.
    assert.ok(result.connectsPerSecond !== null && result.connectsPerSecond > 0, JSON.stringify(result));
    assert.ok(result.connectLatencyUs !== null && result.connectLatencyUs.p50 > 0);
  });

  it('bench runs the open loop over WebSocket', async () => {
    const run = await runCli(
      [
        'bench',
        url,
        '--expect',
        'upper',
        '--connections',
        '4',
        '--rate',
        '2000',
        '--duration',
        '1',
        '--warmup',
        '0',
        '--json',
      ],
      { ms: 30_000 },
    );
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as BenchJson;
    assert.equal(result.errors, 0);
    assert.ok(result.messages >= 1500, `${result.messages} messages`);
  });

  it('ping times and checks each message', async () => {
    const run = await runCli(['ping', `${url}/ping`, '-c', '3', '-i', '0.05', '--expect', 'upper']);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /3 sent, 3 received, 0% lost, 0 mismatched/);
  });

  it('the client sends each line as a text message and prints each reply', async () => {
    const run = await runCli(['client', url], { input: 'first line\nsecond\n' });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'FIRST LINE\nSECOND\n');
  });

  it('names the ws:// endpoint it could not listen on', async () => {
    const busy = await runCli(['serve', '--ws', '--port', String(server.port)]);
    assert.equal(busy.code, 1);
    assert.match(
      busy.stderr,
      new RegExp(`cannot listen on ws://127\\.0\\.0\\.1:${server.port}: address already in use`),
    );
  });

  it('a ws:// URL to a plain echo server or a plain web server says which, and exits 1', async () => {
    const plain = await startServe(['--quiet']);
    // A web server with no WebSocket: it answers the upgrade with 404.
    const { createServer } = await import('node:http');
    const web = createServer((_request, response) => response.writeHead(404).end());
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    try {
      const echoUrl = `ws://127.0.0.1:${plain.port}/`;
      for (const args of [
        ['client', echoUrl],
        ['bench', echoUrl, '-n', '10'],
      ]) {
        const result = await runCli(args, { input: 'hi\n' });
        assert.equal(result.code, 1, args[0]);
        assert.match(
          result.stderr,
          /: the server did not answer in HTTP \(HPE_INVALID_CONSTANT\): is it plain TCP, not WebSocket\?/,
          args[0],
        );
      }
      const ping = await runCli(['ping', echoUrl, '-c', '1']);
      assert.match(
        ping.stdout,
        /^seq=1 cannot connect: not HTTP \(a plain TCP port, not WebSocket\?\) \(HPE_INVALID_CONSTANT\)$/m,
      );
      const webUrl = `ws://127.0.0.1:${(web.address() as AddressInfo).port}/`;
      const client = await runCli(['client', webUrl], { input: 'hi\n' });
      assert.equal(client.code, 1);
      assert.match(
        client.stderr,
        /: the server answered the WebSocket upgrade with HTTP 404: no WebSocket at that URL/,
      );
    } finally {
      web.close();
      await plain.stop();
    }
  });

  it('turns away WebSocket flags without a WebSocket URL', async () => {
    const bench = await runCli(['bench', '--port', String(server.port), '--ws-text']);
    assert.equal(bench.code, 2);
    assert.match(bench.stderr, /--ws-text applies to a ws:\/\/ or wss:\/\/ target URL/);
    const client = await runCli(['client', '--port', String(server.port), '--ws-binary'], { input: '' });
    assert.equal(client.code, 2);
    const plainWithTls = await runCli(['ping', url, '--tls-insecure', '-c', '1']);
    assert.equal(plainWithTls.code, 2);
    assert.match(plainWithTls.stderr, /are for wss:\/\/ URLs/);
  });
});

describe('the bench checks the shape of each WebSocket reply', () => {
  // Servers that send the right bytes the wrong way: the bench must not count them as echoes.
  const wrongServers: Array<
    [string, (reply: (data: Buffer, binary: boolean) => void, data: Buffer, binary: boolean) => void]
  > = [
    ['as the other kind of message', (reply, data, binary) => reply(data, !binary)],
    [
      'split into two messages',
      (reply, data, binary) => {
        reply(data.subarray(0, 10), binary);
        reply(data.subarray(10), binary);
      },
    ],
  ];
  for (const [how, answer] of wrongServers) {
    it(`counts replies ${how} as corrupt`, async () => {
      const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
      await withTimeout(once(server, 'listening'), 5000, 'the test server');
      server.on('connection', (ws) =>
        ws.on('message', (data: Buffer, binary: boolean) =>
          answer((bytes, kind) => ws.send(bytes, { binary: kind }), data, binary),
        ),
      );
      try {
        const { port } = server.address() as AddressInfo;
        const result = await runBench({
          port,
          websocket: { path: '/', text: true },
          connections: 2,
          messages: 50,
          engine: 'portable',
        });
        assert.ok(result.errorsByKind.corrupt > 0, JSON.stringify(result.errorsByKind));
      } finally {
        for (const client of server.clients) client.terminate();
        server.close();
      }
    });
  }
});

describe('serve --ws usage', () => {
  it('turns away line framing: a WebSocket message is already the unit', async () => {
    const result = await runCli(['serve', '--ws', '--framing', 'line', '--port', '0']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /line framing does not apply/);
  });

  it('turns away a zero --max-message, which would otherwise mean no limit at all', async () => {
    const result = await runCli(['serve', '--ws', '--max-message', '0', '--port', '0']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--max-message.*must be at least 1 byte/);
  });
});

describe('wss on the command line', () => {
  it('serves wss with a self-signed certificate; bench and ping reach it with --tls-insecure', async () => {
    const server = await startServe(['--ws', '--tls-self-signed', '--quiet']);
    try {
      assert.match(server.stdout(), /listening on wss:\/\//);
      const target = `wss://127.0.0.1:${server.port}/`;
      const bench = await runCli(
        ['bench', target, '--tls-insecure', '--connections', '2', '--messages', '500', '--json'],
        { ms: 30_000 },
      );
      assert.equal(bench.code, 0, bench.stderr);
      assert.equal((JSON.parse(bench.stdout) as BenchJson).errors, 0);
      const refused = await runCli(['ping', target, '-c', '1']);
      assert.equal(refused.code, 1, 'an unverified certificate is refused without --tls-insecure');
      const client = await runCli(['client', target, '--tls-insecure'], { input: 'secure\n' });
      assert.equal(client.stdout, 'secure\n');
    } finally {
      await server.stop();
    }
  });
});
