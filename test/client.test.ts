// The client library in prompt mode, driven through streams against a real server.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { describe, it } from 'node:test';
import { PassThrough } from 'node:stream';
import { runClient } from '../src/index.js';
import { CLI, runCli, startServe } from './helpers/cli.js';
import { findProgram } from './helpers/peers.js';
import { startServer } from './helpers/sockets.js';
import { delay, waitUntil, withTimeout } from './helpers/timeout.js';

const SCRIPT = findProgram(['script', '/usr/bin/script'], ['--version']);

describe('client prompt mode', () => {
  it('prompts, shows each reply whole, survives an empty line, and ends on EOF', async () => {
    const running = await startServer({ transform: 'upper' });
    const input = new PassThrough();
    const output = new PassThrough();
    let shown = '';
    output.setEncoding('utf8').on('data', (s: string) => (shown += s));
    const done = runClient({ port: running.port, input, output, interactive: true });
    try {
      await waitUntil(() => shown === '>:', 5000, 'the first prompt');
      input.write('hello\n');
      await waitUntil(() => shown === '>:HELLO\n>:', 5000, 'the reply and a new prompt');
      input.write('\n');
      await waitUntil(() => shown === '>:HELLO\n>:\n>:', 5000, 'an empty line to come back');
      input.write('你好 abc\n');
      await waitUntil(() => shown.endsWith('>:你好 ABC\n>:'), 5000, 'a UTF-8 line to come back');
      input.end();
      await withTimeout(done, 5000, 'the client to finish after EOF');
    } finally {
      await running.close();
    }
  });

  it('rejects when the server closes first', async () => {
    const running = await startServer();
    const input = new PassThrough();
    const output = new PassThrough().resume();
    const done = runClient({ port: running.port, input, output, interactive: true });
    await waitUntil(() => running.server.connections.size === 1, 5000, 'the client to connect');
    for (const connection of running.server.connections) connection.finish();
    await assert.rejects(withTimeout(done, 5000, 'client to notice'), /server closed the connection/);
    await running.close();
  });
});

describe('client connect timeout', () => {
  it('gives up on a server that accepts and never answers (TLS, WebSocket) after --timeout, and exits 1', async () => {
    // Accepts, reads, answers nothing: no TLS handshake, no HTTP upgrade.
    const silent = net.createServer((socket) => socket.resume());
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as net.AddressInfo;
    try {
      for (const target of [['--tls-insecure', '--port', String(port)], [`ws://127.0.0.1:${port}/`]]) {
        const started = Date.now();
        const result = await runCli(['client', ...target, '--timeout', '0.5'], { input: 'hi\n', ms: 10_000 });
        assert.equal(result.code, 1, target.join(' '));
        assert.match(result.stderr, /cannot connect to .*: no answer within 0\.5 s/);
        assert.ok(Date.now() - started < 8000, 'gave up at its timeout');
      }
      const zero = await runCli(['client', '--port', String(port), '--timeout', '0'], { input: '' });
      assert.equal(zero.code, 2);
    } finally {
      silent.close();
    }
  });

  it('after the end of input, gives up on a server that answers but never closes, once it has been silent for --timeout', async () => {
    // Echoes, and ignores the client's FIN, as some servers do.
    const sockets: net.Socket[] = [];
    const open = net.createServer({ allowHalfOpen: true }, (socket) =>
      sockets.push(socket.on('data', (chunk) => socket.write(chunk)).on('end', () => {})),
    );
    await new Promise<void>((resolve) => open.listen(0, '127.0.0.1', resolve));
    try {
      const result = await runCli(
        ['client', '--port', String((open.address() as net.AddressInfo).port), '--timeout', '0.5'],
        { input: 'still echoed\n', ms: 10_000 },
      );
      assert.equal(result.stdout, 'still echoed\n');
      assert.equal(result.code, 1);
      assert.match(
        result.stderr,
        /the server sent nothing for 0\.5 s after the end of input, and did not close the connection/,
      );
    } finally {
      sockets.forEach((socket) => socket.destroy());
      open.close();
    }
  });
});

describe('client --udp', () => {
  it('refuses a line too big for one datagram, saying so, instead of waiting for a reply to nothing', async () => {
    const serve = await startServe(['-q', '--udp']);
    try {
      const result = await runCli(['client', '--udp', '--port', String(serve.port), '--timeout', '1'], {
        input: `short\n${'x'.repeat(70_000)}\n`,
      });
      assert.equal(result.code, 1, result.stderr);
      assert.equal(result.stdout, 'short\n');
      assert.match(
        result.stderr,
        /line 2 is 70,000 bytes, more than one UDP datagram holds \(65,507\): it was not sent/,
      );
    } finally {
      await serve.stop();
    }
  });

  it('exits 1 when a line got no reply', async () => {
    const silent = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', resolve));
    try {
      const result = await runCli(['client', '--udp', '--port', String(silent.address().port), '--timeout', '0.3'], {
        input: 'a\nb\n',
      });
      assert.equal(result.code, 1);
      assert.match(result.stderr, /no reply came to 2 of 2 lines/);
    } finally {
      silent.close();
    }
  });

  it('reports a reply not come within --timeout, and flags the next reply as maybe that late one', async () => {
    // Answers the first datagram only after 600 ms, the rest at once.
    const peer = dgram.createSocket('udp4');
    let first = true;
    let late: NodeJS.Timeout | undefined;
    peer.on('message', (message, from) => {
      const answer = () => peer.send(message, from.port, from.address);
      if (first) late = setTimeout(answer, 600);
      else answer();
      first = false;
    });
    await new Promise<void>((resolve) => peer.bind(0, '127.0.0.1', resolve));
    try {
      const result = await runCli(['client', `udp://127.0.0.1:${peer.address().port}`, '--timeout', '0.3'], {
        input: 'one\ntwo\n',
      });
      // A line whose reply did not come in time is a line without its reply: exit 1, as over TCP.
      assert.equal(result.code, 1, result.stderr);
      assert.equal(result.stdout, 'two\n');
      assert.match(
        result.stderr,
        /^\(no reply from 127\.0\.0\.1:\d+ within 0\.3s\)\n\(this may be the late reply to an earlier line\)\necho.*no reply came to 1 of 2 lines\n$/,
      );
    } finally {
      clearTimeout(late);
      peer.close();
    }
  });
});

describe('client on a terminal', () => {
  it(
    'on Ctrl-C while a reply is stalled, says it is waiting and that a second Ctrl-C quits',
    { skip: SCRIPT === undefined && 'script (util-linux) is not installed' },
    async () => {
      const server = await startServe(['--quiet', '--delay', '30']);
      const child = spawn(SCRIPT!, ['-qfec', `${process.execPath} ${CLI} client --port ${server.port}`, '/dev/null'], {
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      const exited = once(child, 'exit');
      let output = '';
      child.stdout.setEncoding('utf8').on('data', (text: string) => (output += text));
      try {
        await waitUntil(() => output.includes('>:'), 10_000, 'the prompt');
        child.stdin.write('hello\r');
        await delay(200);
        child.stdin.write('\x03');
        await waitUntil(
          () => /waiting up to 5 s for the replies still owed; Ctrl-C again to quit now/.test(output),
          5000,
          'the notice',
        );
        child.stdin.write('\x03');
        const [code] = (await withTimeout(exited, 5000, 'the client to quit on the second Ctrl-C')) as [number | null];
        assert.equal(code, 130);
      } finally {
        child.kill('SIGKILL');
        await server.stop('SIGKILL');
      }
    },
  );

  // script(1) gives the client a pseudo-terminal, as a person at the prompt has: its stdin then
  // stays open, and a client that failed must still exit without waiting for another line.
  for (const [kind, serveArgs, url] of [
    ['TCP', [], (port: number) => `tcp://127.0.0.1:${port}`],
    ['UDP', ['--udp'], (port: number) => `udp://127.0.0.1:${port}`],
    ['WebSocket', ['--ws'], (port: number) => `ws://127.0.0.1:${port}/`],
  ] as const) {
    it(
      `${kind}: exits 1 as soon as the server is gone, without waiting for more input`,
      { skip: SCRIPT === undefined && 'script (util-linux) is not installed' },
      async () => {
        const server = await startServe(['--quiet', '--transform', 'upper', ...serveArgs]);
        const child = spawn(SCRIPT!, ['-qfec', `${process.execPath} ${CLI} client ${url(server.port)}`, '/dev/null'], {
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        // Listened for from the start: the client may be gone before the server has finished stopping.
        const exited = once(child, 'exit');
        let output = '';
        child.stdout.setEncoding('utf8').on('data', (text: string) => (output += text));
        try {
          await waitUntil(() => output.includes('>:'), 10_000, 'the prompt');
          child.stdin.write('hello\r');
          await waitUntil(() => output.includes('HELLO'), 10_000, 'the reply');
          await server.stop();
          // Over UDP nothing tells the client until it sends: the next datagram meets a closed port.
          if (kind === 'UDP') child.stdin.write('anyone?\r');
          const [code] = (await withTimeout(exited, 10_000, 'the client to exit')) as [number | null];
          assert.equal(code, 1, output);
          assert.match(
            output,
            kind === 'UDP' ? /cannot reach .* by UDP: connection refused/ : /the server closed the connection/,
          );
        } finally {
          child.kill('SIGKILL');
          await server.stop('SIGKILL');
        }
      },
    );
  }
});
