// A connected selectors Socket reads and writes through the native addon where it was built
// (src/selectors/native-plane.ts), and otherwise through Node's streams, on libuv's handles
// where Node offers them and on net.Socket if not (src/selectors/plane.ts, stream.ts). Both are
// chosen once per process, so the whole selectors suite runs again here in child processes
// with the native sockets turned off, then the fast path too.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { withTimeout } from './helpers/timeout.js';

const SUITES = ['./selectors.test.ts', './selectors-properties.test.ts'].map((path) => fileURLToPath(new URL(path, import.meta.url)));

const CONFIGURATIONS = [
  { name: 'on streams over libuv handles', env: { ECHOPLEX_NO_NATIVE: '1' } },
  { name: 'on streams over net.Socket', env: { ECHOPLEX_NO_NATIVE: '1', ECHOPLEX_NO_RAW_TCP: '1' } },
];

describe('selectors without native sockets', () => {
  for (const { name, env } of CONFIGURATIONS) {
    it(`passes the whole selectors suite, properties included, ${name} (${Object.keys(env).join(', ')})`, async () => {
      const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', ...SUITES], {
        // NODE_TEST_CONTEXT would make the child report to this runner instead of running its own.
        env: { ...Object.fromEntries(Object.entries(process.env).filter(([variable]) => variable !== 'NODE_TEST_CONTEXT')), ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const exited = once(child, 'exit') as Promise<[number | null]>;
      const [code] = await withTimeout(exited, 60_000, `the selectors suite ${name}`).finally(() => child.kill('SIGKILL'));
      assert.equal(code, 0, output.split('\n').filter((line) => /not ok|Error|expected|actual/.test(line)).slice(0, 20).join('\n'));
      const passed = Number(/^# pass (\d+)/m.exec(output)?.[1] ?? 0);
      assert.ok(passed >= 20, `only ${passed} tests ran`);
    });
  }
});
