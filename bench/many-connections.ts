// `npm run bench:many-connections`: 100,000 verified connections held open under a trickle of traffic, and what each costs.
//
// Starts `echoplex serve --workers` on one port and `echoplex bench --workers` against it with
// connections spread over source addresses (one address reaches about 28,000 connections to one
// port), then reports the bench's result with the server's memory per connection: the resident
// memory of the primary and every worker (VmRSS from /proc) just before the bench, and at its
// highest while the connections are held, over the connections held. The bench reports its own
// memory per connection (`bench memory`), and how the connections spread over the server's
// workers (the most descriptors each held open). Loopback only.

import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { positiveNumber, scriptOptions } from './script-args.js';
import { childrenOf } from './settled-memory.js';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

const USAGE =
  'Usage: node --import tsx bench/many-connections.ts [--connections 100000] [--server-workers 6] [--bench-workers 6]\n' +
  '         [--rate 20000] [--connect-rate 3000] [--duration 10] [--port 7400]';
const given = scriptOptions(
  {
    connections: { type: 'string', default: '100000' },
    'server-workers': { type: 'string', default: '6' },
    'bench-workers': { type: 'string', default: '6' },
    rate: { type: 'string', default: '20000' },
    'connect-rate': { type: 'string', default: '3000' },
    duration: { type: 'string', default: '10' },
    port: { type: 'string', default: '7400' },
  },
  USAGE,
);
const args = Object.fromEntries(
  Object.entries(given).map(([name, value]) => [name, positiveNumber(value, name)]),
) as Record<keyof typeof given, number>;

/** VmRSS of `pid` and its children, in bytes (0 for a process already gone). */
function treeRss(pid: number): number {
  return [pid, ...childrenOf(pid)].reduce((sum, one) => sum + rss(one), 0);
}

/** How many descriptors `pid` has open (0 for a process already gone). */
function openDescriptors(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

function rss(pid: number): number {
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? 0 : Number(kb) * 1024;
  } catch {
    return 0;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const perWorkerLimit = Math.ceil(args.connections / args['server-workers']) + 1000;
const server = spawn(
  process.execPath,
  [
    CLI,
    'serve',
    '--quiet',
    '--workers',
    String(args['server-workers']),
    '--max-connections',
    String(perWorkerLimit),
    '--port',
    String(args.port),
  ],
  { stdio: ['ignore', 'inherit', 'inherit'] },
);
try {
  await sleep(4000);
  const before = treeRss(server.pid!);
  const benchArgs = [
    CLI,
    'bench',
    '--workers',
    String(args['bench-workers']),
    '-c',
    String(args.connections),
    '--connect-rate',
    String(args['connect-rate']),
    '--source-ip',
    '127.0.0.2-127.0.0.9',
    '--rate',
    String(args.rate),
    '-d',
    String(args.duration),
    '--warmup',
    '2',
    '--timeout',
    '60',
    '--port',
    String(args.port),
  ];
  console.log(`$ echoplex ${benchArgs.slice(1).join(' ')}`);
  const bench = spawn(process.execPath, benchArgs, { stdio: ['ignore', 'inherit', 'inherit'] });
  let highest = before;
  const mostOpen = new Map<number, number>();
  const sampler = setInterval(() => {
    highest = Math.max(highest, treeRss(server.pid!));
    for (const worker of childrenOf(server.pid!))
      mostOpen.set(worker, Math.max(mostOpen.get(worker) ?? 0, openDescriptors(worker)));
  }, 1000);
  const code = await new Promise<number | null>((resolve) => bench.once('exit', resolve));
  clearInterval(sampler);
  const held = [...mostOpen.values()].sort((a, b) => a - b);
  console.log(
    `server workers  ${held.map((count) => count.toLocaleString('en-US')).join(', ')} descriptors open at most ` +
      `(connections and each worker's few dozen of its own)`,
  );
  const grown = highest - before;
  console.log(
    `server memory  ${(grown / args.connections / 1000).toFixed(2)} kB per connection ` +
      `(primary and ${args['server-workers']} workers: ${(before / 1e6).toFixed(0)} MB before, ${(highest / 1e6).toFixed(0)} MB at most while held)`,
  );
  process.exitCode = code ?? 1;
} finally {
  server.kill('SIGTERM');
}
