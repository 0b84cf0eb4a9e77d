// The bench and the client over every transport the server offers: UDP, Unix sockets, TLS, PROXY.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runBench } from '../src/bench/index.js';
import { createEchoServer, loadTlsOptions, type EchoServer } from '../src/index.js';
import { runCli } from './helpers/cli.js';
import { startServer, type RunningServer } from './helpers/sockets.js';

const SHORT = { connections: 4, durationSeconds: 0.5, warmupSeconds: 0 } as const;

function assertClean(result: { messages: number; errors: number; mismatchedBytes: number }): void {
  assert.ok(result.messages > 10, `only ${result.messages} messages`);
  assert.equal(result.errors, 0);
  assert.equal(result.mismatchedBytes, 0);
}

describe('bench and client over UDP', () => {
  let running: RunningServer;
  before(async () => (running = await startServer({ udp: true, transform: 'upper' })));
  after(() => running.close());

  it('bench --udp verifies every datagram, pipelined, up to the largest size', async () => {
    const small = await runBench({ port: running.port, udp: true, expect: 'upper', pipeline: 8, ...SHORT });
    assertClean(small);
    assert.equal(small.target, `udp://127.0.0.1:${running.port}`);
    const large = await runBench({ port: running.port, udp: true, expect: 'upper', size: 65_507, ...SHORT });
    assertClean(large);
    assert.equal(running.server.stats().messages.udp >= small.messagesTotal + large.messagesTotal, true);
  });

  it('bench refuses a UDP size over 65,507 bytes', async () => {
    const result = await runCli(['bench', '--udp', '--port', String(running.port), '--size', '65508']);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /at most 65507 bytes/);
  });

  it('client --udp sends each piped line as a datagram', async () => {
    const result = await runCli(['client', '--udp', '--port', String(running.port)], { input: 'hello\nworld\n' });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'HELLO\nWORLD\n');
  });
});

describe('bench and client over a Unix socket', () => {
  const dir = mkdtempSync(join(tmpdir(), 'echoplex-transports-'));
  const path = join(dir, 'echo.sock');
  let server: EchoServer;
  before(async () => {
    server = createEchoServer({ port: [], unix: path, proxyProtocol: false });
    await server.listen();
  });
  after(async () => {
    await server.close({ timeoutMs: 1000 });
    rmSync(dir, { recursive: true, force: true });
  });

  it('bench --unix', async () => {
    const result = await runBench({ unix: path, ...SHORT });
    assertClean(result);
    assert.equal(result.target, `unix://${path}`);
  });

  it('client --unix', async () => {
    const result = await runCli(['client', '--unix', path], { input: 'over the socket\n' });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'over the socket\n');
  });
});

describe('bench and client over TLS', () => {
  let running: RunningServer;
  before(async () => (running = await startServer({ tls: await loadTlsOptions({ selfSigned: true }, '127.0.0.1') })));
  after(() => running.close());

  it('bench --tls --tls-insecure verifies every byte', async () => {
    const result = await runBench({ port: running.port, tls: true, tlsInsecure: true, pipeline: 4, ...SHORT });
    assertClean(result);
    assert.equal(result.target, `tls://127.0.0.1:${running.port}`);
  });

  it('client --tls refuses a self-signed server, and says how to accept it', async () => {
    const refused = await runCli(['client', '--tls', '--port', String(running.port)], { input: 'hi\n' });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /not trusted.*--tls-insecure/);
    const accepted = await runCli(['client', '--tls-insecure', '--port', String(running.port)], { input: 'secret\n' });
    assert.equal(accepted.code, 0, accepted.stderr);
    assert.equal(accepted.stdout, 'secret\n');
  });

  it('ping --tls stops at a certificate it cannot trust, and says how to accept it', async () => {
    // Unlike a refused port, an untrusted certificate will be untrusted on the next try too.
    const refused = await runCli(['ping', '--tls', '--port', String(running.port), '-c', '3', '-i', '0.05']);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /cannot connect to tls:\/\/127\.0\.0\.1:\d+: the server's certificate is not trusted.*--tls-insecure/,
    );
    assert.doesNotMatch(refused.stdout, /seq=/);
    const accepted = await runCli(['ping', '--tls-insecure', '--port', String(running.port), '-c', '1']);
    assert.equal(accepted.code, 0, accepted.stderr);
  });
});

describe('TLS flags against a plain server', () => {
  it('client, ping and bench say the server does not answer in TLS, and exit 1', async () => {
    // The echo server answers the TLS hello with the hello itself.
    const plain = await startServer();
    try {
      const port = String(plain.port);
      for (const args of [
        ['client', '--tls-insecure', '--port', port],
        ['bench', '--tls-insecure', '--port', port, '-n', '10'],
      ]) {
        const result = await runCli(args, { input: 'hi\n' });
        assert.equal(result.code, 1, args[0]);
        assert.match(
          result.stderr,
          /cannot connect to .*: the server did not answer in TLS \(unexpected message\): is it plain TCP\?/,
          args[0],
        );
      }
      const ping = await runCli(['ping', '--tls-insecure', '--port', port, '-c', '1']);
      assert.equal(ping.code, 1);
      assert.match(ping.stdout, /^seq=1 cannot connect: not TLS \(ERR_SSL_UNEXPECTED_MESSAGE\)$/m);
    } finally {
      await plain.close();
    }
  });
});

describe('bench --proxy-protocol', () => {
  for (const version of [1, 2] as const) {
    it(`opens each connection with a v${version} header the server accepts`, async () => {
      const running = await startServer({ proxyProtocol: true });
      try {
        const result = await runBench({ port: running.port, proxyProtocol: version, ...SHORT });
        assertClean(result);
        const stats = running.server.stats();
        assert.equal(stats.errors.proxy_header, 0);
        assert.equal(stats.connectionsTotal, SHORT.connections);
      } finally {
        await running.close();
      }
    });
  }
});
