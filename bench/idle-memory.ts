// `npm run bench:idle-memory`: resident memory per idle connection, echoplex beside its peers.
//
// For each server: start it, read VmRSS, open N connections (default 10,000) that send one
// byte each and get it back (so every connection has been fully set up and served once), wait
// for memory to settle (until VmRSS stops falling), read it again. Reports (after - before) / N, in KB per connection.
//
// A Node.js peer runs with its inspector on a loopback port (and --expose-gc), through which a
// full collection that also shrinks the heap (V8's last-resort kind) is asked for before each
// reading: otherwise whether V8 has yet shrunk the young generation that accepting 10,000
// clients grew decides the figure (seen here: 0.3 or 2.7 KB from one build, run to run). Python
// frees by reference counting, and C has no collector.

import { readFileSync } from 'node:fs';
import net from 'node:net';
import { WebSocket } from 'ws';
import { openFileLimit } from '../src/core/descriptors.js';
import { buildCPeers, PEERS, startPeer } from './peers.js';
import { namesFrom, positiveNumber, scriptOptions } from './script-args.js';

function rssKb(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
}

async function openIdle(port: number, count: number): Promise<net.Socket[]> {
  const sockets: net.Socket[] = [];
  for (let start = 0; start < count; start += 500) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(500, count - start) }, () =>
        new Promise<net.Socket>((resolve, reject) => {
          const socket = net.connect({ port, host: '127.0.0.1' }, () => {
            socket.once('data', () => resolve(socket));
            socket.write('x');
          });
          socket.once('error', reject);
        }),
      ),
    );
    sockets.push(...batch);
  }
  return sockets;
}

/**
 * VmRSS once it has stopped falling: a garbage-collected runtime gives back the pages of what it
 * allocated while the connections arrived only some seconds later, and idle memory is what an
 * idle connection keeps, not that. V8 hands pages back only after some idle seconds (seen here:
 * flat for over ten, then down), so this samples each second for at least `leastSeconds`, then
 * until five pass without a drop of 0.5%, for at most 45 s.
 */
async function settledRssKb(pid: number, leastSeconds: number): Promise<number> {
  const samples = [rssKb(pid)];
  for (let second = 1; second <= 45; second++) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    samples.push(rssKb(pid));
    const recent = samples.slice(-6);
    if (second >= leastSeconds && recent.length === 6 && recent[5]! >= recent[0]! * 0.995) break;
  }
  return samples[samples.length - 1]!;
}

/** The inspector's WebSocket URL a Node.js peer printed, once it has. */
async function inspectorUrl(stderr: () => string): Promise<string> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const match = /Debugger listening on (ws:\/\/\S+)/.exec(stderr());
    if (match) return match[1]!;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no inspector URL in the peer's stderr: ${stderr()}`);
}

/** Asks V8 for a full, shrinking collection through the inspector, twice (the second finds what the first freed up). */
async function collectGarbage(url: string): Promise<void> {
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  for (let id = 1; id <= 2; id++) {
    const done = new Promise<void>((resolve) => {
      const onMessage = (data: Buffer) => {
        if ((JSON.parse(data.toString()) as { id?: number }).id !== id) return;
        ws.off('message', onMessage);
        resolve();
      };
      ws.on('message', onMessage);
    });
    const expression = "gc({ type: 'major', execution: 'sync', flavor: 'last-resort' })";
    ws.send(JSON.stringify({ id, method: 'Runtime.evaluate', params: { expression } }));
    await done;
  }
  ws.close();
}

async function main(): Promise<void> {
  const values = scriptOptions(
    { connections: { type: 'string', default: '10000' }, peers: { type: 'string', default: 'c-epoll,echoplex,echoplex-portable,node-pipe,uvloop' } },
    `Usage: node --import tsx bench/idle-memory.ts [--connections 10000] [--peers name,...]\n  peers: ${PEERS.map((p) => p.name).join(', ')}`,
  );
  const count = positiveNumber(values.connections, 'connections');
  const peerNames = namesFrom(values.peers, PEERS.map((p) => p.name), 'peer');
  const limit = openFileLimit();
  if (limit !== undefined && limit < count + 100) throw new Error(`needs about ${count + 100} descriptors; raise the limit with \`ulimit -n ${count + 1024}\``);
  buildCPeers();
  console.log(`| server | RSS before (MiB) | RSS with ${count} idle connections (MiB) | KB per connection |`);
  console.log('|---|---|---|---|');
  for (const name of peerNames) {
    const peer = PEERS.find((p) => p.name === name);
    if (!peer || peer.unavailable()) {
      console.error(`skipping ${name}`);
      continue;
    }
    const node = peer.command(0)[0] === process.execPath;
    const running = await startPeer(peer, 0, node ? { NODE_OPTIONS: '--inspect=127.0.0.1:0 --expose-gc' } : {});
    const pid = running.child.pid!;
    const collect = node ? (await inspectorUrl(running.stderr)) : undefined;
    await new Promise((resolve) => setTimeout(resolve, 500));
    if (collect !== undefined) await collectGarbage(collect);
    const before = await settledRssKb(pid, 3);
    const sockets = await openIdle(running.port, count);
    if (collect !== undefined) await collectGarbage(collect);
    const after = await settledRssKb(pid, 20);
    console.log(`| ${name} | ${(before / 1024).toFixed(1)} | ${(after / 1024).toFixed(1)} | ${((after - before) / count).toFixed(2)} |`);
    for (const socket of sockets) socket.destroy();
    await running.stop();
  }
}

await main();
