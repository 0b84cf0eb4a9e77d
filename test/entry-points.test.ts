// What each entry point loads: the server must not pull in the bench's histogram library.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';

function loadsHistogram(entry: string): boolean {
  const script = `
    import { createRequire } from 'node:module';
    await import(${JSON.stringify(entry)});
    const cache = createRequire(import.meta.url).cache;
    process.stdout.write(String(Object.keys(cache).some((k) => k.includes('hdr-histogram-js'))));`;
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    cwd: new URL('..', import.meta.url).pathname,
  });
  assert.equal(result.status, 0, result.stderr);
  return result.stdout === 'true';
}

describe('entry points', () => {
  it("'echoplex' (the server) does not load hdr-histogram-js", () => {
    assert.equal(loadsHistogram('echoplex'), false);
  });

  it("'echoplex/bench' does load it (so the check above can fail)", () => {
    assert.equal(loadsHistogram('echoplex/bench'), true);
  });
});
