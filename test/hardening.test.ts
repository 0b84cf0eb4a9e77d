// Limits, timeouts, access control, descriptor exhaustion and leaks, with real sockets.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { describe, it } from 'node:test';
import { runCli, startServe } from './helpers/cli.js';
import { cpuSeconds, openDescriptors } from './helpers/proc.js';
import { closed, connectTo, readBytes, readToEnd, roundTrip, startServer } from './helpers/sockets.js';
import { delay, waitUntil, withTimeout } from './helpers/timeout.js';

function connectFrom(localAddress: string, port: number): Promise<net.Socket> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: '127.0.0.1', localAddress }, () => resolve(socket));
      socket.once('error', reject);
    }),
    5000,
    `connect from ${localAddress}`,
  );
}

/** Resolves true if the server closes the connection within `ms` without sending anything. */
async function closedByServer(socket: net.Socket, ms = 2000): Promise<boolean> {
  socket.on('error', () => {});
  const data = readBytes(socket, 1, ms).catch(() => Buffer.from('timeout'));
  const received = await data;
  return received.length === 0 || socket.destroyed;
}

async function echoes(socket: net.Socket): Promise<boolean> {
  const payload = randomBytes(100);
  const reply = readBytes(socket, payload.length, 3000);
  socket.write(payload);
  return (await reply).equals(payload);
}

describe('connection limits', () => {
  it('closes the connection over --max-connections while the others keep echoing', async () => {
    const running = await startServer({ maxConnections: 3 });
    try {
      const admitted = await Promise.all([1, 2, 3].map(() => connectTo(running.port)));
      await waitUntil(() => running.server.connections.size === 3, 2000, 'three connections');
      const extra = await connectTo(running.port);
      assert.ok(await closedByServer(extra), 'the fourth connection is closed');
      assert.equal(running.server.stats().rejected.max_connections, 1);
      for (const socket of admitted) assert.ok(await echoes(socket), 'admitted connections still echo');
      admitted[0]!.destroy();
      await waitUntil(() => running.server.connections.size === 2, 2000, 'a slot to free up');
      const later = await connectTo(running.port);
      assert.ok(await echoes(later), 'a freed slot is usable again');
      for (const socket of [...admitted, later]) socket.destroy();
    } finally {
      await running.close();
    }
  });

  it('limits connections per source address, counting each address apart', async () => {
    const running = await startServer({ maxConnectionsPerIp: 2 });
    try {
      const first = await Promise.all([connectFrom('127.0.0.1', running.port), connectFrom('127.0.0.1', running.port)]);
      await waitUntil(() => running.server.connections.size === 2, 2000, 'two connections');
      const third = await connectFrom('127.0.0.1', running.port);
      assert.ok(await closedByServer(third));
      assert.equal(running.server.stats().rejected.max_connections_per_ip, 1);
      const other = await connectFrom('127.0.0.2', running.port);
      assert.ok(await echoes(other), 'another address has its own allowance');
      for (const socket of [...first, other]) socket.destroy();
    } finally {
      await running.close();
    }
  });
});

describe('--allow', () => {
  it('closes connections from addresses outside the list and counts them', async () => {
    const running = await startServer({ allow: ['127.0.0.2/32', '::1/128'] });
    try {
      const denied = await connectFrom('127.0.0.1', running.port);
      assert.ok(await closedByServer(denied));
      assert.equal(running.server.stats().rejected.not_allowed, 1);
      const allowed = await connectFrom('127.0.0.2', running.port);
      assert.ok(await echoes(allowed));
      allowed.destroy();
    } finally {
      await running.close();
    }
  });

  it('an invalid CIDR is a usage error (exit 2)', async () => {
    for (const bad of ['10.0.0.0/33', 'nonsense', '1.2.3.4/8/9', '::1/129']) {
      const result = await runCli(['serve', '--allow', bad]);
      assert.equal(result.code, 2, `${bad}: ${result.stderr}`);
      assert.match(result.stderr, /invalid CIDR/);
    }
  });
});

describe('--idle-timeout', () => {
  it('closes an idle connection and never an active one', async () => {
    const running = await startServer({ idleTimeoutMs: 1000 });
    try {
      const idle = await connectTo(running.port);
      const active = await connectTo(running.port);
      const idleClosed = readToEnd(idle, 4000);
      const started = Date.now();
      let activeOk = true;
      // Traffic every 200 ms for 2.5 s keeps the active one open throughout.
      for (let i = 0; i < 12; i++) {
        activeOk &&= await echoes(active);
        await delay(200);
      }
      assert.equal((await idleClosed).length, 0, 'the idle connection ended with nothing sent');
      assert.ok(activeOk, 'the active connection kept echoing');
      assert.ok(!active.destroyed && active.readyState === 'open', 'the active connection is still open');
      assert.ok(Date.now() - started >= 900, 'not closed before the timeout');
      assert.equal(running.server.stats().idleTimeouts, 1);
      active.destroy();
    } finally {
      await running.close();
    }
  });
});

describe('descriptor exhaustion', () => {
  it('under prlimit --nofile=64, 150 clients: stays up, serves existing ones, recovers', async () => {
    const server = await startServe(['--quiet'], {
      command: ['prlimit', '--nofile=64', process.execPath, (await import('./helpers/cli.js')).CLI],
    });
    const pid = server.child.pid!;
    try {
      const early = await connectTo(server.port);
      assert.ok(await echoes(early));
      const crowd: net.Socket[] = [];
      for (let i = 0; i < 150; i++) {
        const socket = await connectTo(server.port).catch(() => undefined);
        if (socket) {
          socket.on('error', () => {});
          crowd.push(socket);
        }
      }
      await delay(300);
      assert.ok(await echoes(early), 'an existing connection is still served');
      // Clients keep knocking while descriptors are exhausted: the server must not spin.
      const cpuBefore = cpuSeconds(pid);
      for (let i = 0; i < 50; i++) {
        const knock = await connectTo(server.port).catch(() => undefined);
        knock?.on('error', () => {});
        knock?.destroy();
      }
      await delay(1000);
      const cpuUsed = cpuSeconds(pid) - cpuBefore;
      assert.ok(cpuUsed < 0.5, `the server used ${cpuUsed.toFixed(2)} s of CPU in ~1 s while out of descriptors`);
      assert.equal(server.child.exitCode, null, 'still running');
      for (const socket of crowd) socket.destroy();
      await delay(500);
      await waitUntil(
        async () => {
          const fresh = await connectTo(server.port).catch(() => undefined);
          if (!fresh) return false;
          const ok = await echoes(fresh).catch(() => false);
          fresh.destroy();
          return ok;
        },
        10_000,
        'the server to accept and serve again',
      );
      assert.match(server.stderr(), /cannot accept connections/);
      assert.equal(
        (server.stderr().match(/cannot accept connections/g) ?? []).length,
        1,
        'logged once per burst, not per attempt',
      );
      assert.match(server.stderr(), /accepting connections again/);
      early.destroy();
    } finally {
      await server.stop();
    }
  });
});

describe('leaks', () => {
  it('holds the same descriptors after 3,000 connect/close cycles', async () => {
    const server = await startServe(['--quiet']);
    const pid = server.child.pid!;
    try {
      await roundTrip(server.port, Buffer.from('warm up'));
      await delay(200);
      const before = openDescriptors(pid);
      for (let batch = 0; batch < 30; batch++) {
        await Promise.all(
          Array.from({ length: 100 }, async (_, i) => {
            const socket = await connectTo(server.port);
            socket.on('error', () => {});
            if (i % 3 === 0) socket.resetAndDestroy();
            else if (i % 3 === 1) socket.end();
            else {
              await roundTrip(server.port, Buffer.from('x'));
              socket.destroy();
            }
            await closed(socket);
          }),
        );
      }
      await waitUntil(() => openDescriptors(pid) <= before, 5000, `descriptors back to ${before}`);
    } finally {
      await server.stop();
    }
  });
});
