// `echoplex ping` against real servers: each round trip printed and verified, losses and
// mismatches counted, late UDP replies told apart, Ctrl-C for the summary.

import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import { runCli, spawnCli, startServe } from './helpers/cli.js';
import { waitUntil } from './helpers/timeout.js';

const seqLines = (stdout: string) => stdout.split('\n').filter((line) => /^\d+ bytes from .*: seq=\d+/.test(line));

describe('echoplex ping', () => {
  it('times and verifies each message over TCP, and summarises like ping(8)', async () => {
    const server = await startServe(['--quiet']);
    try {
      const result = await runCli(['ping', '--port', String(server.port), '-c', '3', '-i', '0.05']);
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(
        seqLines(result.stdout).map((line) => /seq=(\d+)/.exec(line)![1]),
        ['1', '2', '3'],
      );
      assert.match(result.stdout, /^3 sent, 3 received, 0% lost, 0 mismatched/m);
      assert.match(result.stdout, /^rtt min\/avg\/max\/mdev = [\d.]+\/[\d.]+\/[\d.]+\/[\d.]+ ms$/m);
    } finally {
      await server.stop();
    }
  });

  it('answers through a line-mode server with a prefix, and over UDP with a new socket each time', async () => {
    const server = await startServe(['--quiet', '--framing', 'line', '--prefix', 'hello ', '--udp']);
    try {
      const lines = await runCli([
        'ping',
        '--port',
        String(server.port),
        '-c',
        '2',
        '-i',
        '0.05',
        '--expect-prefix',
        'hello ',
      ]);
      assert.equal(lines.code, 0, lines.stdout + lines.stderr);
      const udp = await runCli([
        'ping',
        '--port',
        String(server.port),
        '-c',
        '2',
        '-i',
        '0.05',
        '--udp',
        '--new-connection',
        '--expect-prefix',
        'hello ',
      ]);
      assert.equal(udp.code, 0, udp.stdout + udp.stderr);
      assert.equal(seqLines(udp.stdout).filter((line) => / connect=[\d.]+ ms time=/.test(line)).length, 2);
      // Connecting a UDP socket sends nothing: no connection is reported.
      const oneSocket = await runCli([
        'ping',
        '--port',
        String(server.port),
        '-c',
        '2',
        '-i',
        '0.05',
        '--udp',
        '--expect-prefix',
        'hello ',
      ]);
      assert.equal(oneSocket.code, 0, oneSocket.stdout + oneSocket.stderr);
      assert.equal(seqLines(oneSocket.stdout).length, 2);
      assert.doesNotMatch(oneSocket.stdout, /connected to/);
    } finally {
      await server.stop();
    }
  });

  it('--new-connection opens one connection per message', async () => {
    const server = await startServe();
    try {
      const result = await runCli(['ping', '--port', String(server.port), '-c', '3', '-i', '0.05', '--new-connection']);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^connect min\/avg\/max\/mdev = /m);
      await waitUntil(
        () => (server.stderr().match(/new connection from/g) ?? []).length === 3,
        5000,
        'three connections',
      );
    } finally {
      await server.stop();
    }
  });

  it('exits 1 on replies that differ from --expect, and when nothing answers', async () => {
    const server = await startServe(['--quiet', '--transform', 'upper']);
    try {
      const result = await runCli(['ping', '--port', String(server.port), '-c', '2', '-i', '0.05']);
      assert.equal(result.code, 1);
      assert.match(result.stdout, /seq=1 time=[\d.]+ ms MISMATCH/);
      assert.match(result.stdout, /^2 sent, 2 received, 0% lost, 2 mismatched/m);
    } finally {
      await server.stop();
    }
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as net.AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const refused = await runCli(['ping', '--port', String(port), '-c', '2', '-i', '0.05']);
    assert.equal(refused.code, 1);
    assert.match(refused.stdout, /seq=1 cannot connect: connection refused \(ECONNREFUSED\)/);
    assert.match(refused.stdout, /^2 sent, 0 received, 100% lost/m);
    // Over UDP the refusal is an ICMP port unreachable for the datagram, said as such.
    const gone = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => gone.bind(0, '127.0.0.1', resolve));
    const udpPort = gone.address().port;
    await new Promise<void>((resolve) => gone.close(resolve));
    const unreachable = await runCli(['ping', '--udp', '--port', String(udpPort), '-c', '2', '-i', '0.05']);
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stdout, /^seq=1 port unreachable \(ECONNREFUSED\)$/m);
    assert.match(unreachable.stdout, /^2 sent, 0 received, 100% lost/m);
  });

  it('says a reset in words, and the next message goes on a new connection', async () => {
    // Resets every connection at its first message, as a server does whose transform fails.
    const server = await startServe(['--quiet', '--fault', 'reset=1']);
    try {
      const result = await runCli(['ping', '--port', String(server.port), '-c', '2', '-i', '0.05']);
      assert.equal(result.code, 1);
      assert.match(result.stdout, /^seq=1 connection reset \(ECONNRESET\)$/m);
      assert.equal(result.stdout.match(/^connected to /gm)?.length, 2, result.stdout);
      assert.match(result.stdout, /^2 sent, 0 received, 100% lost/m);
    } finally {
      await server.stop();
    }
  });

  it('UDP: a reply that comes after its timeout is reported late, not taken for the next one', async () => {
    // Answers the first datagram only after 400 ms, the rest at once.
    const slow = dgram.createSocket('udp4');
    let first = true;
    slow.on('message', (message, from) => {
      const reply = () => slow.send(message, from.port, from.address);
      if (first) setTimeout(reply, 400);
      else reply();
      first = false;
    });
    slow.bind(0, '127.0.0.1');
    await once(slow, 'listening');
    try {
      const result = await runCli([
        'ping',
        '--port',
        String(slow.address().port),
        '--udp',
        '-c',
        '3',
        '-i',
        '0.3',
        '--timeout',
        '0.2',
      ]);
      assert.equal(result.code, 1, 'one message lost');
      assert.match(result.stdout, /^seq=1 no reply within 0\.2 s$/m);
      assert.match(result.stdout, /^late reply to seq=1$/m);
      assert.match(result.stdout, /seq=2 time=/);
      assert.match(result.stdout, /^3 sent, 2 received, 33% lost, 0 mismatched/m);
    } finally {
      slow.close();
    }
  });

  it('Ctrl-C stops it with the summary, exit 0 when every reply came back', async () => {
    const server = await startServe(['--quiet']);
    try {
      const { child, result } = spawnCli(['ping', '--port', String(server.port), '-i', '0.1']);
      let stdout = '';
      child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      await waitUntil(() => /seq=2 /.test(stdout), 5000, 'two replies');
      child.kill('SIGINT');
      const done = await result;
      assert.equal(done.code, 0, done.stderr);
      assert.match(done.stdout, /echo statistics ---\n\d+ sent, \d+ received, 0% lost/);
    } finally {
      await server.stop();
    }
  });
});
