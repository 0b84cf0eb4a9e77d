// The bench against servers whose every answer is known: a fixed delay, crossed, stale, reordered, duplicated, dropped and corrupted replies, on both engines.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { runBench } from '../src/bench/loadgen.js';
import { nativeBenchAvailable } from '../src/bench/native-bench.js';
import type { BenchOptions, BenchResult } from '../src/bench/settings.js';
import { runCli, startServe } from './helpers/cli.js';
import { skipUnless } from './helpers/peers.js';
import { startTypeScript, type Program } from './helpers/programs.js';
import { withTimeout } from './helpers/timeout.js';

const TRUTH = 'bench/peers/truth-server.ts';
const PROBE = 'bench/peers/rtt_probe.py';
const DELAY_MS = 20;
// Under the sanitizers (npm run test:asan) every process runs several times slower: the
// classifications still hold there, timing to a fraction of a millisecond does not.
const timingSkip = process.env['ECHOPLEX_SANITIZERS'] !== undefined && 'timing bars do not hold under the sanitizers';

const ENGINES = [
  {
    name: 'the native engine',
    engine: 'native' as const,
    skip: skipUnless(nativeBenchAvailable ? 'built' : undefined, 'the native engine', 'g++ make (then npm install)'),
  },
  { name: 'the portable engine', engine: 'portable' as const, skip: undefined },
];

/** Figures of one result that must agree with each other, whatever the server did. */
function assertConsistent(result: BenchResult): void {
  const l = result.latencyUs;
  for (const p of ['p50', 'p90', 'p99', 'p999'] as const) assert.ok(l[p] <= l.max, `${p} ${l[p]} above max ${l.max}`);
  assert.ok(l.min <= l.p50, `min ${l.min} above p50 ${l.p50}`);
  const rate = result.messages / result.durationSeconds;
  assert.ok(
    Math.abs(rate - result.messagesPerSecond) <= Math.max(1, rate * 0.001),
    `${result.messages} messages / ${result.durationSeconds} s is not ${result.messagesPerSecond} msg/s`,
  );
  assert.equal(
    result.errors,
    Object.values(result.errorsByKind).reduce((sum, n) => sum + n, 0),
  );
}

/**
 * What this machine adds to the server's delay, in us, as the reference client measures it at
 * its p50: one blocking connection, one message at a time (bench/peers/rtt_probe.py). Loopback
 * and the wake-up of a process sleeping until the reply come are in every client's figure, the
 * bench's too; on a quiet machine they are tens of microseconds, on a shared VM several hundred.
 */
async function machineExcessUs(server: Program): Promise<number> {
  const { stdout } = await promisify(execFile)('python3', [PROBE, String(server.port), '60', '64'], {
    timeout: 20_000,
  });
  const { p50, min } = JSON.parse(stdout) as { p50: number; min: number };
  assert.ok(min >= DELAY_MS * 1000, `the reference client measured ${min} us, faster than the server's delay`);
  return Math.max(0, p50 - DELAY_MS * 1000);
}

/** The bench's p50 is the server's delay to within 0.5 ms of what the reference client measures. */
function assertDelayMeasured(result: BenchResult, excessUs: number, what: string): void {
  const p50 = result.latencyUs.p50;
  const error = p50 - DELAY_MS * 1000;
  assert.ok(
    error > -500 && error < excessUs + 500,
    `p50 ${p50} us against ${DELAY_MS} ms ${what} (the reference client: ${DELAY_MS * 1000 + excessUs} us)`,
  );
}

async function truthRun(server: Program, options: BenchOptions): Promise<BenchResult> {
  const result = await withTimeout(
    runBench({ port: server.port, warmupSeconds: 0.3, durationSeconds: 1.5, timeoutSeconds: 2, ...options }),
    30_000,
    `bench ${JSON.stringify(options)}`,
  );
  assertConsistent(result);
  return result;
}

const truthServers = new Map<string, Program>();
async function truth(mode: string): Promise<Program> {
  let server = truthServers.get(mode);
  if (server === undefined) {
    server = await startTypeScript(TRUTH, mode, '64');
    truthServers.set(mode, server);
  }
  return server;
}
after(async () => {
  for (const server of truthServers.values()) await server.stop();
});

for (const { name, engine, skip } of ENGINES) {
  describe(`bench against servers whose answers are known (${name})`, { skip }, () => {
    // Each kind of wrong reply is counted in thousands within half a second of closed loop.
    const bench = (server: Program, options: BenchOptions = {}) =>
      truthRun(server, { engine, durationSeconds: 0.5, ...options });

    it(
      `measures a server that answers after exactly ${DELAY_MS} ms as ${DELAY_MS} ms, closed loop (within 0.5 ms of a reference client)`,
      { skip: timingSkip },
      async () => {
        const server = await truth(`delay:${DELAY_MS}`);
        const excess = await machineExcessUs(server);
        const result = await bench(server, { connections: 10, durationSeconds: 1.5 });
        assert.equal(result.engine, engine);
        assert.equal(result.errors, 0);
        assertDelayMeasured(result, excess, 'in the closed loop');
        assert.ok(
          result.latencyUs.min >= DELAY_MS * 1000,
          `min ${result.latencyUs.min} us is faster than the server's ${DELAY_MS} ms`,
        );
      },
    );

    it('counts every reply that is another connection’s message as crossed, and none as right', async () => {
      const result = await bench(await truth('crossed'), { connections: 4 });
      assert.ok(result.errorsByKind.crossed > 100, JSON.stringify(result.errorsByKind));
      assert.equal(result.messages, 0);
      assert.equal(result.errorsByKind.corrupt, 0);
    });

    it('counts a reply that is the connection’s previous message as stale', async () => {
      const result = await bench(await truth('stale'), { connections: 4 });
      assert.ok(result.errorsByKind.stale > 100, JSON.stringify(result.errorsByKind));
      // Only each connection's very first reply (in the warm-up) was its own message.
      assert.equal(result.messages, 0);
      assert.equal(result.errorsByKind.crossed + result.errorsByKind.corrupt + result.errorsByKind.duplicated, 0);
    });

    it('counts swapped pairs of replies as reordered, and the other of each pair as right', async () => {
      const result = await bench(await truth('swap'), { connections: 4, pipeline: 2 });
      assert.ok(result.errorsByKind.reordered > 100, JSON.stringify(result.errorsByKind));
      // Errors count over the whole run, warm-up included, as messagesTotal does; a connection's
      // last pair may be cut by the end of the run.
      assert.ok(
        Math.abs(result.messagesTotal - result.errorsByKind.reordered) <= 4,
        `one right reply per reordered one: ${result.messagesTotal} right, ${result.errorsByKind.reordered} reordered`,
      );
      assert.equal(result.errorsByKind.stale + result.errorsByKind.corrupt + result.errorsByKind.duplicated, 0);
    });

    it('counts a reply sent twice as duplicated, every time, and the rest as right', async () => {
      const result = await bench(await truth('duplicate:50'), { connections: 4 });
      assert.ok(result.errorsByKind.duplicated > 10, JSON.stringify(result.errorsByKind));
      const ratio = result.messagesTotal / result.errorsByKind.duplicated;
      assert.ok(
        ratio > 45 && ratio < 55,
        `one in 50 duplicated: ${result.messagesTotal} right, ${result.errorsByKind.duplicated} duplicated`,
      );
      assert.equal(result.errorsByKind.stale + result.errorsByKind.corrupt + result.errorsByKind.crossed, 0);
    });

    it('counts a changed byte as corrupt and goes on measuring the connection', async () => {
      const result = await bench(await truth('corrupt:50'), { connections: 4 });
      assert.ok(result.errorsByKind.corrupt > 10, JSON.stringify(result.errorsByKind));
      assert.ok(result.mismatchedBytes >= result.errorsByKind.corrupt);
      const ratio = result.messagesTotal / result.errorsByKind.corrupt;
      assert.ok(
        ratio > 45 && ratio < 55,
        `one in 50 corrupt: ${result.messagesTotal} right, ${result.errorsByKind.corrupt} corrupt`,
      );
    });

    it('counts a reply that never comes as a timeout', async () => {
      const result = await bench(await truth('drop:50'), { connections: 4, timeoutSeconds: 0.5 });
      assert.ok(result.errorsByKind.timeout > 0, JSON.stringify(result.errorsByKind));
      assert.equal(result.errorsByKind.corrupt + result.errorsByKind.stale + result.errorsByKind.duplicated, 0);
    });
  });
}

for (const { name, engine, skip } of ENGINES) {
  describe(
    `the open loop against a server that answers after exactly 20 ms (${name})`,
    { skip: skip ?? timingSkip },
    () => {
      let server: Program;
      let excess: number;
      before(async () => {
        server = await truth(`delay:${DELAY_MS}`);
        excess = await machineExcessUs(server);
      });

      for (const rate of [10, 100, 1000, 5000]) {
        it(`at ${rate} msg/s measures ${DELAY_MS} ms within 0.5 ms of a reference client at p50, and keeps to its schedule`, async () => {
          const result = await truthRun(server, {
            engine,
            rate,
            connections: 10,
            durationSeconds: rate < 100 ? 2 : 1.5,
          });
          assert.equal(result.engine, engine);
          assert.equal(result.errors, 0);
          assertDelayMeasured(result, excess, `at ${rate} msg/s`);
          assert.ok(
            result.latencyUs.min >= DELAY_MS * 1000,
            `min ${result.latencyUs.min} us is faster than the server's ${DELAY_MS} ms`,
          );
          // Sends go out within 100 us of their time, plus what this machine adds to any process's
          // wake-up (the reference client's excess, as the delay bar allows): on a virtual machine
          // whose host is busy, that is a few hundred microseconds at times, for every client.
          const lag = result.sendLagUs!;
          assert.ok(
            lag.p50 <= 100 + excess,
            `send lag p50 ${lag.p50} us at ${rate} msg/s (the machine's excess: ${excess} us)`,
          );
          assert.ok(lag.p50 <= lag.p99 && lag.p99 <= lag.max, JSON.stringify(lag));
          assert.ok(
            Math.abs(result.messagesPerSecond - rate) <= rate * 0.05,
            `${result.messagesPerSecond} msg/s offered ${rate}`,
          );
        });
      }

      it('counts crossed replies and lost ones in the open loop as in the closed', async () => {
        const crossed = await truthRun(await truth('crossed'), { engine, rate: 500, connections: 4 });
        assert.ok(crossed.errorsByKind.crossed > 100, JSON.stringify(crossed.errorsByKind));
        assert.equal(crossed.messages, 0);
        const dropped = await truthRun(await truth('drop:50'), {
          engine,
          rate: 500,
          connections: 4,
          timeoutSeconds: 0.5,
        });
        assert.ok(dropped.errorsByKind.timeout > 0, JSON.stringify(dropped.errorsByKind));
        assert.equal(dropped.errorsByKind.corrupt + dropped.errorsByKind.stale + dropped.errorsByKind.duplicated, 0);
      });
    },
  );
}

describe('bench exits 1 on a wrong reply, whatever the thresholds allow', () => {
  it('says the replies were wrong, by kind', async () => {
    const server = await truth('stale');
    const run = await runCli([
      'bench',
      '--port',
      String(server.port),
      '-c',
      '2',
      '-d',
      '0.5',
      '--warmup',
      '0',
      '--threshold',
      'errors<=1000000000',
    ]);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stdout, /stale \d+/);
    assert.match(run.stderr, /wrong replies/);
  });
});

describe('churn that reaches its goal', () => {
  it('replaces connections that a server resets, and -n counts good replies', async () => {
    const server = await startServe(['-q', '--fault', 'reset=0.3', '--fault-seed', '7']);
    try {
      const run = await runCli(
        ['bench', '--port', String(server.port), '--messages-per-connection', '1', '-n', '200', '-c', '20', '--json'],
        { ms: 30_000 },
      );
      const result = JSON.parse(run.stdout) as BenchResult;
      assert.equal(result.messages, 200, run.stderr);
      assert.ok(result.errorsByKind.closed > 20, JSON.stringify(result.errorsByKind));
      assert.equal(run.code, 1, 'the resets are errors');
      assert.doesNotMatch(run.stderr, /stopped short/);
    } finally {
      await server.stop();
    }
  });

  it('says when -n was not reached, and why, against a server that resets everything', async () => {
    const server = await startServe(['-q', '--fault', 'reset=1']);
    try {
      const run = await runCli(
        ['bench', '--port', String(server.port), '--messages-per-connection', '1', '-n', '200', '-c', '5'],
        { ms: 30_000 },
      );
      assert.equal(run.code, 1);
      assert.match(run.stderr, /stopped short of -n 200: 0 good replies and \d+ errors/);
    } finally {
      await server.stop();
    }
  });
});

describe('figures that agree with each other over UDP', () => {
  it('counts datagrams over the measured window, as messages are counted: sent = received + lost, received = messages', async () => {
    const { startServer } = await import('./helpers/sockets.js');
    const running = await startServer({ udp: true });
    try {
      const result = await withTimeout(
        runBench({ port: running.port, udp: true, connections: 4, warmupSeconds: 0.5, durationSeconds: 1 }),
        30_000,
        'bench --udp',
      );
      assertConsistent(result);
      const d = result.datagrams!;
      assert.equal(d.received, result.messages);
      assert.equal(d.sent, d.received + d.lost + d.late);
      assert.ok(
        d.sent < result.messagesTotal,
        `${d.sent} sent in the window, ${result.messagesTotal} replies in the whole run`,
      );
    } finally {
      await running.close();
    }
  });
});
