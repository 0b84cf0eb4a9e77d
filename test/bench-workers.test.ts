// `bench --workers`: several generator processes, one run, merged exactly as `bench merge` merges; and `--source-ip`, several ports.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import { mergeResults } from '../src/bench/merge.js';
import { runWorkers, shares, workerOptions } from '../src/bench/workers.js';
import { parseAddressList } from '../src/cli/parsers.js';
import type { Connection } from '../src/index.js';
import { connectionTarget } from '../src/protocol/transports.js';
import { CLI, runCli } from './helpers/cli.js';
import { startServer } from './helpers/sockets.js';
import { withTimeout } from './helpers/timeout.js';

describe('bench --workers', () => {
  it('splits connections, rate, messages and source addresses exactly', () => {
    assert.deepEqual(shares(10, 3), [4, 3, 3]);
    const split = workerOptions({ connections: 5, rate: 1001, sourceAddresses: ['a', 'b', 'c', 'd'] }, 2);
    assert.deepEqual(
      split.map((o) => [o.connections, o.rate, o.sourceAddresses]),
      [
        [3, 501, ['a', 'c']],
        [2, 500, ['b', 'd']],
      ],
    );
    assert.deepEqual(
      workerOptions({ connections: 4, messages: 7 }, 2).map((o) => o.messages),
      [4, 3],
    );
    assert.throws(() => workerOptions({ connections: 1 }, 2), /at least one connection each/);
    assert.throws(() => workerOptions({ connections: 4, hdrLog: 'x' }, 2), /--hdr-log/);
  });

  it("catches a reply crossed from one worker's connection to another's", async () => {
    // Cross-wired: each connection's bytes go out on the other. Were both workers' connections
    // numbered alike, their messages would be the same bytes and the crossing would pass.
    const sockets: net.Socket[] = [];
    const server = net.createServer((socket) => {
      socket.on('error', () => {});
      sockets.push(socket);
      if (sockets.length === 2) {
        sockets[0]!.on('data', (chunk: Buffer) => sockets[1]!.write(chunk));
        sockets[1]!.on('data', (chunk: Buffer) => sockets[0]!.write(chunk));
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as net.AddressInfo;
      const { merged } = await withTimeout(
        runWorkers({ port, connections: 2, durationSeconds: 0.5, warmupSeconds: 0, timeoutSeconds: 1 }, 2),
        20_000,
        'bench --workers 2',
      );
      assert.ok(merged.errorsByKind.crossed > 0, JSON.stringify(merged.errorsByKind));
      assert.equal(merged.messages, 0, 'no crossed reply counts as an answer');
    } finally {
      for (const socket of sockets) socket.destroy();
      server.close();
    }
  });

  it("Ctrl-C (SIGINT to the process group, as a terminal sends it) ends every worker's window early, and the merged result says so", async () => {
    const running = await startServer();
    const child = spawn(
      process.execPath,
      [
        CLI,
        'bench',
        '--port',
        String(running.port),
        '--workers',
        '2',
        '-c',
        '4',
        '-d',
        '30',
        '--warmup',
        '0',
        '--json',
      ],
      { detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    const exited = once(child, 'exit');
    try {
      await new Promise((resolve) => setTimeout(resolve, 3000));
      const interrupted = performance.now();
      process.kill(-child.pid!, 'SIGINT');
      const [code] = (await withTimeout(exited, 15_000, 'bench to stop after Ctrl-C')) as [number | null];
      assert.equal(code, 0, stderr);
      assert.ok(performance.now() - interrupted < 10_000);
      const result = JSON.parse(stdout) as {
        stopped: boolean;
        durationSeconds: number;
        messages: number;
        generators: number;
      };
      assert.equal(result.stopped, true);
      assert.equal(result.generators, 2);
      assert.ok(result.durationSeconds < 10, `window of ${result.durationSeconds} s`);
      assert.ok(result.messages > 0);
    } finally {
      if (child.exitCode === null) process.kill(-child.pid!, 'SIGKILL');
      await running.close();
    }
  });

  it("gives the same figures as the workers' own results merged by hand", async () => {
    const running = await startServer({ transform: 'upper' });
    try {
      const { merged, results } = await runWorkers(
        {
          port: running.port,
          connections: 4,
          durationSeconds: 1,
          warmupSeconds: 0.2,
          expect: 'upper',
          thresholds: ['errors<=0'],
        },
        2,
      );
      assert.equal(results.length, 2);
      assert.deepEqual(merged, mergeResults(results, { thresholds: ['errors<=0'] }));
      assert.equal(merged.connections, 4);
      assert.equal(merged.generators, 2);
      assert.equal(merged.generatorCpuPercent?.length, 2);
      assert.equal(merged.errors, 0);
      assert.ok(merged.messages > 100, `messages: ${merged.messages}`);
      // One window: the workers' measured windows began together.
      const starts = results.map((r) => Date.parse(r.startedAt));
      assert.ok(Math.abs(starts[0]! - starts[1]!) < 50, `starts ${starts.join(', ')}`);
      assert.ok(merged.thresholds.every((t) => t.ok));
    } finally {
      await running.close();
    }
  });

  it("from the CLI: the open-loop rate split between two workers adds up to the rate asked for, with each worker's send lag", async () => {
    const running = await startServer();
    try {
      const run = await runCli(
        [
          'bench',
          '--port',
          String(running.port),
          '--workers',
          '2',
          '-c',
          '4',
          '--rate',
          '2000',
          '-d',
          '2',
          '--warmup',
          '0.5',
          '--json',
        ],
        { ms: 30_000 },
      );
      assert.equal(run.code, 0, run.stderr);
      const result = JSON.parse(run.stdout) as {
        messagesPerSecond: number;
        messages: number;
        durationSeconds: number;
        generators: number;
        generatorSendLagUs: unknown[];
        rate: number;
      };
      assert.equal(result.generators, 2);
      assert.equal(result.rate, 2000);
      assert.equal(result.generatorSendLagUs.length, 2);
      assert.ok(Math.abs(result.messagesPerSecond - 2000) < 100, `msg/s ${result.messagesPerSecond}`);
      assert.ok(Math.abs(result.messages / result.durationSeconds - result.messagesPerSecond) < 1);
      const refused = await runCli(['bench', '--port', String(running.port), '--workers', '3', '-c', '2']);
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /needs at least one connection each/);
    } finally {
      await running.close();
    }
  });
});

describe('bench --source-ip and several ports', () => {
  it('reads addresses and IPv4 ranges', () => {
    assert.deepEqual(parseAddressList('127.0.0.254-127.0.1.1,::1'), [
      '127.0.0.254',
      '127.0.0.255',
      '127.0.1.0',
      '127.0.1.1',
      '::1',
    ]);
    assert.throws(() => parseAddressList('127.0.0.9-127.0.0.2'), /backwards/);
    assert.throws(() => parseAddressList('localhost'), /not an IP address/);
  });

  it('spreads connections over every source and port evenly', () => {
    const target = { host: '127.0.0.1', port: 1, ports: [1, 2], sourceAddresses: ['a', 'b'] };
    const seen = Array.from({ length: 8 }, (_, i) => {
      const t = connectionTarget(target, i);
      return `${t.localAddress}:${t.port}`;
    });
    assert.deepEqual(seen, ['a:1', 'b:1', 'a:2', 'b:2', 'a:1', 'b:1', 'a:2', 'b:2']);
  });

  it('connects from each source address to each port, on both bench engines', async () => {
    const running = await startServer({ port: [0, 0], hello: true });
    const ports = running.server.addresses.map((a) => a.port);
    const seen = new Set<string>();
    running.server.on('connection', (connection: Connection) => {
      const local = (connection.helloFields() as { local: string }).local;
      seen.add(`${connection.remoteAddress} ${local.split(':').pop()}`);
    });
    try {
      for (const engine of ['native', 'portable']) {
        seen.clear();
        const run = await runCli([
          'bench',
          '--port',
          ports.join(','),
          '--source-ip',
          '127.0.0.2-127.0.0.3',
          '--hello',
          '-c',
          '8',
          '-n',
          '80',
          '--engine',
          engine,
        ]);
        assert.equal(run.code, 0, run.stderr);
        assert.deepEqual(
          [...seen].sort(),
          ['127.0.0.2', '127.0.0.3'].flatMap((source) => ports.map((port) => `${source} ${port}`)).sort(),
          engine,
        );
      }
    } finally {
      await running.close();
    }
  });
});
