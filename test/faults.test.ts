// Faults on purpose (--fault) seen by real clients, and runtime control (--admin) of readiness and faults.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { authorized } from '../src/ops/admin.js';
import { parseFaults } from '../src/server/faults.js';
import type { BenchResult } from '../src/bench/settings.js';
import { runCli, startServe } from './helpers/cli.js';
import { connectTo, readBytes, readToEnd } from './helpers/sockets.js';
import { waitUntil, withTimeout } from './helpers/timeout.js';

async function metricsUrl(server: { stderr(): string }): Promise<string> {
  await waitUntil(() => /metrics on (http:\/\/\S+)\/metrics/.test(server.stderr()), 5000, 'the metrics line');
  return /metrics on (http:\/\/\S+)\/metrics/.exec(server.stderr())![1]!;
}

async function request(url: string, init?: RequestInit): Promise<{ status: number; body: string }> {
  const response = await withTimeout(fetch(url, init), 5000, url);
  return { status: response.status, body: await response.text() };
}

describe('--fault', () => {
  it('reset: the client sees ECONNRESET at its first message, and it is counted', async () => {
    const server = await startServe(['--fault', 'reset=1', '--metrics-port', '0']);
    try {
      const socket = await connectTo(server.port);
      const error = withTimeout(once(socket, 'error') as Promise<[NodeJS.ErrnoException]>, 5000, 'the reset');
      socket.write('hello');
      const [err] = await error;
      assert.equal(err.code, 'ECONNRESET');
      const metrics = await request(`${await metricsUrl(server)}/metrics`);
      assert.match(metrics.body, /^echoplex_faults_total\{kind="reset"\} 1$/m);
      assert.match(server.stderr(), /fault on purpose: reset on 127\.0\.0\.1:\d+/);
    } finally {
      await server.stop();
    }
  });

  it('close and truncate: end of stream with nothing, or with part of the reply', async () => {
    for (const [fault, expected] of [
      ['close=1', ''],
      ['truncate=1', 'hel'],
    ] as const) {
      const server = await startServe(['--quiet', '--fault', fault]);
      try {
        const socket = await connectTo(server.port);
        const all = readToEnd(socket);
        socket.write('hello!');
        assert.equal((await all).toString(), expected, fault);
        socket.destroy();
      } finally {
        await server.stop();
      }
    }
  });

  it('stall: no reply for that long, then the reply and everything after it', async () => {
    const server = await startServe(['--quiet', '--fault', 'stall=1:0.6']);
    try {
      const socket = await connectTo(server.port);
      const started = performance.now();
      const reply = readBytes(socket, 10, 5000);
      socket.write('first');
      setTimeout(() => socket.write('later'), 100);
      assert.equal((await reply).toString(), 'firstlater');
      assert.ok(performance.now() - started >= 550, `answered after ${Math.round(performance.now() - started)} ms`);
      socket.destroy();
    } finally {
      await server.stop();
    }
  });

  it('delay: replies wait out the drawn delay', async () => {
    const server = await startServe(['--quiet', '--fault', 'delay=150ms:1']);
    try {
      const socket = await connectTo(server.port);
      const started = performance.now();
      const reply = readBytes(socket, 2, 5000);
      socket.write('hi');
      await reply;
      assert.ok(performance.now() - started >= 140);
      socket.destroy();
    } finally {
      await server.stop();
    }
  });

  it('drop over UDP: the same seed drops the same datagrams, another seed others', async () => {
    const lostWith = async (seed: string): Promise<number> => {
      const server = await startServe(['--quiet', '--udp', '--fault', 'drop=0.3', '--fault-seed', seed]);
      try {
        // One socket: its datagrams reach the server, and meet its draws, in the order sent. Each
        // lost one waits out the timeout, sixteen at a time.
        const run = await runCli(
          [
            'bench',
            '--udp',
            '--port',
            String(server.port),
            '-c',
            '1',
            '-p',
            '16',
            '-n',
            '200',
            '--timeout',
            '0.2',
            '--json',
          ],
          { ms: 60_000 },
        );
        return (JSON.parse(run.stdout) as BenchResult).datagrams!.lost;
      } finally {
        await server.stop();
      }
    };
    const first = await lostWith('42');
    assert.ok(first > 30 && first < 90, `${first} of 200 dropped at 0.3`);
    assert.equal(await lostWith('42'), first, 'the same seed, the same drops');
    assert.notEqual(await lostWith('7'), first);
  });

  it('bad specs are usage errors naming the part that is wrong', async () => {
    for (const [spec, message] of [
      ['bogus=1', /unknown fault "bogus"/],
      ['reset=2', /a fraction from 0 to 1/],
      ['stall=0.1', /stall takes FRACTION:SECONDS/],
      ['delay=10:5', /at "10:5"/],
    ] as const) {
      const result = await runCli(['serve', '--port', '0', '--fault', spec]);
      assert.equal(result.code, 2, spec);
      assert.match(result.stderr, message);
    }
    assert.throws(() => parseFaults(['reset=0.6 close=0.6']), /add up to 1\.2/);
  });
});

describe('--admin', () => {
  it('takes the instance out of service and back, and replaces the faults live', async () => {
    const server = await startServe(['--quiet', '--metrics-port', '0', '--admin']);
    try {
      const url = await metricsUrl(server);
      assert.equal((await request(`${url}/readyz`)).status, 200);
      assert.equal((await request(`${url}/admin/ready?state=false`, { method: 'POST' })).status, 200);
      assert.deepEqual(await request(`${url}/readyz`), { status: 503, body: 'not ready (out of service)\n' });
      // Out of service is not closed: clients are still served.
      const socket = await connectTo(server.port);
      const reply = readBytes(socket, 4);
      socket.write('ping');
      assert.equal((await reply).toString(), 'ping');
      socket.destroy();
      assert.equal((await request(`${url}/admin/ready?state=true`, { method: 'POST' })).status, 200);
      assert.equal((await request(`${url}/readyz`)).status, 200);
      assert.equal((await request(`${url}/admin/ready?state=maybe`, { method: 'POST' })).status, 400);

      assert.deepEqual(await request(`${url}/admin/faults`), { status: 200, body: 'none\n' });
      assert.deepEqual(await request(`${url}/admin/faults`, { method: 'POST', body: 'close=1' }), {
        status: 200,
        body: 'close=1\n',
      });
      const closed = await connectTo(server.port);
      const nothing = readToEnd(closed);
      closed.write('x');
      assert.equal((await nothing).length, 0, 'the new fault applies to the next connection');
      closed.destroy();
      const bad = await request(`${url}/admin/faults`, { method: 'POST', body: 'melt=1' });
      assert.equal(bad.status, 400);
      assert.match(bad.body, /unknown fault "melt"/);
    } finally {
      await server.stop();
    }
  });

  it('is not there without --admin (404), and refuses other hosts without the token (403)', async () => {
    const server = await startServe(['--quiet', '--metrics-port', '0']);
    try {
      const url = await metricsUrl(server);
      assert.equal((await request(`${url}/admin/ready?state=false`, { method: 'POST' })).status, 404);
      assert.equal((await request(`${url}/readyz`)).status, 200);
    } finally {
      await server.stop();
    }
    const from = (remoteAddress: string, authorization?: string) => ({
      socket: { remoteAddress },
      headers: authorization === undefined ? {} : { authorization },
    });
    assert.equal(authorized(from('127.0.0.1'), undefined), true);
    assert.equal(
      authorized(from('::1'), 'secret'),
      false,
      'a token is needed from loopback too (sidecars, port-forward)',
    );
    assert.equal(authorized(from('127.0.0.1', 'Bearer wrong!'), 'secret'), false);
    assert.equal(authorized(from('::1', 'Bearer secret'), 'secret'), true);
    assert.equal(authorized(from('10.1.2.3'), undefined), false, 'no token configured: other hosts are refused');
    assert.equal(authorized(from('10.1.2.3'), 'secret'), false);
    assert.equal(authorized(from('10.1.2.3', 'Bearer wrong!'), 'secret'), false);
    assert.equal(authorized(from('10.1.2.3', 'Bearer secret'), 'secret'), true);
    const refused = await runCli(['serve', '--port', '0', '--admin']);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /--admin serves on the metrics port/);
  });
});

/** The first line the server sends, parsed, and the rest it sent with it. */
async function helloOf(socket: Duplex): Promise<{ hello: Record<string, unknown>; rest: Buffer }> {
  let received = Buffer.alloc(0);
  return withTimeout(
    new Promise((resolve) => {
      const onData = (chunk: Buffer) => {
        received = Buffer.concat([received, chunk]);
        const end = received.indexOf(0x0a);
        if (end < 0) return;
        socket.off('data', onData);
        resolve({
          hello: JSON.parse(received.subarray(0, end).toString()) as Record<string, unknown>,
          rest: received.subarray(end + 1),
        });
      };
      socket.on('data', onData);
    }),
    5000,
    'the hello line',
  );
}

describe('--hello', () => {
  it('opens each stream connection with who answered and whom it saw, after a PROXY header', async () => {
    const server = await startServe(['--quiet', '--hello', '--instance', 'edge-7', '--proxy-protocol']);
    try {
      const socket = await connectTo(server.port);
      const hello = helloOf(socket);
      socket.write('PROXY TCP4 203.0.113.9 127.0.0.1 40001 1234\r\nping');
      const { hello: line, rest } = await hello;
      assert.deepEqual(line, {
        instance: 'edge-7',
        worker: null,
        local: `127.0.0.1:${server.port}`,
        client: '203.0.113.9:40001',
      });
      const echo = rest.length >= 4 ? rest : Buffer.concat([rest, await readBytes(socket, 4 - rest.length)]);
      assert.equal(echo.toString(), 'ping', 'then the echo, as without --hello');
      socket.destroy();
    } finally {
      await server.stop();
    }
  });

  it('over TLS, says the protocol, cipher and name the client asked for', async () => {
    const server = await startServe(['--quiet', '--hello', '--tls-self-signed']);
    try {
      const socket = tls.connect({
        host: '127.0.0.1',
        port: server.port,
        servername: 'localhost',
        rejectUnauthorized: false,
      });
      socket.on('error', () => {});
      const { hello } = await helloOf(socket);
      assert.match(String(hello['instance']), /:\d+$/, 'hostname:pid by default');
      const details = hello['tls'] as Record<string, unknown>;
      assert.equal(details['protocol'], 'TLSv1.3');
      assert.equal(typeof details['cipher'], 'string');
      assert.equal(details['sni'], 'localhost');
      assert.equal(details['clientSubject'], null);
      socket.destroy();
    } finally {
      await server.stop();
    }
  });
});
