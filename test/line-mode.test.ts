// Line mode, --prefix, --max-line and custom transform modules, in the server.

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { loadTransformModule, type Transform } from '../src/index.js';
import { runCli, startServe } from './helpers/cli.js';
import { recordingLogger } from './helpers/logs.js';
import { closed, connectTo, readBytes, readToEnd, readUntilReset, roundTrip, startServer } from './helpers/sockets.js';
import { delay, waitUntil } from './helpers/timeout.js';

const REVERSE = fileURLToPath(new URL('../examples/transforms/reverse.js', import.meta.url));

{
  describe('line mode', () => {
    it('prefixes every line, whole lines only, however the client splits them', async () => {
      const running = await startServer({ framing: 'line', prefix: 'hello ' });
      try {
        const socket = await connectTo(running.port);
        const reply = readBytes(socket, 'hello world\nhello again\n'.length);
        for (const piece of ['wor', 'ld\nag', 'ain', '\n']) {
          socket.write(piece);
          await delay(20);
        }
        assert.equal((await reply).toString(), 'hello world\nhello again\n');
        assert.equal(running.server.stats().messages.tcp, 2);
        socket.destroy();
      } finally {
        await running.close();
      }
    });

    it('echoes a partial last line at end of stream', async () => {
      const running = await startServer({ framing: 'line', prefix: '> ', transform: 'upper' });
      try {
        const socket = await connectTo(running.port);
        const all = readToEnd(socket);
        socket.end('one\ntwo');
        assert.equal((await all).toString(), '> ONE\n> TWO');
      } finally {
        await running.close();
      }
    });

    it('answers a line over --max-line with an error line and closes', async () => {
      const logger = recordingLogger();
      const running = await startServer({ framing: 'line', maxLine: 10, logger });
      try {
        const socket = await connectTo(running.port);
        const all = readToEnd(socket);
        socket.write('short\n' + 'x'.repeat(11) + '\nnever echoed\n');
        // The reply ends with the server's FIN; the connection is gone once the client ends too.
        assert.equal((await all).toString(), 'short\nerror: line longer than 10 bytes (--max-line); closing\n');
        socket.end();
        await closed(socket);
        assert.equal(running.server.stats().errors.line_too_long, 1);
        await waitUntil(
          () => logger.messages().some((m) => m.includes('line longer than 10 bytes')),
          2000,
          'the close to be logged',
        );
      } finally {
        await running.close();
      }
    });
  });
}

describe('custom transform modules', () => {
  it('loads the example module and applies it per line', async () => {
    const running = await startServer({ framing: 'line', transform: await loadTransformModule(REVERSE) });
    try {
      const socket = await connectTo(running.port);
      const all = readToEnd(socket);
      socket.end('hello\n你好\nabc');
      // Reversal is bytewise: multi-byte characters come back as reversed bytes, as the module says.
      const expected = Buffer.concat([Buffer.from('olleh\n'), Buffer.from('你好').reverse(), Buffer.from('\ncba')]);
      assert.deepEqual(await all, expected);
    } finally {
      await running.close();
    }
  });

  it('a library transform may return a string or a Uint8Array (written in JavaScript, with no types to warn)', async () => {
    const shout = (chunk: Buffer) => `${chunk.toString().toUpperCase()}!`;
    const running = await startServer({ transform: shout as never });
    try {
      const socket = await connectTo(running.port);
      const reply = readBytes(socket, 'HI!'.length);
      socket.write('hi');
      assert.equal((await reply).toString(), 'HI!');
      socket.destroy();
    } finally {
      await running.close();
    }
    const bytes = await startServer({ transform: ((chunk: Buffer) => new Uint8Array(chunk).reverse()) as never });
    try {
      assert.equal((await roundTrip(bytes.port, Buffer.from('abc'))).toString(), 'cba');
    } finally {
      await bytes.close();
    }
  });

  it('a transform returning a Promise or an object resets only its connection, logs what came back, and the server goes on', async () => {
    for (const [returned, named] of [
      [Promise.resolve(Buffer.from('late')), /a Promise/],
      [{ reply: 'x' }, /an object/],
    ] as const) {
      const logger = recordingLogger();
      const running = await startServer({ transform: (() => returned) as never, logger });
      try {
        const bad = await connectTo(running.port);
        const ended = readUntilReset(bad);
        bad.write('x');
        assert.equal((await ended).length, 0, 'reset with nothing sent');
        assert.equal(running.server.stats().errors.transform, 1);
        const line = logger.messages().find((message) => message.includes('transform failed'));
        assert.ok(
          line !== undefined && named.test(line) && /expected a Buffer, Uint8Array or string/.test(line),
          logger.messages().join('\n'),
        );
        // Still serving: another client connects and is closed the same way, not refused.
        const next = await connectTo(running.port);
        next.destroy();
        assert.equal(running.server.state, 'listening');
      } finally {
        await running.close();
      }
    }
  });

  it('resets only the connection whose transform throws, and logs it', async () => {
    const logger = recordingLogger();
    const picky: Transform = (line) => {
      if (line.includes('boom')) throw new Error('no booms here');
      return line;
    };
    const running = await startServer({ framing: 'line', transform: picky, logger });
    try {
      const good = await connectTo(running.port);
      const bad = await connectTo(running.port);
      const badReply = readUntilReset(bad);
      bad.write('boom\n');
      assert.equal((await badReply).length, 0);
      const reply = readBytes(good, 6);
      good.write('fine!\n');
      assert.equal((await reply).toString(), 'fine!\n');
      assert.equal(running.server.stats().errors.transform, 1);
      assert.ok(logger.messages().some((m) => m.includes('no booms here')));
      good.destroy();
    } finally {
      await running.close();
    }
  });

  it('takes --transform PATH, --prefix and --framing line from the CLI', async () => {
    const serve = await startServe(['--transform', REVERSE, '--prefix', 'hello ', '--quiet']);
    try {
      const socket = await connectTo(serve.port);
      const all = readToEnd(socket);
      socket.end('dlrow\n');
      assert.equal((await all).toString(), 'hello world\n');
    } finally {
      await serve.stop();
    }
  });

  it('rejects a module without a default export function as a usage error', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'echoplex-transform-'));
    const notATransform = join(dir, 'named-only.js');
    await writeFile(notATransform, 'export const upper = (chunk) => chunk;\n');
    const result = await runCli(['serve', '--port', '0', '--transform', notATransform]);
    await rm(dir, { recursive: true });
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /no default export function/);
    const missing = await runCli(['serve', '--port', '0', '--transform', './no-such-transform.js']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /cannot load/);
  });
});
