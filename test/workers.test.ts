// --workers: several event loops on one port, exact metrics summed over them, restarts, drain.

import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import tls from 'node:tls';
import { childrenOf } from '../bench/settled-memory.js';
import { runCli, startServe } from './helpers/cli.js';
import { boundDatagramSockets, connectTo, listeningSockets, readBytes, roundTrip } from './helpers/sockets.js';
import { waitUntil, withTimeout } from './helpers/timeout.js';

/** The engine a server started without --engine takes: the native one, unless the run forces the portable one (npm run test:portable). */
const DEFAULT_ENGINE = process.env['ECHOPLEX_ENGINE'] === 'portable' ? 'portable' : 'native';

function metricValue(text: string, name: string): number {
  const match = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  assert.ok(match, `${name} in /metrics`);
  return Number(match[1]);
}

/**
 * A UDP socket holding a port whose TCP twin is free, so that a server given that port fails on
 * UDP alone (other tests' connections hold TCP ports, and one may have this number).
 */
async function udpPortWithTcpFree(): Promise<dgram.Socket> {
  for (let attempt = 0; ; attempt++) {
    const holder = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => holder.bind(0, '127.0.0.1', resolve));
    const probe = net.createServer();
    const free = await new Promise<boolean>((resolve) => {
      probe.once('error', () => resolve(false));
      probe.listen(holder.address().port, '127.0.0.1', () => resolve(true));
    });
    if (free) {
      await new Promise((resolve) => probe.close(resolve));
      return holder;
    }
    holder.close();
    if (attempt === 20) throw new Error('no UDP port with its TCP twin free in 20 tries');
  }
}

/**
 * The primary's children, its workers, read from /proc: no program is run for it, since one that
 * inherits the sanitizers' LD_PRELOAD (npm run test:asan) may never exit.
 */
const workerPidsOf = childrenOf;

/** The worker (1, 2...) that answered a connection, from its --hello line. */
async function helloWorker(port: number): Promise<number> {
  const socket = net.connect(port, '127.0.0.1');
  try {
    let text = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    await waitUntil(() => text.includes('\n'), 5000, 'the hello line');
    return (JSON.parse(text.slice(0, text.indexOf('\n'))) as { worker: number }).worker;
  } finally {
    socket.destroy();
  }
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
      // Spread over the two workers: each logged some of the 20 connections.
      await waitUntil(
        () => /\[worker 1\] new connection/.test(serve.stderr()) && /\[worker 2\] new connection/.test(serve.stderr()),
        5000,
        'both workers to serve',
      );

      await waitUntil(
        async () => metricValue(await (await get('/metrics')).text(), 'echoplex_bytes_received_total') === 20_000,
        5000,
        'metrics to add up',
      );
      const metrics = await (await get('/metrics')).text();
      assert.equal(metricValue(metrics, 'echoplex_bytes_sent_total'), 20_000);
      assert.equal(metricValue(metrics, 'echoplex_connections_total'), 20);
      assert.match(
        metrics,
        /^echoplex_build_info\{version="[^"]+",engine="[a-z-]+"\} 1$/m,
        'one build, not one per worker',
      );
      assert.equal((await get('/readyz')).status, 200);

      // A worker killed outright is replaced, and the port keeps answering meanwhile.
      const workerPids = workerPidsOf(serve.child.pid!);
      assert.equal(workerPids.length, 2);
      process.kill(workerPids[0]!, 'SIGKILL');
      await waitUntil(
        () => /worker \d+ \(pid \d+\) killed by SIGKILL; starting a new one/.test(serve.stderr()),
        5000,
        'the restart to be logged',
      );
      for (let i = 0; i < 5; i++) assert.ok((await roundTrip(serve.port, payload)).equals(payload));
      await waitUntil(async () => (await get('/readyz')).status === 200, 5000, 'readiness with both workers back');
      // What the dead worker counted stays counted: totals never go backwards (Prometheus would read a reset).
      const after = await (await get('/metrics')).text();
      assert.equal(metricValue(after, 'echoplex_connections_total'), 25);
      assert.equal(metricValue(after, 'echoplex_bytes_received_total'), 25_000);

      const { code } = await serve.stop('SIGTERM');
      assert.equal(code, 0);
      assert.equal(
        (serve.stderr().match(/shut down/g) ?? []).length,
        3,
        'both workers and the primary shut down cleanly',
      );
    } finally {
      await serve.stop('SIGKILL');
    }
  });

  it('with NODE_CLUSTER_SCHED_POLICY=none (Node sharing the primary socket) the workers still serve', async () => {
    // The variable changes Node's cluster, which shared ports bypass; a worker that listened on the
    // primary's socket must not take it from the others. A port given (not 0, which would let a
    // worker that lost the socket bind another port unseen).
    const free = net.createServer();
    await new Promise<void>((resolve) => free.listen(0, '127.0.0.1', resolve));
    const { port } = free.address() as net.AddressInfo;
    await new Promise((resolve) => free.close(resolve));
    const serve = await startServe(['--workers', '2', '--quiet', '--port', String(port)], {
      env: { NODE_CLUSTER_SCHED_POLICY: 'none' },
    });
    try {
      const result = await runCli([
        'bench',
        '--port',
        String(serve.port),
        '-c',
        '20',
        '-d',
        '1',
        '--warmup',
        '0',
        '--json',
      ]);
      assert.equal(result.code, 0, result.stderr + serve.stderr());
      const json = JSON.parse(result.stdout) as { errors: number; messages: number };
      assert.equal(json.errors, 0);
      assert.ok(json.messages > 100);
      assert.doesNotMatch(serve.stderr(), /exited|address already in use/);
    } finally {
      await serve.stop('SIGKILL');
    }
  });

  it('drains once when SIGTERM reaches every process at once, as systemd sends it to the whole group', async () => {
    const serve = await startServe(['--workers', '2']);
    try {
      const pids = [serve.child.pid!, ...workerPidsOf(serve.child.pid!)];
      assert.equal(pids.length, 3);
      for (const pid of pids) process.kill(pid, 'SIGTERM');
      const { code } = await serve.exited();
      assert.equal(code, 0, serve.stderr());
      assert.doesNotMatch(serve.stderr(), /again/, "a worker took the primary's SIGTERM for a second signal");
      assert.equal(
        (serve.stderr().match(/shut down/g) ?? []).length,
        3,
        'both workers and the primary shut down cleanly',
      );
    } finally {
      await serve.stop('SIGKILL');
    }
  });

  it('--udp: every worker answers on the one UDP port, from port 0 and through a restart', async () => {
    // Each worker binds a UDP socket of its own on the port its TCP listener got, and answers it
    // in C; a restarted worker binds it again.
    const serve = await startServe(['--workers', '2', '--udp', '--quiet']);
    try {
      const udpEcho = async (text: string) => {
        const socket = dgram.createSocket('udp4');
        try {
          await new Promise<void>((resolve) => socket.connect(serve.port, '127.0.0.1', resolve));
          const reply = once(socket, 'message') as Promise<[Buffer]>;
          socket.send(text);
          return (await withTimeout(reply, 2000, `the reply to ${text}`))[0].toString();
        } finally {
          socket.close();
        }
      };
      assert.match(
        serve.stdout(),
        new RegExp(`udp://127\\.0\\.0\\.1:${serve.port} \\(.*, ${DEFAULT_ENGINE} engine, 2 workers\\)`),
      );
      assert.equal(boundDatagramSockets(serve.port), 2, "the workers' own UDP sockets");
      for (let i = 0; i < 5; i++) assert.equal(await udpEcho(`before ${i}`), `before ${i}`);
      const workerPids = workerPidsOf(serve.child.pid!);
      process.kill(workerPids[0]!, 'SIGKILL');
      await waitUntil(
        () => /worker \d+ \(pid \d+\) killed by SIGKILL; starting a new one/.test(serve.stderr()),
        5000,
        'the restart to be logged',
      );
      await waitUntil(() => workerPidsOf(serve.child.pid!).length === 2, 5000, 'two workers again');
      await waitUntil(() => boundDatagramSockets(serve.port) === 2, 5000, 'the new worker to bind UDP');
      for (let i = 0; i < 5; i++) assert.equal(await udpEcho(`after ${i}`), `after ${i}`);
      assert.doesNotMatch(serve.stderr(), /cannot listen/);
      assert.equal((await serve.stop('SIGTERM')).code, 0);
    } finally {
      await serve.stop('SIGKILL');
    }
  });

  it('a worker that cannot listen exits, and the primary with it, saying why', async () => {
    const holder = await udpPortWithTcpFree();
    try {
      const result = await runCli(['serve', '--workers', '2', '--udp', '--port', String(holder.address().port)], {
        ms: 15_000,
      });
      assert.equal(result.code, 1);
      assert.match(result.stderr, /cannot listen on udp:\/\/127\.0\.0\.1:\d+: address already in use/);
      assert.match(result.stderr, /a worker exited with status 1 before it was listening/);
    } finally {
      holder.close();
    }
  });

  it('a file that cannot serve is one usage error from the primary, before any worker starts', async () => {
    for (const args of [
      ['--tls-cert', '/nonexistent/cert.pem', '--tls-key', '/nonexistent/key.pem'],
      ['--transform', '/nonexistent/transform.js'],
    ]) {
      const started = Date.now();
      const result = await runCli(['serve', '--workers', '2', '--port', '0', ...args], { ms: 15_000 });
      assert.equal(result.code, 2, result.stderr);
      assert.equal(result.stderr.match(/cannot (read|load)/g)?.length, 1, `said once: ${result.stderr}`);
      assert.doesNotMatch(result.stderr, /imported from/);
      assert.ok(Date.now() - started < 10_000);
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
  it('each worker listens on a socket of its own on every port the primary claimed, and a restarted one joins again', async () => {
    const serve = await startServe(['--workers', '2', '--hello', '--quiet', '--port', '0,0']);
    try {
      const ports = [...serve.stdout().matchAll(/tcp:\/\/127\.0\.0\.1:(\d+)/g)].map((match) => Number(match[1]));
      assert.equal(ports.length, 2, serve.stdout());
      assert.notEqual(ports[0], ports[1]);
      // Two listening sockets per port, the workers': none is the primary's, handing connections over.
      for (const port of ports) assert.equal(listeningSockets(port), 2, `listening on ${port}`);
      assert.match(serve.stdout(), new RegExp(`, ${DEFAULT_ENGINE} engine, 2 workers\\)`));
      const answered = new Set<number>();
      for (let i = 0; i < 40 && answered.size < 2; i++) answered.add(await helloWorker(ports[1]!));
      assert.deepEqual([...answered].sort(), [1, 2], 'the kernel spreads connections over both workers');

      // The port stays the workers' while one is replaced: it binds the same number again.
      process.kill(workerPidsOf(serve.child.pid!)[0]!, 'SIGKILL');
      await waitUntil(
        () => /worker \d+ \(pid \d+\) killed by SIGKILL; starting a new one/.test(serve.stderr()),
        5000,
        'the restart to be logged',
      );
      await waitUntil(() => ports.every((port) => listeningSockets(port) === 2), 10_000, 'the new worker to listen');
      const after = new Set<number>();
      for (let i = 0; i < 40 && after.size < 2; i++) after.add(await helloWorker(ports[0]!));
      // The replacement is worker 3; whichever of 1 and 2 was killed, the other answers beside it.
      assert.ok(after.size === 2 && after.has(3), `the surviving worker and its replacement: ${[...after].join(', ')}`);

      // The claim is the primary's: another server cannot join the port, sharing or not.
      for (const args of [['--workers', '2'], []]) {
        const other = await runCli(['serve', ...args, '--port', String(ports[0])], { ms: 15_000 });
        assert.equal(other.code, 1, other.stderr);
        assert.match(
          other.stderr,
          new RegExp(`cannot listen on tcp://127\\.0\\.0\\.1:${ports[0]}: address already in use`),
        );
      }
      assert.equal((await serve.stop('SIGTERM')).code, 0);
    } finally {
      await serve.stop('SIGKILL');
    }
  });

  it('TLS and WebSocket on a shared port are served by the native engine in every worker', async () => {
    const serve = await startServe(['--workers', '2', '--tls-self-signed', '--ws', '--quiet', '--engine', 'native']);
    try {
      assert.match(serve.stdout(), /wss:\/\/127\.0\.0\.1:\d+ \(.*, native engine, 2 workers\)/);
      const run = await runCli(
        ['bench', `wss://127.0.0.1:${serve.port}/`, '--tls-insecure', '-c', '8', '--messages', '400', '--json'],
        { ms: 30_000 },
      );
      assert.equal(run.code, 0, run.stderr + serve.stderr());
      const json = JSON.parse(run.stdout) as { errors: number; messages: number };
      assert.equal(json.errors, 0);
      assert.equal(json.messages, 400);
    } finally {
      await serve.stop();
    }
  });
  it("on the portable engine too, TLS and a PROXY header are read on each worker's own socket", async () => {
    const secure = await startServe(['--workers', '2', '--engine', 'portable', '--tls-self-signed', '--quiet']);
    try {
      assert.equal(listeningSockets(secure.port), 2);
      const socket = tls.connect({ port: secure.port, host: '127.0.0.1', rejectUnauthorized: false });
      try {
        await withTimeout(once(socket, 'secureConnect'), 5000, 'the TLS handshake');
        socket.write('over tls\n');
        const [reply] = (await withTimeout(once(socket, 'data'), 5000, 'the echo')) as [Buffer];
        assert.equal(reply.toString(), 'over tls\n');
      } finally {
        socket.destroy();
      }
    } finally {
      await secure.stop();
    }
    const proxied = await startServe(['--workers', '2', '--proxy-protocol', '--quiet']);
    try {
      assert.equal(listeningSockets(proxied.port), 2);
      const socket = await connectTo(proxied.port);
      try {
        const reply = readBytes(socket, 'behind a proxy\n'.length, 5000);
        socket.write('PROXY TCP4 192.0.2.1 192.0.2.2 5000 80\r\nbehind a proxy\n');
        assert.equal((await reply).toString(), 'behind a proxy\n');
      } finally {
        socket.destroy();
      }
    } finally {
      await proxied.stop();
    }
  });
});
