// npm run bench:accuracy: the bench measured against a server whose answer time is known, and its own send lag.
//
// bench/peers/truth-server.ts answers every 64-byte message exactly 20 ms after it arrived,
// pinned to core 0; `echoplex bench --json` runs pinned to core 1, in the closed loop on each
// engine and in the open loop at each rate, rounds interleaved. What the bench reports above
// 20 ms is the round trip itself (loopback, and waking each process: on an idle core of a
// virtual machine that is not free) and the bench's own error. To tell them apart, each case
// also runs against a plain echo server (`echoplex serve`, native engine) on core 0: its p50 is
// the round trip at that rate, and what is left over is the bench's. The send lag is how late
// the open loop sent behind its schedule. Prints a Markdown table for BENCHMARKS.md.

import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort, machineLine, median, waitForPort } from './peers.js';
import { scriptOptions } from './script-args.js';
import type { BenchResult } from '../src/bench/settings.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = `${ROOT}dist/cli/main.js`;
const DELAY_MS = 20;

interface Case {
  label: string;
  args: string[];
}

const CASES: Case[] = [
  { label: 'closed loop, native engine', args: ['--engine', 'native'] },
  { label: 'closed loop, portable engine', args: ['--engine', 'portable'] },
  ...[10, 100, 1000, 5000, 20000].map((rate) => ({
    label: `open loop, ${rate.toLocaleString('en-US')} msg/s`,
    args: ['--rate', String(rate)],
  })),
];

const options = scriptOptions(
  { rounds: { type: 'string', default: '3' }, duration: { type: 'string', default: '5' } },
  'usage: npm run bench:accuracy -- [--rounds N] [--duration SECONDS]',
);
const rounds = Number(options.rounds);
const duration = Number(options.duration);

const port = await freePort();
const server = spawn(
  'taskset',
  [
    '-c',
    '0',
    process.execPath,
    '--import',
    'tsx',
    `${ROOT}bench/peers/truth-server.ts`,
    String(port),
    `delay:${DELAY_MS}`,
    '64',
  ],
  { cwd: ROOT, stdio: 'ignore' },
);
const echoPort = await freePort();
const echo = spawn(
  'taskset',
  ['-c', '0', process.execPath, CLI, 'serve', '--quiet', '--engine', 'native', '--port', String(echoPort)],
  { cwd: ROOT, stdio: 'ignore' },
);

function bench(target: number, c: Case): BenchResult {
  const args = [
    '-c',
    '1',
    process.execPath,
    CLI,
    'bench',
    '--port',
    String(target),
    '-c',
    '10',
    '-d',
    String(duration),
    '--warmup',
    '1',
    '--json',
    ...c.args,
  ];
  const run = spawnSync('taskset', args, { encoding: 'utf8', timeout: (duration + 30) * 1000 });
  if (run.status !== 0 && run.stdout.trim() === '') throw new Error(`${c.label}: ${run.stderr}`);
  return JSON.parse(run.stdout) as BenchResult;
}

try {
  await waitForPort(port, server);
  await waitForPort(echoPort, echo);
  const results = new Map<string, BenchResult[]>(CASES.map((c) => [c.label, []]));
  const baselines = new Map<string, BenchResult[]>(CASES.map((c) => [c.label, []]));
  for (let round = 1; round <= rounds; round++) {
    for (const c of CASES) {
      const result = bench(port, c);
      results.get(c.label)!.push(result);
      const baseline = bench(echoPort, c);
      baselines.get(c.label)!.push(baseline);
      process.stderr.write(
        `round ${round}: ${c.label}: p50 ${result.latencyUs.p50} us (plain echo ${baseline.latencyUs.p50} us), errors ${result.errors}\n`,
      );
    }
  }
  const lines = [
    `${machineLine()}; ${rounds} rounds of ${duration} s, medians; server answers after exactly ${DELAY_MS} ms`,
    '',
    '| run | p50 | p50 above 20 ms | plain echo p50 | bench error at p50 | p99 | send lag p50 | send lag p99 | send lag max | errors |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const c of CASES) {
    const runs = results.get(c.label)!;
    const pick = (value: (r: BenchResult) => number) => median(runs.map(value));
    const lag = (key: 'p50' | 'p99' | 'max') =>
      runs.every((r) => r.sendLagUs !== null) ? `${pick((r) => r.sendLagUs![key])} us` : '-';
    const p50 = pick((r) => r.latencyUs.p50);
    const echoP50 = median(baselines.get(c.label)!.map((r) => r.latencyUs.p50));
    const above = p50 - DELAY_MS * 1000;
    lines.push(
      `| ${c.label} | ${ms(p50)} | ${ms(above)} | ${ms(echoP50)} | ${ms(above - echoP50)} | ${ms(pick((r) => r.latencyUs.p99))} | ${lag('p50')} | ${lag('p99')} | ${lag('max')} | ${runs.reduce((sum, r) => sum + r.errors, 0)} |`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  server.kill('SIGKILL');
  echo.kill('SIGKILL');
}

function ms(us: number): string {
  return `${(us / 1000).toFixed(3)} ms`;
}
