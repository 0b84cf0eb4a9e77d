// The selectors Socket runs on libuv's handles where Node offers them and on net.Socket
// otherwise (src/selectors/stream.ts). The transport is chosen once per process, so the
// whole selectors suite runs again here in a child process with the fast path turned off.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { withTimeout } from './helpers/timeout.js';

const SUITES = ['./selectors.test.ts', './selectors-properties.test.ts'].map((path) => fileURLToPath(new URL(path, import.meta.url)));

describe('selectors on the net.Socket fallback', () => {
  it('passes the whole selectors suite, properties included, with ECHOPLEX_NO_RAW_TCP=1', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', ...SUITES], {
      // NODE_TEST_CONTEXT would make the child report to this runner instead of running its own.
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([name]) => name !== 'NODE_TEST_CONTEXT')), ECHOPLEX_NO_RAW_TCP: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = once(child, 'exit') as Promise<[number | null]>;
    const [code] = await withTimeout(exited, 60_000, 'the selectors suite on net.Socket').finally(() => child.kill('SIGKILL'));
    assert.equal(code, 0, output.split('\n').filter((line) => /not ok|Error|expected|actual/.test(line)).slice(0, 20).join('\n'));
    const passed = Number(/^# pass (\d+)/m.exec(output)?.[1] ?? 0);
    assert.ok(passed >= 20, `only ${passed} tests ran`);
  });
});
