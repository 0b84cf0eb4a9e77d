// /metrics, /healthz and /readyz against a real server, with counters checked after a known exchange.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { serverMetricsSource, startMetricsServer } from '../src/ops/metrics.js';
import { runCli, startServe } from './helpers/cli.js';
import { connectTo, roundTrip, startServer } from './helpers/sockets.js';
import { waitUntil, withTimeout } from './helpers/timeout.js';

const packageVersion = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

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
      assert.equal(metric(body, `echoplex_build_info{version="${packageVersion}",engine="${running.server.engine}"}`), 1);
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

  it('an invalid metrics port is a usage error', async () => {
    const result = await runCli(['serve', '--metrics-port', 'http']);
    assert.equal(result.code, 2);
  });
});
