// The seed's own Python clients talk to echoplex serve, as the article's readers would.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { it } from 'node:test';
import { startServe } from './helpers/cli.js';
import { seedProgram, seedUnavailable } from './helpers/seed.js';
import { withTimeout } from './helpers/timeout.js';
import { suite } from './helpers/peers.js';

async function runPython(script: string, port: number, input: string): Promise<string> {
  const child = spawn('python3', [seedProgram(script), String(port)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.resume();
  // The seed clients send a line, wait for its reply, then read the next: feed them line by line.
  for (const line of input.split('\n').filter(Boolean)) {
    const before = stdout.length;
    child.stdin.write(`${line}\n`);
    await withTimeout(
      new Promise<void>((resolve) => {
        const check = () => {
          if (stdout.length > before && stdout.slice(before).includes('\n')) {
            child.stdout.off('data', check);
            resolve();
          }
        };
        child.stdout.on('data', check);
      }),
      5000,
      `reply to ${line}`,
    );
  }
  child.stdin.end();
  // The seed clients end with EOFError from input(): their exit status says nothing about us.
  await withTimeout(once(child, 'exit'), 5000, 'python client exit');
  return stdout;
}

suite('the seed Python clients against echoplex', seedUnavailable(), () => {
  it('select_client.py gets uppercased replies from --transform upper', async () => {
    const server = await startServe(['--transform', 'upper']);
    try {
      const stdout = await runPython('select_client.py', server.port, 'hello\nmixed Case 123\n');
      assert.match(stdout, />:HELLO\n/);
      assert.match(stdout, />:MIXED CASE 123\n/);
    } finally {
      await server.stop();
    }
  });

  it('selectors_client.py gets its lines echoed', async () => {
    const server = await startServe();
    try {
      const stdout = await runPython('selectors_client.py', server.port, 'hello\n你好\n');
      assert.equal(stdout, 'hello\n你好\n');
    } finally {
      await server.stop();
    }
  });
});
