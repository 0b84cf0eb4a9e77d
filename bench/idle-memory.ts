// `npm run bench:idle-memory`: resident memory per idle connection, echoplex beside its peers.
//
// For each server: start it, read VmRSS, open N connections (default 10,000) that send one
// byte each and get it back (so every connection has been fully set up and served once), wait
// for memory to settle (until VmRSS stops falling), read it again. Reports (after - before) / N, in KB per connection.

import { readFileSync } from 'node:fs';
import net from 'node:net';
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
 * flat for over ten, then down), so this samples each second for at least 20 s, then until five
 * pass without a drop of 0.5%, for at most 45 s.
 */
async function settledRssKb(pid: number): Promise<number> {
  const samples = [rssKb(pid)];
  for (let second = 1; second <= 45; second++) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    samples.push(rssKb(pid));
    const recent = samples.slice(-6);
    if (second >= 20 && recent[5]! >= recent[0]! * 0.995) break;
  }
  return samples[samples.length - 1]!;
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
    const running = await startPeer(peer);
    const pid = running.child.pid!;
    await new Promise((resolve) => setTimeout(resolve, 500));
    const before = rssKb(pid);
    const sockets = await openIdle(running.port, count);
    const after = await settledRssKb(pid);
    console.log(`| ${name} | ${(before / 1024).toFixed(1)} | ${(after / 1024).toFixed(1)} | ${((after - before) / count).toFixed(2)} |`);
    for (const socket of sockets) socket.destroy();
    await running.stop();
  }
}

await main();
