// TLS and mTLS with certificates made by openssl, checked with Node's tls client and openssl s_client.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import tls from 'node:tls';
import { encodeProxyV2, loadTlsOptions } from '../src/index.js';
import { runCli, startServe } from './helpers/cli.js';
import { recordingLogger } from './helpers/logs.js';
import { forEachEngine } from './helpers/engines.js';
import { findProgram, skipUnless, suite } from './helpers/peers.js';
import { connectTo, readToEnd, startServer } from './helpers/sockets.js';
import { waitUntil, withTimeout } from './helpers/timeout.js';

const OPENSSL = findProgram(['openssl'], ['version']);

function openssl(dir: string, args: string[]): void {
  const result = spawnSync(OPENSSL!, args, { cwd: dir, encoding: 'utf8', timeout: 30_000 });
  assert.equal(result.status, 0, `openssl ${args.join(' ')}: ${result.stderr}`);
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA. */
function makeCertificates(dir: string): void {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(dir, [
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-subj',
    '/CN=echoplex test CA',
    '-days',
    '2',
  ]);
  for (const [name, subject, extension] of [
    ['server', '/CN=localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
    ['client', '/O=echoplex tests/CN=client-1', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    writeFileSync(join(dir, `${name}.ext`), `${extension}\n`);
    openssl(dir, ['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject]);
    openssl(dir, [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    ]);
  }
}

/** Connects with TLS, sends `payload`, half-closes, and returns everything echoed. */
async function tlsEcho(port: number, payload: string, options: tls.ConnectionOptions): Promise<string> {
  const socket = tls.connect({ host: '127.0.0.1', port, ...options });
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', () => resolve());
      socket.once('error', reject);
    }),
    5000,
    'the TLS handshake',
  );
  const reply = readToEnd(socket);
  socket.end(payload);
  return (await reply).toString();
}

suite('TLS', skipUnless(OPENSSL, 'openssl', 'openssl'), () =>
  forEachEngine('TLS', () => {
    let dir = '';
    const file = (name: string) => join(dir, name);
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'echoplex-tls-'));
      makeCertificates(dir);
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('says in words, naming the flag and the file, when a certificate and key cannot serve (exit 2)', async () => {
      const cases: Array<[string[], RegExp]> = [
        [
          ['--tls-cert', file('server.key'), '--tls-key', file('server.crt')],
          /--tls-cert: .*server\.key holds no certificate in PEM \(it is a private key: are --tls-cert and --tls-key swapped\?\)/,
        ],
        [
          ['--tls-cert', file('server.crt'), '--tls-key', file('client.key')],
          /--tls-key: .*client\.key is not the private key of the certificate in .*server\.crt/,
        ],
        [
          ['--tls-cert', file('server.crt'), '--tls-key', file('server.key'), '--tls-ca', file('ca.key')],
          /--tls-ca: .*ca\.key holds no certificate in PEM \(it is a private key\)/,
        ],
      ];
      for (const [args, message] of cases) {
        const result = await runCli(['serve', '--port', '0', ...args]);
        assert.equal(result.code, 2, result.stderr);
        assert.match(result.stderr, message);
        assert.doesNotMatch(result.stderr, /unexpected error|routines::/);
      }
    });

    it('serves --tls-cert/--tls-key to Node and to openssl s_client, verified against the CA', async () => {
      const serve = await startServe([
        '--tls-cert',
        file('server.crt'),
        '--tls-key',
        file('server.key'),
        '--transform',
        'upper',
      ]);
      try {
        assert.equal(await tlsEcho(serve.port, 'over tls', { ca: readFileSync(file('ca.crt')) }), 'OVER TLS');
        const sClient = spawn(
          OPENSSL!,
          [
            's_client',
            '-connect',
            `127.0.0.1:${serve.port}`,
            '-CAfile',
            file('ca.crt'),
            '-verify_return_error',
            '-quiet',
          ],
          { stdio: ['pipe', 'pipe', 'pipe'] },
        );
        let output = '';
        sClient.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
        sClient.stdin.write('from openssl\n');
        await waitUntil(() => output.includes('FROM OPENSSL'), 10_000, 'openssl s_client to get the echo');
        sClient.kill();
      } finally {
        await serve.stop();
      }
    });

    it('mTLS: logs the client certificate subject, refuses a client without one, and goes on', async () => {
      const logger = recordingLogger();
      const options = await loadTlsOptions(
        { certFile: file('server.crt'), keyFile: file('server.key'), caFile: file('ca.crt') },
        '127.0.0.1',
      );
      const running = await startServer({ tls: options, logger });
      try {
        const ca = readFileSync(file('ca.crt'));
        await assert.rejects(tlsEcho(running.port, 'no certificate', { ca }));
        await waitUntil(
          () => running.server.stats().errors.tls_handshake === 1,
          5000,
          'the failed handshake to be counted',
        );
        // Plain TCP on a TLS port is a handshake failure too, never a crash.
        const plain = await connectTo(running.port);
        plain.on('error', () => {});
        plain.write('GET / HTTP/1.0\r\n\r\n');
        await readToEnd(plain).catch(() => Buffer.alloc(0));
        await waitUntil(
          () => running.server.stats().errors.tls_handshake === 2,
          5000,
          'the plain-TCP handshake failure',
        );

        const echoed = await tlsEcho(running.port, 'with a certificate', {
          ca,
          cert: readFileSync(file('client.crt')),
          key: readFileSync(file('client.key')),
        });
        assert.equal(echoed, 'with a certificate');
        const open = logger.events.find((event) => event.fields['event'] === 'open');
        assert.equal(open?.fields['subject'], 'O=echoplex tests,CN=client-1');
        assert.match(open!.message, /client certificate O=echoplex tests,CN=client-1/);
        assert.ok(logger.events.some((event) => event.fields['kind'] === 'tls_handshake' && event.level === 'warn'));
      } finally {
        await running.close();
      }
    });

    it("mTLS with echoplex's own tools: client, ping and bench take --tls-cert/--tls-key, and say when the server wants one", async () => {
      const serve = await startServe([
        '--tls-cert',
        file('server.crt'),
        '--tls-key',
        file('server.key'),
        '--tls-ca',
        file('ca.crt'),
      ]);
      try {
        const target = ['--port', String(serve.port), '--tls-ca', file('ca.crt')];
        const identity = ['--tls-cert', file('client.crt'), '--tls-key', file('client.key')];
        const required = /the server requires a client certificate \(--tls-cert\/--tls-key\)/;
        const ping = await runCli(['ping', ...target, '-c', '1']);
        assert.equal(ping.code, 1);
        assert.match(ping.stdout + ping.stderr, required);
        const client = await runCli(['client', ...target], { input: 'x\n' });
        assert.equal(client.code, 1);
        assert.match(client.stderr, required);
        const bench = await runCli(['bench', ...target, '-n', '10', '-c', '1']);
        assert.equal(bench.code, 1);
        assert.match(bench.stderr, required);

        const pinged = await runCli(['ping', ...target, ...identity, '-c', '1']);
        assert.equal(pinged.code, 0, pinged.stdout + pinged.stderr);
        const echoed = await runCli(['client', ...target, ...identity], { input: 'mutual\n' });
        assert.equal(echoed.code, 0, echoed.stderr);
        assert.equal(echoed.stdout, 'mutual\n');
        const loaded = await runCli(['bench', ...target, ...identity, '-n', '200', '-c', '2']);
        assert.equal(loaded.code, 0, loaded.stderr);
        const half = await runCli(['ping', ...target, '--tls-cert', file('client.crt'), '-c', '1']);
        assert.equal(half.code, 2);
        assert.match(half.stderr, /--tls-cert and --tls-key go together/);
      } finally {
        await serve.stop();
      }
    });

    it('openssl s_client with ALPN and SNI: --hello reports both, a client offering only other protocols is refused, and a session resumes', async () => {
      const serve = await startServe([
        '--tls-cert',
        file('server.crt'),
        '--tls-key',
        file('server.key'),
        '--tls-alpn',
        'h2,http/1.1',
        '--hello',
      ]);
      try {
        // s_client -quiet waits for the server to close, which an echo server never does: it is
        // stopped once the echo is back, or left to exit by itself where the handshake fails.
        const sClient = async (alpn: string) => {
          const child = spawn(
            OPENSSL!,
            [
              's_client',
              '-connect',
              `127.0.0.1:${serve.port}`,
              '-servername',
              'echo.test',
              '-alpn',
              alpn,
              '-CAfile',
              file('ca.crt'),
              '-verify_return_error',
              '-quiet',
            ],
            { stdio: ['pipe', 'pipe', 'pipe'] },
          );
          let stdout = '';
          let stderr = '';
          child.stdout.on('data', (chunk: Buffer) => {
            stdout += chunk.toString();
            if (/^alpn$/m.test(stdout)) child.kill();
          });
          child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
          child.stdin.end('alpn\n');
          const [status] = (await withTimeout(once(child, 'exit'), 10_000, 'openssl s_client').catch((err: Error) => {
            child.kill('SIGKILL');
            throw err;
          })) as [number | null];
          return { stdout, stderr, status };
        };
        const agreed = await sClient('spdy/1,http/1.1');
        const hello = JSON.parse(agreed.stdout.split('\n')[0]!) as { tls: Record<string, unknown> };
        assert.equal(hello.tls.alpn, 'http/1.1', agreed.stdout);
        assert.equal(hello.tls.sni, 'echo.test');
        assert.equal(hello.tls.protocol, 'TLSv1.3');
        assert.match(agreed.stdout, /^alpn$/m, 'the echo follows the hello line');
        // RFC 7301 3.2: no protocol in common is a fatal no_application_protocol alert.
        const refused = await sClient('spdy/1');
        assert.notEqual(refused.status, 0);
        assert.match(refused.stderr, /no application protocol/);
        assert.doesNotMatch(refused.stdout, /"instance"/);

        // TLS 1.3 resumption: the ticket of the first connection makes the second an abbreviated handshake.
        const connectOnce = (session?: Buffer) =>
          withTimeout(
            new Promise<{ ticket: Buffer | undefined; reused: boolean }>((resolve, reject) => {
              let ticket: Buffer | undefined;
              const socket = tls.connect({
                host: '127.0.0.1',
                port: serve.port,
                ca: readFileSync(file('ca.crt')),
                servername: 'localhost',
                ...(session !== undefined && { session }),
              });
              socket.on('session', (received: Buffer) => (ticket = received));
              socket.once('error', reject);
              // The hello line comes after the handshake, and the tickets with or before it.
              socket.once('data', () => {
                const reused = socket.isSessionReused();
                setTimeout(() => {
                  socket.end();
                  resolve({ ticket, reused });
                }, 50);
              });
            }),
            5000,
            'a TLS connection',
          );
        const first = await connectOnce();
        assert.equal(first.reused, false);
        assert.ok(first.ticket !== undefined, 'the server sent a session ticket');
        assert.equal((await connectOnce(first.ticket)).reused, true, 'the second connection resumed');
      } finally {
        await serve.stop();
      }
    });

    it('openssl s_client with the client certificate passes mTLS', async () => {
      const serve = await startServe([
        '--tls-cert',
        file('server.crt'),
        '--tls-key',
        file('server.key'),
        '--tls-ca',
        file('ca.crt'),
      ]);
      try {
        const sClient = spawn(
          OPENSSL!,
          [
            's_client',
            '-connect',
            `127.0.0.1:${serve.port}`,
            '-CAfile',
            file('ca.crt'),
            '-cert',
            file('client.crt'),
            '-key',
            file('client.key'),
            '-verify_return_error',
            '-quiet',
          ],
          { stdio: ['pipe', 'pipe', 'pipe'] },
        );
        let output = '';
        sClient.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
        sClient.stdin.write('mutual\n');
        await waitUntil(() => output.includes('mutual'), 10_000, 'openssl s_client to get the echo');
        sClient.kill();
        await waitUntil(
          () => serve.stderr().includes('client certificate O=echoplex tests,CN=client-1'),
          5000,
          'the subject in the log',
        );
      } finally {
        await serve.stop();
      }
    });
  }),
);

forEachEngine('TLS with a self-signed certificate', () => {
  it('generates one valid for 127.0.0.1 that a client can pin', async () => {
    const options = await loadTlsOptions({ selfSigned: true }, '127.0.0.1');
    const running = await startServer({ tls: options });
    try {
      assert.equal(running.server.addresses[0]!.url, `tls://127.0.0.1:${running.port}`);
      // Pinning the generated certificate as the only CA also checks its name matches 127.0.0.1.
      assert.equal(await tlsEcho(running.port, 'pinned', { ca: options.cert as string }), 'pinned');
    } finally {
      await running.close();
    }
  });

  it('--tls-self-signed from the CLI', async () => {
    const serve = await startServe(['--tls-self-signed', '--quiet']);
    try {
      assert.equal(
        await tlsEcho(serve.port, 'insecure is fine here', { rejectUnauthorized: false }),
        'insecure is fine here',
      );
    } finally {
      await serve.stop();
    }
  });
});

forEachEngine('TLS behind a proxy that sends the PROXY protocol', () => {
  /** A raw TCP connection that sends `header` in clear, then speaks TLS over the same socket. */
  async function proxiedTls(port: number, header: Buffer, payload: string): Promise<string> {
    const raw = await connectTo(port);
    raw.write(header);
    return tlsEcho(port, payload, { socket: raw, rejectUnauthorized: false });
  }

  it('reads the header in clear, then serves TLS, and logs the client it names', async () => {
    const logger = recordingLogger();
    const running = await startServer({
      tls: await loadTlsOptions({ selfSigned: true }, '127.0.0.1'),
      proxyProtocol: true,
      logger,
    });
    try {
      const header = encodeProxyV2({
        source: { address: '198.51.100.23', port: 50_000 },
        destination: { address: '127.0.0.1', port: running.port },
      });
      assert.equal(await proxiedTls(running.port, header, 'through the proxy'), 'through the proxy');
      const open = logger.events.find((event) => event.fields['event'] === 'open');
      assert.equal(open?.fields['peer'], '198.51.100.23:50000');
      assert.match(open!.message, /via 127\.0\.0\.1:\d+/);

      // No header: nothing is served, and it is counted.
      const bare = await connectTo(running.port);
      bare.on('error', () => {});
      const nothing = readToEnd(bare);
      bare.write('\x16\x03\x01 a TLS hello where the header should be');
      assert.equal((await nothing).length, 0);
      await waitUntil(() => running.server.stats().errors.proxy_header === 1, 5000, 'the bad header to be counted');
    } finally {
      await running.close();
    }
  });
});

forEachEngine('TLS handshakes that do not finish', () => {
  // The same on both listeners: Node's TLS server, and the socket that read a PROXY header first.
  for (const proxyProtocol of [false, true]) {
    const prefix = () =>
      proxyProtocol
        ? encodeProxyV2({
            source: { address: '198.51.100.7', port: 4000 },
            destination: { address: '127.0.0.1', port: 1 },
          })
        : Buffer.alloc(0);

    it(`${proxyProtocol ? 'behind a PROXY header: ' : ''}a client that leaves mid-handshake is closed at once, and one that stalls at the handshake timeout`, async () => {
      const options = { ...(await loadTlsOptions({ selfSigned: true }, '127.0.0.1')), handshakeTimeout: 300 };
      const logger = recordingLogger();
      const running = await startServer({ tls: options, proxyProtocol, logger });
      try {
        // Plain text and a FIN, too short for OpenSSL to call it wrong: it waits for more.
        const leaving = await connectTo(running.port);
        leaving.on('error', () => {});
        const ended = readToEnd(leaving, 2000);
        leaving.end(Buffer.concat([prefix(), Buffer.from('hi\n')]));
        assert.equal((await ended).length, 0);

        const started = Date.now();
        const stalling = await connectTo(running.port);
        stalling.on('error', () => {});
        const closed = readToEnd(stalling, 5000);
        stalling.write(prefix());
        await closed;
        assert.ok(Date.now() - started >= 250, 'closed by the timeout, not before it');
        await waitUntil(() => running.server.stats().errors.tls_handshake === 2, 5000, 'both to be counted');

        // Plain text long enough to be judged: logged in OpenSSL's words, not its internals.
        const plain = await connectTo(running.port);
        plain.on('error', () => {});
        const refused = readToEnd(plain, 2000);
        plain.write(Buffer.concat([prefix(), Buffer.from('hello, plain text\n')]));
        await refused;
        await waitUntil(
          () => running.server.stats().errors.tls_handshake === 3,
          5000,
          'the plain client to be counted',
        );
        // Behind a proxy, the client the header names, as connections are logged.
        const expected = proxyProtocol
          ? /^TLS handshake with 198\.51\.100\.7:4000 via 127\.0\.0\.1:\d+ failed: wrong version number$/
          : /^TLS handshake with 127\.0\.0\.1:\d+ failed: wrong version number$/;
        assert.ok(
          logger.messages().some((m) => expected.test(m)),
          logger.messages().join('\n'),
        );
      } finally {
        await running.close();
      }
    });
  }
});
