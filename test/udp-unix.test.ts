// UDP echo (RFC 862) and Unix domain sockets, with real datagrams and real socket files.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createEchoServer, ListenError } from '../src/index.js';
import { runCli, spawnCli, startServe } from './helpers/cli.js';
import { cpuSeconds } from './helpers/proc.js';
import { startServer } from './helpers/sockets.js';
import { delay, withTimeout } from './helpers/timeout.js';
import { addonAbsence } from '../src/native/addon.js';
import { skipUnless, suite } from './helpers/peers.js';

const nativeSkip = skipUnless(
  addonAbsence() === undefined ? 'built' : undefined,
  'the native engine',
  'g++ make (then npm install)',
);

/**
 * Sends one datagram and resolves with the reply, or undefined if none comes within `ms`. The
 * socket is connected, as many clients' are: the kernel passes it only replies that come from
 * the address and port the datagram went to.
 */
async function udpExchange(port: number, payload: Buffer, host = '127.0.0.1', ms = 2000): Promise<Buffer | undefined> {
  const socket = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  try {
    await new Promise<void>((resolve) => socket.connect(port, host, resolve));
    return await new Promise<Buffer | undefined>((resolve, reject) => {
      const timer = setTimeout(() => resolve(undefined), ms);
      socket.once('message', (message) => {
        clearTimeout(timer);
        resolve(message);
      });
      socket.once('error', reject);
      socket.send(payload);
    });
  } finally {
    socket.close();
  }
}

// UDP runs on either engine: the native one answers plain echo and upper in C (batches of
// datagrams per system call); prefixes, allow-lists, delays and faults keep it portable.
for (const engine of ['native', 'portable'] as const) {
  suite(`UDP on the ${engine} engine`, engine === 'native' ? nativeSkip : undefined, () => {
    it('echoes each datagram on the TCP port, transformed, and counts it', async () => {
      const running = await startServer({ udp: true, transform: 'upper', engine });
      try {
        assert.deepEqual(
          running.server.addresses.map((address) => address.url),
          [`tcp://127.0.0.1:${running.port}`, `udp://127.0.0.1:${running.port}`],
        );
        const reply = await udpExchange(running.port, Buffer.from('hello, udp'));
        assert.equal(reply?.toString(), 'HELLO, UDP');
        const stats = running.server.stats();
        assert.equal(stats.messages.udp, 1);
        assert.equal(stats.bytesReceived, 10);
        assert.equal(stats.bytesSent, 10);
      } finally {
        await running.close();
      }
    });

    it('echoes the largest IPv4 datagram (65,507 bytes) whole', async () => {
      const running = await startServer({ udp: true, engine });
      try {
        const payload = Buffer.alloc(65_507);
        for (let i = 0; i < payload.length; i++) payload[i] = (i * 31) & 0xff;
        const reply = await udpExchange(running.port, payload);
        assert.equal(reply?.length, payload.length);
        assert.ok(reply!.equals(payload));
      } finally {
        await running.close();
      }
    });

    it('uppercases a batch of datagrams of every size whole, each to its sender', async () => {
      // The native engine reads a batch into slots of its own, answered in place: small, page-sized
      // and the largest datagrams, sent back to back so that they share a read, must each come
      // back whole, transformed, and in order.
      const sizes = [1, 64, 1471, 1472, 1473, 2944, 9000, 65_507];
      const running = await startServer({ udp: true, transform: 'upper', engine });
      const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 1 << 20 });
      try {
        const payloads = sizes.map((size, n) =>
          Buffer.from(Array.from({ length: size }, (_, i) => 97 + ((i + n) % 26))),
        );
        const replies: Buffer[] = [];
        const all = new Promise<void>((resolve) =>
          socket.on('message', (message) => {
            replies.push(message);
            if (replies.length === payloads.length) resolve();
          }),
        );
        await new Promise<void>((resolve) => socket.connect(running.port, '127.0.0.1', resolve));
        for (const payload of payloads) socket.send(payload);
        await withTimeout(all, 5000, 'the replies');
        assert.deepEqual(
          replies.map((reply) => reply.length),
          sizes,
        );
        replies.forEach((reply, n) =>
          assert.ok(
            reply.equals(Buffer.from(payloads[n]!.toString('latin1').toUpperCase(), 'latin1')),
            `size ${sizes[n]}`,
          ),
        );
      } finally {
        socket.close();
        await running.close();
      }
    });

    it('works on IPv6, on its own engine, and prefixes replies in line mode', async () => {
      // A plain echo stays on the engine asked for (the native one reads IPv6 senders' addresses
      // into the same slots as IPv4's); a prefix needs the portable one.
      const plain = await startServer({ host: '::1', udp: true, transform: 'upper', engine });
      try {
        assert.equal(plain.server.udpEngine, engine);
        for (const size of [1, 1232, 65_487]) {
          const payload = Buffer.alloc(size, 'v6');
          const reply = await udpExchange(plain.port, payload, '::1');
          assert.ok(reply?.equals(Buffer.from(payload.toString('latin1').toUpperCase(), 'latin1')), `size ${size}`);
        }
      } finally {
        await plain.close();
      }
      const running = await startServer({ host: '::1', udp: true, framing: 'line', prefix: 'hello ', engine });
      try {
        assert.equal((await udpExchange(running.port, Buffer.from('world'), '::1'))?.toString(), 'hello world');
      } finally {
        await running.close();
      }
    });

    it('answers bursts from many sockets in full, from its own port, then waits idle without spinning', async () => {
      // A backlog is what makes the native engine read its socket turn by turn (busy mode)
      // instead of waiting in epoll; it must answer every datagram across the switch, from the
      // port it went to (the clients are connected, so the kernel drops anything else), and go
      // back to waiting once the backlog is gone. The server is stopped while each burst lands,
      // so that the backlog is there when it resumes.
      const server = await startServe(['--quiet', '--udp', '--engine', engine]);
      const sockets = await Promise.all(
        Array.from({ length: 10 }, async () => {
          const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 1 << 20 });
          await new Promise<void>((resolve) => socket.connect(server.port, '127.0.0.1', resolve));
          return socket;
        }),
      );
      try {
        for (let wave = 0; wave < 3; wave++) {
          server.child.kill('SIGSTOP');
          const replies = Promise.all(
            sockets.map(
              (socket, s) =>
                new Promise<void>((resolve, reject) => {
                  const expected = new Set(
                    Array.from({ length: 40 }, (_, i) => `wave ${wave} socket ${s} datagram ${i}`),
                  );
                  const onMessage = (message: Buffer) => {
                    if (!expected.delete(message.toString()))
                      reject(new Error(`unexpected reply ${message.toString()}`));
                    if (expected.size > 0) return;
                    socket.off('message', onMessage);
                    resolve();
                  };
                  socket.on('message', onMessage);
                  for (const text of expected) socket.send(text);
                }),
            ),
          );
          await delay(100);
          server.child.kill('SIGCONT');
          await withTimeout(replies, 5000, `every reply of burst ${wave}`);
        }
        const pid = server.child.pid!;
        await delay(200);
        const before = cpuSeconds(pid);
        await delay(1000);
        const used = cpuSeconds(pid) - before;
        assert.ok(used < 0.2, `the server used ${used.toFixed(2)} s of CPU in 1 s with no datagram coming`);
        assert.equal((await udpExchange(server.port, Buffer.from('after the bursts')))?.toString(), 'after the bursts');
      } finally {
        server.child.kill('SIGCONT');
        for (const socket of sockets) socket.close();
        await server.stop();
      }
    });

    it('holds its UDP port alone: another socket cannot bind it', async () => {
      // The native engine works on a duplicate of the bound socket and closes Node's: the port
      // must stay taken (and answered) all the same.
      const running = await startServer({ udp: true, engine });
      const other = dgram.createSocket('udp4');
      try {
        const bound = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
          other.once('error', resolve);
          other.bind(running.port, '127.0.0.1', () => resolve(undefined));
        });
        assert.equal(bound?.code, 'EADDRINUSE');
        assert.equal((await udpExchange(running.port, Buffer.from('still mine')))?.toString(), 'still mine');
      } finally {
        other.close();
        await running.close();
      }
    });

    it('drops datagrams from addresses outside --allow', async () => {
      const running = await startServer({ udp: true, allow: ['10.0.0.0/8'], engine });
      try {
        assert.equal(await udpExchange(running.port, Buffer.from('let me in'), '127.0.0.1', 300), undefined);
        assert.equal(running.server.stats().rejected.not_allowed, 1);
      } finally {
        await running.close();
      }
    });
  });

  it(
    `answers on the ${engine} engine where it can`,
    { skip: engine === 'native' ? nativeSkip : undefined },
    async () => {
      const plain = await startServer({ udp: true, transform: 'upper', engine });
      assert.equal(plain.server.udpEngine, engine);
      await plain.close();
      const prefixed = await startServer({ udp: true, framing: 'line', prefix: '> ', engine });
      assert.equal(prefixed.server.udpEngine, 'portable', 'a prefix needs JavaScript per datagram');
      await prefixed.close();
    },
  );
}

describe('Unix domain sockets', () => {
  const dir = mkdtempSync(join(tmpdir(), 'echoplex-unix-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function unixRoundTrip(path: string, payload: string): Promise<string> {
    const socket = net.connect({ path });
    try {
      return await withTimeout(
        new Promise<string>((resolve, reject) => {
          let reply = '';
          socket.on('data', (chunk) => {
            reply += chunk.toString();
            if (reply.length >= payload.length) resolve(reply);
          });
          socket.once('error', reject);
          socket.write(payload);
        }),
        5000,
        `echo over ${path}`,
      );
    } finally {
      socket.destroy();
    }
  }

  it('serves a socket path alone, and removes the file on close', async () => {
    const path = join(dir, 'alone.sock');
    const server = createEchoServer({ port: [], unix: path });
    const address = await server.listen();
    assert.equal(address.url, `unix://${path}`);
    assert.equal(server.addresses.length, 1);
    assert.equal(await unixRoundTrip(path, 'over a unix socket'), 'over a unix socket');
    await server.close({ timeoutMs: 1000 });
    assert.equal(existsSync(path), false);
  });

  it('replaces a stale socket file left by a crashed server', async () => {
    const path = join(dir, 'stale.sock');
    // A process that binds the path and exits without unlinking it: what a crash leaves.
    const crashed = spawnSync('python3', [
      '-c',
      `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(path)})`,
    ]);
    assert.equal(crashed.status, 0, String(crashed.stderr));
    assert.ok(existsSync(path));
    const server = createEchoServer({ port: [], unix: path });
    await server.listen();
    try {
      assert.equal(await unixRoundTrip(path, 'fresh'), 'fresh');
    } finally {
      await server.close({ timeoutMs: 1000 });
    }
  });

  it('refuses a path a live server holds, and one that is not a socket', async () => {
    const path = join(dir, 'live.sock');
    const first = createEchoServer({ port: [], unix: path });
    await first.listen();
    try {
      const second = createEchoServer({ port: [], unix: path });
      await assert.rejects(
        second.listen(),
        (err: unknown) => err instanceof ListenError && /another server is listening/.test(err.message),
      );
      assert.equal(await unixRoundTrip(path, 'still mine'), 'still mine');
      await assert.rejects(createEchoServer({ port: [], unix: dir }).listen(), /not a socket/);
    } finally {
      await first.close({ timeoutMs: 1000 });
    }
  });

  it('--unix alone serves only the socket; with --port, both', async () => {
    const path = join(dir, 'cli.sock');
    const { child, result } = spawnCli(['serve', '--unix', path, '--quiet']);
    let stdout = '';
    await withTimeout(
      new Promise<void>((resolve) => {
        child.stdout!.on('data', (chunk: Buffer) => {
          stdout += chunk.toString();
          if (stdout.includes('\n')) resolve();
        });
      }),
      10_000,
      'the listening line',
    );
    child.kill('SIGTERM');
    await result;
    assert.match(stdout, new RegExp(`^echoplex listening on unix://${path} \\(`));
    assert.doesNotMatch(stdout, /tcp:/);
    // Unix sockets are served by the portable engine, whatever plain TCP would have had.
    assert.match(stdout, /, portable engine\)$/m);
  });

  it('a client to a socket path with no server says so, and exits 1', async () => {
    const result = await runCli(['client', '--unix', join(dir, 'nobody.sock')], { input: 'hello\n' });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /cannot connect to .*nobody\.sock: no such socket file \(is the server running\?\)/);
  });

  it('--udp with --unix alone is a usage error: UDP answers on port numbers', async () => {
    const result = await runCli(['serve', '--unix', join(dir, 'udp.sock'), '--udp']);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /--udp answers on the TCP port numbers, and --unix alone serves none: give --port too/);
  });
});
