// The test harness itself: what a summary reports must be what happened.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

describe('test harness', () => {
  it('a suite skipped for a missing peer counts as skipped in the runner summary', () => {
    const fixture = fileURLToPath(new URL('./fixtures/skipped-suite.ts', import.meta.url));
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => name !== 'NODE_TEST_CONTEXT' && name !== 'ECHOPLEX_REQUIRE_PEERS'),
    );
    const result = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', fixture], {
      encoding: 'utf8',
      env,
      timeout: 30_000,
    });
    assert.equal(result.status, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /^# skipped 1$/m);
    assert.match(result.stdout, /^# fail 0$/m);
  });
});
