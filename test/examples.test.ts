// The seed's four programs ported to echoplex/selectors: under load, under faults, and beside the originals.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runBench } from '../src/bench/loadgen.js';
import { upperTransform } from '../src/protocol/transforms.js';
import {
  startExample,
  startSeed,
  startTypeScript,
  startTypeScriptWith,
  runExampleClient,
  type Program,
} from './helpers/programs.js';
import { seedUnavailable } from './helpers/seed.js';
import { findProgram } from './helpers/peers.js';
import { closed, connectTo, readBytes, readToEnd, roundTrip } from './helpers/sockets.js';
import { waitUntil, withTimeout } from './helpers/timeout.js';
import { suite } from './helpers/peers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SCRIPT = findProgram(['script', '/usr/bin/script'], ['--version']);

const SERVERS = [
  { name: 'select-server', expect: 'upper' as const },
  { name: 'selectors-server', expect: 'echo' as const },
];

for (const { name, expect } of SERVERS) {
  describe(`examples/${name}.ts`, () => {
    let program: Program;
    before(async () => {
      program = await startExample(name);
    });
    after(() => program.stop());

    const transform = (bytes: Buffer) => (expect === 'upper' ? upperTransform(Buffer.from(bytes)) : bytes);

    it('serves 1,000 concurrent clients with every byte verified', async () => {
      const result = await withTimeout(
        runBench({ port: program.port, connections: 1000, size: 64, messages: 10_000, expect, timeoutSeconds: 15 }),
        60_000,
        'bench',
      );
      assert.equal(result.errors, 0, JSON.stringify(result.errorsByKind));
      assert.equal(result.mismatchedBytes, 0);
      assert.equal(result.messages, 10_000);
    });

    it('survives clients that reset mid-stream and keeps serving', async () => {
      for (let i = 0; i < 10; i++) {
        const victim = await connectTo(program.port);
        victim.write(randomBytes(200_000));
        victim.resetAndDestroy();
        await closed(victim);
      }
      const payload = randomBytes(5000);
      assert.deepEqual(await roundTrip(program.port, payload), transform(payload));
    });

    it('answers everything before closing a half-closed client', async () => {
      const socket = await connectTo(program.port);
      const payload = randomBytes(300_000);
      const reply = readToEnd(socket, 20_000);
      socket.end(payload);
      const received = await reply;
      assert.equal(received.length, payload.length);
      assert.ok(received.equals(transform(payload)));
    });

    it('bounds what it holds for a client that never reads, and keeps it', async () => {
      const socket = await connectTo(program.port);
      socket.pause();
      let sent = 0;
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      // The server stops reading this client, so our writes stall well before 256 MiB.
      for (let i = 0; i < 4096; i++) {
        sent += chunk.length;
        if (!socket.write(chunk)) {
          const drained = await Promise.race([
            new Promise((resolve) => socket.once('drain', () => resolve(true))),
            new Promise((resolve) => setTimeout(() => resolve(false), 1000)),
          ]);
          if (!drained) break;
        }
      }
      assert.ok(sent < 256 * 1024 * 1024, `the server kept reading: ${sent} bytes accepted`);
      // A failure says what the program printed last (its per-message lines left out).
      const lastWords = () =>
        program
          .output()
          .split('\n')
          .filter((line) => !line.startsWith('received from') && !line.startsWith('echoing'))
          .slice(-20)
          .join('\n');
      const back = readBytes(socket, sent, 30_000).catch((err: Error) => {
        throw new Error(`${err.message}; the program's last lines:\n${lastWords()}`);
      });
      socket.resume();
      assert.equal((await back).length, sent, lastWords());
      socket.destroy();
    });
  });
}

describe("the article's selectors server as a newcomer writes it (test/fixtures/article-selectors-server.ts)", () => {
  let program: Program;
  before(async () => {
    program = await startTypeScript('test/fixtures/article-selectors-server.ts');
  });
  after(() => program.stop());

  it('serves 5,000 concurrent clients with every byte verified while others reset mid-stream', async () => {
    const load = withTimeout(
      runBench({
        port: program.port,
        connections: 5000,
        size: 64,
        messages: 20_000,
        expect: 'echo',
        timeoutSeconds: 30,
      }),
      90_000,
      'bench',
    );
    // Clients that reset mid-stream while the 5,000 are served: each is answered once, so the
    // program has accepted it, then sends more and resets without reading. (A client that resets
    // before it is accepted never reaches the program: its address is gone.)
    for (let i = 0; i < 20; i++) {
      const victim = await connectTo(program.port);
      const greeting = Buffer.from(`victim ${i}`);
      const echoed = readBytes(victim, greeting.length, 30_000);
      victim.write(greeting);
      assert.deepEqual(await echoed, greeting);
      victim.write(randomBytes(50_000));
      victim.resetAndDestroy();
      await closed(victim);
    }
    const result = await load;
    assert.equal(result.errors, 0, JSON.stringify(result.errorsByKind));
    assert.equal(result.mismatchedBytes, 0);
    assert.equal(result.messages, 20_000);
    assert.equal(result.connections, 5000);
    const payload = randomBytes(500);
    assert.deepEqual(await roundTrip(program.port, payload), payload);
    assert.match(program.output(), /Client forcibly closed\./, 'a reset reached the program as ConnectionResetError');
  });
});

/**
 * Clients that leave while their echoes are in flight: a FIN right after sending (the echo then
 * meets a closed socket, whose reset comes back), a reset, and a half-close that still reads.
 * Each message fits one recv(1000): a longer one makes the seed's own server die in CPython (its
 * second recv's echo meets the reset, and send raises BrokenPipeError, which it does not catch).
 */
async function churn(port: number, rounds: number): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const client = await connectTo(port);
        client.on('error', () => {});
        client.write(randomBytes(100));
        if (i % 3 === 0) client.destroy();
        else if (i % 3 === 1) client.resetAndDestroy();
        else {
          client.end();
          await readToEnd(client, 10_000).catch(() => Buffer.alloc(0));
        }
        await closed(client, 10_000);
      }),
    );
  }
}

describe('the selectors servers under clients that leave mid-echo, as their CPython originals survive them', () => {
  const servers: Array<[string, () => Promise<Program>]> = [
    ['the CPython original (selectors_server.py)', () => startSeed('selectors_server')],
    [
      'the article server, native engine',
      () => startTypeScriptWith({ ECHOPLEX_ENGINE: 'native' }, 'test/fixtures/article-selectors-server.ts'),
    ],
    [
      'the article server, portable engine',
      () => startTypeScriptWith({ ECHOPLEX_ENGINE: 'portable' }, 'test/fixtures/article-selectors-server.ts'),
    ],
    [
      'examples/selectors-server.ts, native engine',
      () => startTypeScriptWith({ ECHOPLEX_ENGINE: 'native' }, 'examples/selectors-server.ts'),
    ],
    [
      'examples/selectors-server.ts, portable engine',
      () => startTypeScriptWith({ ECHOPLEX_ENGINE: 'portable' }, 'examples/selectors-server.ts'),
    ],
  ];
  for (const [name, start] of servers) {
    it(`${name}: 5 rounds of 50 clients leaving with FIN, RST and half-close, then still echoing`, async () => {
      const program = await start();
      try {
        await withTimeout(churn(program.port, 5), 60_000, 'the churn');
        const payload = randomBytes(300);
        assert.deepEqual(await roundTrip(program.port, payload), payload);
        assert.equal(program.child.exitCode, null, `the server died:\n${program.output().slice(-2000)}`);
        assert.doesNotMatch(program.output(), /BrokenPipeError|Traceback|Uncaught/);
      } finally {
        await program.stop();
      }
    });
  }
});

describe('ported clients', () => {
  const servers: Record<string, Program> = {};
  before(async () => {
    servers['select-server'] = await startExample('select-server');
    servers['selectors-server'] = await startExample('selectors-server');
  });
  after(async () => {
    for (const program of Object.values(servers)) await program.stop();
  });

  for (const client of ['select-client', 'selectors-client']) {
    for (const server of ['select-server', 'selectors-server']) {
      it(`${client} talks to ${server}, empty line included`, async () => {
        const { code, stdout, stderr } = await runExampleClient(
          client,
          servers[server]!.port,
          'hello\n\n你好 mixed Case\n',
        );
        assert.equal(code, 0, stderr);
        // select-client strips each line, as input().strip() does; both keep the empty line.
        const expected = server === 'select-server' ? 'HELLO\n\n你好 MIXED CASE\n' : 'hello\n\n你好 mixed Case\n';
        assert.equal(stdout, expected);
      });
    }
  }
});

describe('ported clients when the server goes away or a line is long', () => {
  for (const client of ['select-client', 'selectors-client']) {
    it(`${client} exits 1 once the server has closed, even with its input still open`, async () => {
      // A server that answers nothing and closes each connection at its first line.
      const server = net.createServer((socket) => socket.once('data', () => socket.end()));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const port = (server.address() as net.AddressInfo).port;
      const child = spawn(process.execPath, ['--import', 'tsx', `examples/${client}.ts`, String(port)], {
        cwd: ROOT,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
      try {
        child.stdin.write('anyone there?\n');
        const [code] = (await withTimeout(once(child, 'exit'), 10_000, `${client} to exit after the server left`)) as [
          number | null,
        ];
        assert.equal(code, 1);
        assert.match(stdout, /server closed the connection/);
      } finally {
        child.kill('SIGKILL');
        await new Promise((resolve) => server.close(resolve));
      }
    });
  }

  it(
    "select-client on a terminal sends a 10,000-character line whole (the terminal's own line editing would cut it at 4095)",
    { skip: SCRIPT === undefined && 'script (util-linux) is not installed' },
    async () => {
      const server = await startExample('select-server');
      try {
        const line = 'q'.repeat(10_000);
        // script(1) gives the client a pseudo-terminal, as a person at a prompt has.
        const child = spawn(
          SCRIPT!,
          ['-qfec', `${process.execPath} --import tsx examples/select-client.ts ${server.port}`, '/dev/null'],
          { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] },
        );
        let output = '';
        child.stdout.setEncoding('utf8').on('data', (text: string) => (output += text));
        try {
          await waitUntil(() => output.includes('>:'), 15_000, 'the prompt');
          child.stdin.write(`${line}\r`);
          await waitUntil(() => output.includes('Q'.repeat(10_000)), 15_000, 'the whole line uppercased');
          child.stdin.write('\x04');
          const [code] = (await withTimeout(once(child, 'exit'), 10_000, 'select-client to exit at end of input')) as [
            number | null,
          ];
          assert.equal(code, 0);
        } finally {
          child.kill('SIGKILL');
        }
      } finally {
        await server.stop();
      }
    },
  );
});

suite('ports beside the seed originals', seedUnavailable(), () => {
  // The line each server prints per message, up to where they must differ (the selectors
  // seed's socket repr names its own descriptor and ports). The select port prints in English
  // what the seed prints in Chinese: the seed's line is read through the translation.
  const MESSAGE_LINE = { select_server: /^(?:收到来自|received from )\[.*$/, selectors_server: /^echoing .* to / };
  const english = (line: string) => line.replace(/^收到来自\[(.*?)\]的数据:/, 'received from [$1]:');
  const messageLines = (program: Program, name: keyof typeof MESSAGE_LINE) =>
    program
      .output()
      .split('\n')
      .flatMap((line) => english(line).match(MESSAGE_LINE[name])?.[0] ?? []);

  for (const name of ['select_server', 'selectors_server'] as const) {
    it(`${name}.py and its port answer the same bytes, and print the same line for each message`, async () => {
      const seed = await startSeed(name);
      const port = await startExample(name.replace('_', '-'));
      const toSeed = await connectTo(seed.port);
      const toPort = await connectTo(port.port);
      try {
        // Small requests, one at a time, on one connection each: what the seed servers handle
        // correctly. (Closing a connection can crash the seed's select server: its KeyError flaw.)
        for (const text of ['hello', 'Mixed Case 123', '你好, world', 'bytes \x00\x01\xfe']) {
          const payload = Buffer.from(text, 'utf8');
          const fromSeed = readBytes(toSeed, payload.length);
          toSeed.write(payload);
          const fromPort = readBytes(toPort, payload.length);
          toPort.write(payload);
          assert.deepEqual(await fromPort, await fromSeed, `reply to ${JSON.stringify(text)}`);
        }
        await waitUntil(
          () => messageLines(seed, name).length === 4 && messageLines(port, name).length === 4,
          5000,
          'a line per message',
        );
        assert.deepEqual(messageLines(port, name), messageLines(seed, name));
      } finally {
        toSeed.destroy();
        toPort.destroy();
        await seed.stop();
        await port.stop();
      }
    });
  }

  it('the ported clients work against the seed servers', async () => {
    const seed = await startSeed('select_server');
    try {
      const { code, stdout } = await runExampleClient('select-client', seed.port, 'hello\nworld\n');
      assert.equal(code, 0);
      assert.equal(stdout, 'HELLO\nWORLD\n');
    } finally {
      await seed.stop();
    }
  });
});
