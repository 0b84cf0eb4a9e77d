// `npm run bench:idle-memory`: resident memory per idle connection, echoplex beside its peers.
//
// For each server: start it, read VmRSS, open N connections (default 10,000) that send one
// byte each and get it back (so every connection has been fully set up and served once), wait
// for memory to settle, read VmRSS again. Reports (after - before) / N, in KB per connection.

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
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const after = rssKb(pid);
    console.log(`| ${name} | ${(before / 1024).toFixed(1)} | ${(after / 1024).toFixed(1)} | ${((after - before) / count).toFixed(2)} |`);
    for (const socket of sockets) socket.destroy();
    await running.stop();
  }
}

await main();
