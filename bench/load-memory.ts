// `npm run bench:load-memory`: what holding a connection open costs the bench itself, per engine.
//
// Against the C epoll server (core 0), `echoplex bench` (core 1) opens N connections and keeps
// them with a trickle of traffic (--rate over all of them); once they are open, its VmRSS is read
// after it has settled, with V8 asked for full collections through its inspector (as
// bench:idle-memory does for servers: a heap that grew while connecting gives its pages back
// only over several collections). The same is done with a small number of connections, and the
// difference over the difference in connections is the memory per connection: what the process
// holds whatever its connections (code, heap, buffers) cancels out. V8's young generation does
// not cancel out: V8 sizes it by what survives its scavenges, from a few MB to its limit, with
// the same number of connections from one run to the next, so the figure is given with and
// without it. Median of interleaved rounds, with the range. Loopback only.

import { spawn } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { openFileLimit } from '../src/core/descriptors.js';
import { buildCPeers, median, PEERS, startPeer } from './peers.js';
import { namesFrom, positiveNumber, scriptOptions } from './script-args.js';
import { inspector, inspectorUrl, residentParts, settledRssKb } from './settled-memory.js';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const BASELINE_CONNECTIONS = 1000;

const values = scriptOptions(
  {
    connections: { type: 'string', default: '15000' },
    rounds: { type: 'string', default: '3' },
    engines: { type: 'string', default: 'native,portable' },
    rate: { type: 'string', default: '1000' },
  },
  'Usage: node --import tsx bench/load-memory.ts [--connections 15000] [--rounds 3] [--engines native,portable] [--rate 1000]',
);
const connections = positiveNumber(values.connections, 'connections');
const rounds = positiveNumber(values.rounds, 'rounds');
const rate = positiveNumber(values.rate, 'rate');
const engines = namesFrom(values.engines, ['native', 'portable'], 'engine');
const limit = openFileLimit();
if (limit !== undefined && limit < connections + 100)
  throw new Error(
    `needs about ${connections + 100} descriptors; raise the limit with \`ulimit -n ${connections + 1024}\``,
  );

/** Sockets the process `pid` holds open. */
function sockets(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).filter((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:');
      } catch {
        return false;
      }
    }).length;
  } catch {
    return 0;
  }
}

interface Held {
  rss: number;
  /** Of it, the main thread's malloc heap, where the native engine's connections are. */
  malloc: number;
  /** Of it, V8's young generation. */
  young: number;
}

/** Settled VmRSS (KB) of a bench holding `count` connections to `port` on `engine`, and parts of it. */
async function heldRssKb(engine: string, port: number, count: number): Promise<Held> {
  // Two source addresses: past one address's ephemeral ports to one server port.
  const bench = spawn(
    'taskset',
    [
      '-c',
      '1',
      process.execPath,
      CLI,
      'bench',
      '--port',
      String(port),
      '-c',
      String(count),
      '--rate',
      String(rate),
      '-d',
      '120',
      '--warmup',
      '0',
      '--engine',
      engine,
      '--source-ip',
      '127.0.0.2-127.0.0.3',
    ],
    { env: { ...process.env, NODE_OPTIONS: '--inspect=127.0.0.1:0 --expose-gc' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  let stdout = '';
  bench.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  bench.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  try {
    const session = await inspector(await inspectorUrl(() => stderr));
    // Open once the process holds a socket for each connection.
    for (let waited = 0; sockets(bench.pid!) < count; waited += 100) {
      if (waited > 60_000 || bench.exitCode !== null) throw new Error(`the bench did not start: ${stderr}${stdout}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const rss = await settledRssKb(bench.pid!, 10, session.collect);
    const parts = residentParts(bench.pid!);
    const young = Math.round(await session.youngGenerationKb());
    console.error(
      `  ${engine}, ${count} connections: ${rss} KB (malloc heap ${parts.malloc}, other anonymous ${parts.anonymous} of which V8's young generation ${young}, files ${parts.files})`,
    );
    return { rss, malloc: parts.malloc, young };
  } finally {
    bench.kill('SIGKILL');
  }
}

buildCPeers();
const server = PEERS.find((peer) => peer.name === 'c-epoll')!;
const why = server.unavailable();
if (why !== undefined) throw new Error(`the C server cannot run here: ${why}`);
// The main thread's malloc heap is where the native engine's connections live; the rest of the
// difference is V8's heap.
const perConnection = new Map<string, number[]>(engines.map((engine) => [engine, []]));
const withoutYoung = new Map<string, number[]>(engines.map((engine) => [engine, []]));
const mallocPerConnection = new Map<string, number[]>(engines.map((engine) => [engine, []]));
for (let round = 1; round <= rounds; round++) {
  for (const engine of round % 2 === 1 ? engines : [...engines].reverse()) {
    const running = await startPeer(server);
    try {
      const few = await heldRssKb(engine, running.port, BASELINE_CONNECTIONS);
      const many = await heldRssKb(engine, running.port, connections);
      const added = connections - BASELINE_CONNECTIONS;
      const kb = (many.rss - few.rss) / added;
      perConnection.get(engine)!.push(kb);
      withoutYoung.get(engine)!.push((many.rss - many.young - (few.rss - few.young)) / added);
      mallocPerConnection.get(engine)!.push((many.malloc - few.malloc) / added);
      console.error(
        `[round ${round}] ${engine}: ${few.rss} KB with ${BASELINE_CONNECTIONS}, ${many.rss} KB with ${connections}: ${kb.toFixed(2)} KB per connection (young generation ${few.young} and ${many.young} KB)`,
      );
    } finally {
      await running.stop();
    }
  }
}
const figure = (list: number[]) =>
  `${median(list).toFixed(2)} (${Math.min(...list).toFixed(2)}-${Math.max(...list).toFixed(2)})`;
console.log(
  `| bench engine | KB per held connection: median (range), ${connections} against ${BASELINE_CONNECTIONS} | without V8's young generation | of it in the malloc heap |`,
);
console.log('|---|---|---|---|');
for (const [engine, list] of perConnection)
  console.log(
    `| ${engine} | ${figure(list)} | ${figure(withoutYoung.get(engine)!)} | ${figure(mallocPerConnection.get(engine)!)} |`,
  );
