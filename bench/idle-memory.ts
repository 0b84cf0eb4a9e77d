// `npm run bench:idle-memory`: resident memory per idle connection, echoplex beside its peers.
//
// For each server: start it, read VmRSS once it has settled, open N connections (default
// 10,000; over TLS, WebSocket or wss for the peers that speak them) that send one byte each and get it back (so every connection has been fully set up
// and served once), and read VmRSS again once it has settled. Reports (after - before) / N, in
// KB per connection: the median of interleaved rounds (default 3) and their range.
//
// A Node.js peer runs with its inspector on a loopback port (and --expose-gc), through which a
// full collection is asked for each second while memory settles. Accepting 10,000 clients grows
// V8's heap by some tens of MiB of what is garbage once they are set up, and V8 gives those pages
// back over several collections; an idle process may run none, and then whether one had run yet
// decided the figure (seen here: 0.3 or 2.7 KB from one build, run to run). Even so the figure
// moves by a few tenths of a KB from round to round, hence the rounds. Python frees by reference
// counting, and C has no collector.

import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { WebSocket } from 'ws';
import { inspector, inspectorUrl, settledRssKb } from './settled-memory.js';
import { openFileLimit } from '../src/core/descriptors.js';
import { buildCPeers, CERT_FILES, median, PEERS, startPeer, type Peer } from './peers.js';
import { namesFrom, positiveNumber, scriptOptions } from './script-args.js';

/** What an idle client holds open, and lets go of. */
interface IdleClient {
  destroy(): void;
}

/** One client of `peer`'s kind (TCP, TLS, WebSocket, wss) that sent one message and had it back. */
function openOne(peer: Peer, port: number): Promise<IdleClient> {
  return new Promise((resolve, reject) => {
    if (peer.websocket) {
      const ws = new WebSocket(`${peer.tls ? 'wss' : 'ws'}://127.0.0.1:${port}/`, {
        ...(peer.tls && { ca: readFileSync(CERT_FILES[0]!) }),
        perMessageDeflate: false,
      });
      ws.once('open', () => ws.send('x'));
      ws.once('message', () => resolve({ destroy: () => ws.terminate() }));
      ws.once('error', reject);
      return;
    }
    const socket = peer.tls
      ? tls.connect({ port, host: '127.0.0.1', ca: trustedCa() }, () => socket.write('x'))
      : net.connect({ port, host: '127.0.0.1' }, () => socket.write('x'));
    socket.once('data', () => resolve(socket));
    socket.once('error', reject);
  });
}

let ca: Buffer | undefined;
function trustedCa(): Buffer {
  ca ??= readFileSync(CERT_FILES[0]!);
  return ca;
}

async function openIdle(peer: Peer, port: number, count: number): Promise<IdleClient[]> {
  const clients: IdleClient[] = [];
  for (let start = 0; start < count; start += 500) {
    const batch = await Promise.all(Array.from({ length: Math.min(500, count - start) }, () => openOne(peer, port)));
    clients.push(...batch);
  }
  return clients;
}

interface Reading {
  beforeKb: number;
  afterKb: number;
}

/** One peer, once: RSS settled before, and settled again with `count` idle connections open. */
async function measureIdle(peer: Peer, count: number): Promise<Reading> {
  const node = peer.command(0)[0] === process.execPath;
  const running = await startPeer(peer, 0, node ? { NODE_OPTIONS: '--inspect=127.0.0.1:0 --expose-gc' } : {});
  const sockets: IdleClient[] = [];
  try {
    const pid = running.child.pid!;
    const collect = node ? (await inspector(await inspectorUrl(running.stderr))).collect : undefined;
    const beforeKb = await settledRssKb(pid, 10, collect);
    sockets.push(...(await openIdle(peer, running.port, count)));
    const afterKb = await settledRssKb(pid, 10, collect);
    return { beforeKb, afterKb };
  } finally {
    for (const socket of sockets) socket.destroy();
    await running.stop();
  }
}

async function main(): Promise<void> {
  const values = scriptOptions(
    {
      connections: { type: 'string', default: '10000' },
      rounds: { type: 'string', default: '3' },
      peers: { type: 'string', default: 'c-epoll,echoplex,echoplex-portable,node-pipe,uvloop' },
    },
    `Usage: node --import tsx bench/idle-memory.ts [--connections 10000] [--rounds 3] [--peers name,...]\n  peers: ${PEERS.map((p) => p.name).join(', ')}`,
  );
  const count = positiveNumber(values.connections, 'connections');
  const rounds = positiveNumber(values.rounds, 'rounds');
  const peerNames = namesFrom(
    values.peers,
    PEERS.map((p) => p.name),
    'peer',
  );
  const limit = openFileLimit();
  if (limit !== undefined && limit < count + 100)
    throw new Error(`needs about ${count + 100} descriptors; raise the limit with \`ulimit -n ${count + 1024}\``);
  buildCPeers();
  const peers: Peer[] = [];
  for (const name of peerNames) {
    const peer = PEERS.find((p) => p.name === name);
    if (!peer || peer.unavailable()) console.error(`skipping ${name}`);
    else peers.push(peer);
  }
  // Rounds interleave, as in bench:peers, so that drift hits every peer alike.
  const readings = new Map<string, Reading[]>(peers.map((peer) => [peer.name, []]));
  for (let round = 1; round <= rounds; round++) {
    for (const peer of peers) {
      const reading = await measureIdle(peer, count);
      readings.get(peer.name)!.push(reading);
      console.error(
        `[round ${round}] ${peer.name}: ${((reading.afterKb - reading.beforeKb) / count).toFixed(2)} KB per connection`,
      );
    }
  }
  console.log(
    `| server | RSS before (MiB) | RSS with ${count} idle connections (MiB) | KB per connection: median (range) |`,
  );
  console.log('|---|---|---|---|');
  for (const [name, runs] of readings) {
    const perConnection = runs.map((r) => (r.afterKb - r.beforeKb) / count);
    const range =
      runs.length > 1 ? ` (${Math.min(...perConnection).toFixed(2)}-${Math.max(...perConnection).toFixed(2)})` : '';
    const mib = (values: number[]) => (median(values) / 1024).toFixed(1);
    console.log(
      `| ${name} | ${mib(runs.map((r) => r.beforeKb))} | ${mib(runs.map((r) => r.afterKb))} | ${median(perConnection).toFixed(2)}${range} |`,
    );
  }
}

await main();
