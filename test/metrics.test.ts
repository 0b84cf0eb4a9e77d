// /metrics, /healthz and /readyz against a real server, with counters checked after a known exchange.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { describe, it } from 'node:test';
import { serverMetricsSource, startMetricsServer } from '../src/ops/metrics.js';
import { runCli, startServe } from './helpers/cli.js';
import { connectTo, roundTrip, startServer } from './helpers/sockets.js';
import { waitUntil, withTimeout } from './helpers/timeout.js';

const packageVersion = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

async function get(url: string): Promise<{ status: number; body: string }> {
  const response = await withTimeout(fetch(url), 5000, `GET ${url}`);
  return { status: response.status, body: await response.text() };
}

function metric(body: string, name: string): number {
  const match = new RegExp(`^${name.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(body);
  assert.ok(match, `${name} missing from:\n${body.slice(0, 2000)}`);
  return Number(match[1]);
}

describe('metrics and probes', () => {
  it('counts a known exchange exactly, and flips /readyz to 503 when shutdown begins', async () => {
    const running = await startServer({ maxConnections: 2 });
    const metrics = await startMetricsServer(serverMetricsSource(running.server), { port: 0 });
    try {
      const payload = randomBytes(12_345);
      assert.deepEqual(await roundTrip(running.port, payload), payload);
      const held = await Promise.all([connectTo(running.port), connectTo(running.port)]);
      const extra = await connectTo(running.port);
      await waitUntil(() => running.server.stats().rejected.max_connections === 1, 3000, 'the rejection');
      const { status, body } = await get(`${metrics.url}/metrics`);
      assert.equal(status, 200);
      assert.equal(metric(body, 'echoplex_bytes_received_total'), 12_345);
      assert.equal(metric(body, 'echoplex_bytes_sent_total'), 12_345);
      assert.equal(metric(body, 'echoplex_connections_total'), 3);
      assert.equal(metric(body, 'echoplex_connections_active'), 2);
      assert.equal(metric(body, 'echoplex_connections_rejected_total{reason="max_connections"}'), 1);
      assert.equal(metric(body, 'echoplex_errors_total{kind="reset"}'), 0);
      assert.match(body, /^process_cpu_user_seconds_total /m, 'process metrics are there');
      assert.equal(
        metric(body, `echoplex_build_info{version="${packageVersion}",engine="${running.server.engine}"}`),
        1,
      );
      assert.deepEqual(await get(`${metrics.url}/healthz`), { status: 200, body: 'ok\n' });
      assert.equal((await get(`${metrics.url}/readyz`)).status, 200);
      const closing = running.server.close({ timeoutMs: 2000 });
      const ready = await get(`${metrics.url}/readyz`);
      assert.equal(ready.status, 503, 'not ready as soon as shutdown begins');
      for (const socket of [...held, extra]) socket.destroy();
      await closing;
    } finally {
      await metrics.close();
    }
  });

  it('echoplex serve --metrics-port serves them from the CLI', async () => {
    const server = await startServe(['--quiet', '--metrics-port', '0']);
    try {
      await waitUntil(() => /metrics on (http:\/\/\S+)\/metrics/.test(server.stderr()), 5000, 'the metrics line');
      const url = /metrics on (http:\/\/\S+)\/metrics/.exec(server.stderr())![1]!;
      await roundTrip(server.port, Buffer.from('hello'));
      const { body } = await get(`${url}/metrics`);
      assert.equal(metric(body, 'echoplex_bytes_received_total'), 5);
    } finally {
      await server.stop();
    }
  });

  it('a busy metrics port stops the whole server: no listening line, TCP released, exit 1 with the usual message', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const busy = (blocker.address() as net.AddressInfo).port;
    const tcp = net.createServer();
    await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
    const port = (tcp.address() as net.AddressInfo).port;
    await new Promise((resolve) => tcp.close(resolve));
    try {
      for (const workers of [[], ['--workers', '2']]) {
        const result = await runCli(['serve', '--port', String(port), '--metrics-port', String(busy), ...workers], {
          ms: 15_000,
        });
        assert.equal(result.code, 1, result.stderr);
        assert.doesNotMatch(result.stdout, /listening/);
        assert.match(
          result.stderr,
          new RegExp(`echoplex: cannot listen on http://127\\.0\\.0\\.1:${busy}: address already in use`),
        );
        assert.doesNotMatch(result.stderr, /unexpected error/);
        // The TCP port it had bound is free again: nothing half-started is left behind.
        const again = net.createServer();
        await new Promise<void>((resolve, reject) => {
          again.once('error', reject);
          again.listen(port, '127.0.0.1', resolve);
        });
        await new Promise((resolve) => again.close(resolve));
      }
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it('an invalid metrics port is a usage error', async () => {
    const result = await runCli(['serve', '--metrics-port', 'http']);
    assert.equal(result.code, 2);
  });
});
