// The client library in prompt mode, driven through streams against a real server.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PassThrough } from 'node:stream';
import { runClient } from '../src/index.js';
import { startServer } from './helpers/sockets.js';
import { waitUntil, withTimeout } from './helpers/timeout.js';

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
