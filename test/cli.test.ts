// The built CLI as a user runs it: exit statuses, messages, the listening line, signals.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { addonAbsence } from '../src/native/addon.js';
import { runCli, spawnCli, startServe } from './helpers/cli.js';
import { connectTo, readToEnd } from './helpers/sockets.js';
import { waitUntil, withTimeout } from './helpers/timeout.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

describe('echoplex --version', () => {
  const packageVersion = (
    JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  ).version;
  for (const flag of ['--version', '-V']) {
    it(`${flag} prints package.json's version and exits 0`, async () => {
      const result = await runCli([flag]);
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, `${packageVersion}\n`);
    });
  }
});

describe('echoplex serve: bad input', () => {
  for (const args of [
    ['--port', '70000'],
    ['--port', 'abc'],
    ['--bogus'],
    ['--transform', 'sideways'],
    ['--max-buffered', 'lots'],
  ]) {
    it(`exits 2 with a one-line error for ${args.join(' ')}`, async () => {
      const result = await runCli(['serve', ...args]);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, /error: /);
      assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
    });
  }

  it('exits 1 saying the port is in use', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as net.AddressInfo;
    try {
      const result = await runCli(['serve', '--port', String(port)]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /already in use/);
      assert.doesNotMatch(result.stderr, /\n\s+at /);
    } finally {
      blocker.close();
    }
  });
});

describe('echoplex serve', () => {
  it('prints the real address and transform, and serves', async () => {
    const server = await startServe(['--transform', 'upper']);
    try {
      const result = await runCli(['client', '--port', String(server.port)], { input: 'hello\n' });
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, 'HELLO\n');
      assert.match(server.stderr(), /new connection from 127\.0\.0\.1:\d+/);
    } finally {
      await server.stop();
    }
  });

  it('--quiet drops per-connection lines', async () => {
    const server = await startServe(['--quiet']);
    try {
      const result = await runCli(['client', '--port', String(server.port)], { input: 'x\n' });
      assert.equal(result.stdout, 'x\n');
    } finally {
      await server.stop();
    }
    assert.doesNotMatch(server.stderr(), /new connection/);
  });

  it('on SIGTERM delivers a 1 MiB message in flight before EOF, then exits 0', async () => {
    const server = await startServe(['--quiet']);
    const socket = await connectTo(server.port);
    const payload = randomBytes(1024 * 1024);
    const reply = readToEnd(socket, 20_000);
    socket.write(payload);
    // Signal while the bytes are still moving through the server.
    await new Promise((resolve) => setTimeout(resolve, 5));
    server.child.kill('SIGTERM');
    const received = await reply;
    socket.end();
    assert.equal(received.length, payload.length);
    assert.ok(received.equals(payload));
    const exit = await server.exited().finally(() => server.child.kill('SIGKILL'));
    assert.deepEqual(exit, { code: 0, signal: null }, server.stderr());
  });
});

describe('npm start', () => {
  it('passes a kill -TERM on to the server, which drains and exits instead of being orphaned', async () => {
    const npm = spawn('npm', ['start', '--', '--port', '0', '-q'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    npm.stdout!.setEncoding('utf8').on('data', (s: string) => (output += s));
    npm.stderr!.setEncoding('utf8').on('data', (s: string) => (output += s));
    try {
      await waitUntil(() => /listening on tcp:\/\/127\.0\.0\.1:\d+/.test(output), 20_000, 'npm start to listen');
      const port = Number(/listening on tcp:\/\/127\.0\.0\.1:(\d+)/.exec(output)![1]);
      npm.kill('SIGTERM');
      await withTimeout(once(npm, 'exit'), 10_000, 'npm to exit');
      await waitUntil(() => /shut down/.test(output), 5000, 'the server to drain');
      // Nothing answers on the port: no orphaned server.
      await assert.rejects(connectTo(port));
    } finally {
      npm.kill('SIGKILL');
    }
  });
});

describe('echoplex serve: shutdown', () => {
  async function streamingClient(port: number): Promise<{ stop(): void }> {
    const socket = await connectTo(port);
    socket.on('data', () => {});
    socket.on('error', () => {});
    const timer = setInterval(() => socket.write(randomBytes(1000)), 10);
    return {
      stop: () => {
        clearInterval(timer);
        socket.destroy();
      },
    };
  }

  it('--shutdown-timeout closes what is left, counts it, and exits 0', async () => {
    const server = await startServe(['--quiet', '--shutdown-timeout', '1']);
    const client = await streamingClient(server.port);
    try {
      const started = Date.now();
      const exit = await server.stop('SIGTERM', 10_000);
      assert.deepEqual(exit, { code: 0, signal: null });
      assert.ok(Date.now() - started < 5000);
      assert.match(server.stderr(), /shutdown timeout: closed 1 connection that was still open/);
    } finally {
      client.stop();
    }
  });

  it('a second signal exits at once', async () => {
    const server = await startServe(['--quiet', '--shutdown-timeout', '60']);
    const client = await streamingClient(server.port);
    try {
      server.child.kill('SIGTERM');
      await new Promise((resolve) => setTimeout(resolve, 300));
      const started = Date.now();
      const exit = await server.stop('SIGINT', 5000);
      assert.ok(Date.now() - started < 3000, 'did not wait for the 60 s drain');
      assert.equal(exit.code, 1);
      assert.match(server.stderr(), /again: closing 1 connection now/);
    } finally {
      client.stop();
    }
  });
});

describe('echoplex client', () => {
  it('streams piped stdin and exits 0 after the last byte', async () => {
    const server = await startServe(['--quiet']);
    try {
      const input = randomBytes(2 * 1024 * 1024).toString('base64');
      const result = await runCli(['client', '--port', String(server.port)], { input });
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, input);
    } finally {
      await server.stop();
    }
  });

  it('says connection refused and exits 1', async () => {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as net.AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    const result = await runCli(['client', '--port', String(port)], { input: 'hi\n' });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /connection refused/);
  });

  it('exits 1 saying so when a reply did not come back whole, whatever cut it short', async () => {
    const servers: Array<[string, string[]]> = [
      ['a TLS port', ['--tls-self-signed']],
      ['a PROXY protocol port', ['--proxy-protocol']],
      ['a server that truncates', ['--fault', 'truncate=1']],
      ['a line over --max-line', ['--framing', 'line', '--max-line', '4']],
    ];
    for (const [what, args] of servers) {
      const serve = await startServe(['-q', ...args]);
      try {
        const result = await runCli(['client', '--port', String(serve.port)], { input: '0123456789\n' });
        assert.equal(result.code, 1, `${what}: exit ${result.code}, stdout ${JSON.stringify(result.stdout)}`);
        assert.match(result.stderr, /before every reply came back whole|connection reset|refused a line/, what);
      } finally {
        await serve.stop();
      }
    }
  });

  it('exits 1 when the server closes first', async () => {
    const rude = net.createServer((socket) => socket.end('bye\n'));
    await new Promise<void>((resolve) => rude.listen(0, '127.0.0.1', resolve));
    const { port } = rude.address() as net.AddressInfo;
    try {
      // stdin stays open: the server, not the client, ends the conversation.
      const { child, result } = spawnCli(['client', '--port', String(port)]);
      child.stdin!.write('hello\n');
      const { code, stdout, stderr } = await result;
      assert.equal(code, 1, stderr);
      assert.match(stderr, /server closed the connection/);
      assert.equal(stdout, 'bye\n');
    } finally {
      rude.close();
    }
  });
});

describe('the installed bin', () => {
  it('dist/cli/main.js is executable, so npx echoplex can run it', async () => {
    const { accessSync, constants } = await import('node:fs');
    const { CLI } = await import('./helpers/cli.js');
    assert.doesNotThrow(() => accessSync(CLI, constants.X_OK));
  });
});

describe('configuration from the environment', () => {
  it('reads ECHOPLEX_<FLAG>, and a flag on the command line wins', async () => {
    const server = await startServe(['--max-buffered', '64k'], {
      env: { ECHOPLEX_TRANSFORM: 'upper', ECHOPLEX_MAX_BUFFERED: 'nonsense', ECHOPLEX_QUIET: '1' },
    });
    try {
      const result = await runCli(['client', '--port', String(server.port)], { input: 'from env\n' });
      assert.equal(result.stdout, 'FROM ENV\n', 'ECHOPLEX_TRANSFORM applied');
      assert.doesNotMatch(server.stderr(), /new connection/, 'ECHOPLEX_QUIET applied');
    } finally {
      await server.stop();
    }
  });

  it('an invalid value is a usage error naming the variable', async () => {
    const result = await runCli(['serve'], { env: { ECHOPLEX_PORT: '70000' } });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /ECHOPLEX_PORT/);
  });

  it('--help lists the variable beside each flag', async () => {
    const result = await runCli(['serve', '--help']);
    for (const variable of [
      'ECHOPLEX_HOST',
      'ECHOPLEX_PORT',
      'ECHOPLEX_MAX_CONNECTIONS',
      'ECHOPLEX_IDLE_TIMEOUT',
      'ECHOPLEX_METRICS_PORT',
      'ECHOPLEX_QUIET',
    ]) {
      assert.match(result.stdout, new RegExp(variable));
    }
  });

  it('--help gives no default for a flag that is off unless given, and one default for --ws-binary', async () => {
    for (const command of ['serve', 'client', 'ping', 'bench']) {
      const help = (await runCli([command, '--help'])).stdout;
      assert.doesNotMatch(help, /default: false/, command);
    }
    const client = (await runCli(['client', '--help'])).stdout.replace(/\s+/g, ' ');
    assert.match(client, /--ws-binary [^-]*\(default: text\) -/);
  });
});

describe('logs', () => {
  it('--log-format json writes one JSON object per event with connection id and peer (each chunk at --log-level debug)', async () => {
    const server = await startServe(['--log-format', 'json', '--log-level', 'debug']);
    try {
      await runCli(['client', '--port', String(server.port)], { input: 'json\n' });
      await new Promise((resolve) => setTimeout(resolve, 200));
    } finally {
      await server.stop();
    }
    const events = server
      .stderr()
      .trim()
      .split('\n')
      .map(
        (line) =>
          JSON.parse(line) as {
            event?: string;
            conn?: number;
            peer?: string;
            bytes?: number;
            level: number;
            msg: string;
          },
      );
    const open = events.find((e) => e.event === 'open');
    const data = events.find((e) => e.event === 'data');
    const close = events.find((e) => e.event === 'close');
    assert.ok(open && data && close, server.stderr());
    assert.match(open.peer!, /^127\.0\.0\.1:\d+$/);
    assert.equal(data.conn, open.conn);
    assert.equal(data.bytes, 5);
    assert.equal(data.level, 20, 'each chunk is logged at debug');
    assert.equal(open.level, 30, 'open and close at info');
    assert.ok(events.some((e) => e.event === 'shutdown'));
  });

  it('at the default level, logs each connection once at open and once at close, not each chunk, on the native engine', async () => {
    // The default engine, whatever ECHOPLEX_ENGINE this test run has.
    const server = await startServe([], { env: { ECHOPLEX_ENGINE: 'auto' } });
    try {
      const result = await runCli(['client', '--port', String(server.port)], { input: 'one\ntwo\nthree\n' });
      assert.equal(result.stdout, 'one\ntwo\nthree\n');
      await new Promise((resolve) => setTimeout(resolve, 200));
    } finally {
      await server.stop();
    }
    const log = server.stderr();
    assert.match(log, /new connection from 127\.0\.0\.1:\d+ \(#1\)/);
    assert.match(log, /connection from 127\.0\.0\.1:\d+ closed \(#1, 14 bytes in, 14 out\)/);
    assert.doesNotMatch(log, /received \d+ bytes/);
    if (addonAbsence() === undefined) assert.match(server.stdout(), /, native engine\)/);
  });

  it('--log-level warn drops info lines', async () => {
    const server = await startServe(['--log-level', 'warn']);
    try {
      await runCli(['client', '--port', String(server.port)], { input: 'x\n' });
    } finally {
      await server.stop();
    }
    assert.doesNotMatch(server.stderr(), /new connection|shut down/);
  });
});

describe('what a newcomer hit: clear errors and clean exits', () => {
  it('bench and ping values no run can use are usage errors (exit 2) that name the flag', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['bench', '--duration', '0'], /--duration must be more than 0/],
      [['bench', '--size', '0'], /--size must be more than 0/],
      [['bench', '--timeout', '0'], /--timeout must be more than 0/],
      [['ping', '-s', '0', '-c', '1'], /--size must be at least 1 byte/],
      [['ping', '--udp', '-s', '70000', '-c', '1'], /a UDP message holds at most 65507 bytes/],
      [['serve', '--max-line', '0'], /--max-line.*must be at least 1 byte/],
      [['serve', '--max-buffered', '0'], /--max-buffered.*must be at least 1 byte/],
      [['bench', '--threshold', 'error-rate<200'], /an error rate is a percentage from 0 to 100/],
    ];
    for (const [args, message] of cases) {
      const started = performance.now();
      const result = await runCli(args, { ms: 10_000 });
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, message);
      assert.ok(performance.now() - started < 4000, `${args.join(' ')} waited instead of refusing`);
    }
  });

  it('serve says what is wrong with a socket path in a missing directory, and with a port given twice', async () => {
    const unix = await runCli(['serve', '--unix', '/nonexistent-echoplex-dir/x.sock']);
    assert.equal(unix.code, 1);
    assert.match(unix.stderr, /no such directory: \/nonexistent-echoplex-dir/);
    assert.doesNotMatch(unix.stderr, /privileges/);
    const twice = await runCli(['serve', '--port', '8080,8080']);
    assert.equal(twice.code, 2);
    assert.match(twice.stderr, /port 8080 is given twice/);
  });

  it('bench at a port nobody listens on says connection refused, prints no table, exits 1', async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const result = await runCli(['bench', '--port', String(closedPort), '--duration', '1'], { ms: 15_000 });
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      new RegExp(`cannot connect to tcp://127\\.0\\.0\\.1:${closedPort}: connection refused`),
    );
    assert.equal(result.stdout, '', 'no table of zeros');
  });

  it('bench --report into a missing directory is refused before the run; a written report says where', async () => {
    const started = performance.now();
    const refused = await runCli(['bench', '--duration', '5', '--report', '/nonexistent-echoplex-dir/r.html'], {
      ms: 10_000,
    });
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /--report: cannot write .*no such directory/);
    assert.ok(performance.now() - started < 4000, 'it ran the bench first');
    const server = await startServe(['--quiet']);
    const dir = await mkdtemp(join(tmpdir(), 'echoplex-report-'));
    try {
      const report = join(dir, 'r.html');
      const written = await runCli(['bench', '--port', String(server.port), '-n', '200', '--report', report], {
        ms: 20_000,
      });
      assert.equal(written.code, 0, written.stderr);
      assert.match(written.stderr, new RegExp(`report written to ${report.replace(/[.]/g, '\\.')}`));
      assert.match(await readFile(report, 'utf8'), /<html/);
    } finally {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('boolean variables take 1/true/yes/on and 0/false/no/off; anything else is a usage error naming the variable', async () => {
    const notQuiet = await startServe([], { env: { ECHOPLEX_QUIET: 'false' } });
    try {
      await runCli(['client', '--port', String(notQuiet.port)], { input: 'x\n' });
      await waitUntil(() => /new connection from/.test(notQuiet.stderr()), 5000, 'the open line');
    } finally {
      await notQuiet.stop();
    }
    const quiet = await startServe([], { env: { ECHOPLEX_QUIET: 'yes' } });
    try {
      await runCli(['client', '--port', String(quiet.port)], { input: 'x\n' });
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.doesNotMatch(quiet.stderr(), /new connection from/);
    } finally {
      await quiet.stop();
    }
    const bad = await runCli(['serve', '--port', '0'], { env: { ECHOPLEX_QUIET: 'maybe' } });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /ECHOPLEX_QUIET must be one of 1, true, yes, on, 0, false, no, off; got "maybe"/);
  });
});

describe('targets as URLs, and a reader that goes away', () => {
  it('client, ping and bench take the target as the listening line prints it', async () => {
    const server = await startServe(['--quiet', '--udp']);
    try {
      const tcp = await runCli(['ping', `tcp://127.0.0.1:${server.port}`, '-c', '1']);
      assert.equal(tcp.code, 0, tcp.stderr);
      assert.match(tcp.stdout, new RegExp(`^PING tcp://127\\.0\\.0\\.1:${server.port}:`, 'm'));
      const udp = await runCli(['ping', `udp://127.0.0.1:${server.port}`, '-c', '1']);
      assert.equal(udp.code, 0, udp.stderr);
      assert.match(udp.stdout, /^PING udp:\/\//m);
      const client = await runCli(['client', `tcp://127.0.0.1:${server.port}`], { input: 'by url\n' });
      assert.equal(client.stdout, 'by url\n');
      const bench = await runCli(['bench', `tcp://127.0.0.1:${server.port}`, '-n', '50', '--json']);
      assert.equal(bench.code, 0, bench.stderr);
      const both = await runCli(['ping', `tcp://127.0.0.1:${server.port}`, '--port', '1']);
      assert.equal(both.code, 2);
      assert.match(both.stderr, /as a URL or with --port, not both/);
      for (const [url, message] of [
        ['tcp://127.0.0.1', /needs a port/],
        ['http://x:1', /unknown kind of target/],
        ['nonsense', /not a target URL/],
      ] as const) {
        const result = await runCli(['ping', url, '-c', '1']);
        assert.equal(result.code, 2, url);
        assert.match(result.stderr, message);
      }
    } finally {
      await server.stop();
    }
  });

  it('refuses flags that name two kinds of target at once, instead of dropping one', async () => {
    const cases = [
      [['client', '--udp', '--tls', '--port', '9'], /--udp sends datagrams in clear/],
      [['client', 'udp://127.0.0.1:9', '--tls-insecure'], /--udp sends datagrams in clear/],
      [['ping', '--udp', '--tls-ca', '/dev/null', '--port', '9', '-c', '1'], /--udp sends datagrams in clear/],
      [['bench', '--udp', '--unix', '/tmp/echoplex-none.sock', '-d', '1'], /--udp and --unix name two targets/],
      [
        ['bench', '--udp', '--proxy-protocol', 'v2', '--port', '9', '-d', '1'],
        /--proxy-protocol opens a stream with a header: not with --udp/,
      ],
    ] as const;
    for (const [args, message] of cases) {
      const result = await runCli([...args], { input: '' });
      assert.equal(result.code, 2, args.join(' '));
      assert.match(result.stderr, message);
    }
  });

  it('stops quietly with status 0 when its reader goes away (ping | head -1)', async () => {
    const server = await startServe(['--quiet']);
    try {
      const { child, result } = spawnCli(['ping', '--port', String(server.port), '-c', '20', '-i', '0.05']);
      child.stdin!.end();
      child.stdout!.once('data', () => child.stdout!.destroy());
      const done = await result;
      assert.equal(done.code, 0, done.stderr);
      assert.doesNotMatch(done.stderr, /EPIPE|Unhandled/);
    } finally {
      await server.stop();
    }
  });
});
