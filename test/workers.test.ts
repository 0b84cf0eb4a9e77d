// --workers: several event loops on one port, exact metrics summed over them, restarts, drain.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { startServe } from './helpers/cli.js';
import { roundTrip } from './helpers/sockets.js';
import { waitUntil, withTimeout } from './helpers/timeout.js';

function metricValue(text: string, name: string): number {
  const match = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  assert.ok(match, `${name} in /metrics`);
  return Number(match[1]);
}

describe('--workers', () => {
  it('shares one port, sums exact counters, restarts a dead worker, and drains them all on SIGTERM', async () => {
    const serve = await startServe(['--workers', '2', '--metrics-port', '0']);
    try {
      await waitUntil(() => /metrics on (http:\/\/\S+)\/metrics/.test(serve.stderr()), 10_000, 'the metrics line');
      const metricsUrl = /metrics on (http:\/\/\S+)\/metrics/.exec(serve.stderr())![1]!;
      const get = (path: string) => withTimeout(fetch(`${metricsUrl}${path}`), 10_000, `GET ${path}`);

      const payload = Buffer.alloc(1000, 0x61);
      for (let i = 0; i < 20; i++) assert.ok((await roundTrip(serve.port, payload)).equals(payload));
      // Round robin between the two workers: each logged some of the 20 connections.
      await waitUntil(() => /\[worker 1\] new connection/.test(serve.stderr()) && /\[worker 2\] new connection/.test(serve.stderr()), 5000, 'both workers to serve');

      await waitUntil(async () => metricValue(await (await get('/metrics')).text(), 'echoplex_bytes_received_total') === 20_000, 5000, 'metrics to add up');
      const metrics = await (await get('/metrics')).text();
      assert.equal(metricValue(metrics, 'echoplex_bytes_sent_total'), 20_000);
      assert.equal(metricValue(metrics, 'echoplex_connections_total'), 20);
      assert.match(metrics, /^echoplex_build_info\{version="[^"]+",engine="[a-z-]+"\} 1$/m, 'one build, not one per worker');
      assert.equal((await get('/readyz')).status, 200);

      // A worker killed outright is replaced, and the port keeps answering meanwhile.
      const workerPids = (await import('node:child_process')).execFileSync('pgrep', ['-P', String(serve.child.pid)], { encoding: 'utf8' }).trim().split('\n').map(Number);
      assert.equal(workerPids.length, 2);
      process.kill(workerPids[0]!, 'SIGKILL');
      await waitUntil(() => /worker \d+ \(pid \d+\) killed by SIGKILL; starting a new one/.test(serve.stderr()), 5000, 'the restart to be logged');
      for (let i = 0; i < 5; i++) assert.ok((await roundTrip(serve.port, payload)).equals(payload));
      await waitUntil(async () => (await get('/readyz')).status === 200, 5000, 'readiness with both workers back');

      const { code } = await serve.stop('SIGTERM');
      assert.equal(code, 0);
      assert.equal((serve.stderr().match(/shut down/g) ?? []).length, 3, 'both workers and the primary shut down cleanly');
    } finally {
      await serve.stop('SIGKILL');
    }
  });

  it('--tls-self-signed: every worker presents the one certificate the primary made', async () => {
    const serve = await startServe(['--workers', '2', '--tls-self-signed', '--quiet']);
    try {
      const fingerprints = new Set<string>();
      for (let i = 0; i < 8; i++) {
        const socket = tls.connect({ port: serve.port, host: '127.0.0.1', rejectUnauthorized: false });
        await withTimeout(once(socket, 'secureConnect'), 5000, 'the TLS handshake');
        fingerprints.add(socket.getPeerCertificate().fingerprint256);
        socket.destroy();
      }
      assert.equal(fingerprints.size, 1);
    } finally {
      await serve.stop();
    }
  });
});
