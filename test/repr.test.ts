// reprBytes (used in logs and the ported programs) against Python's own repr() of the same bytes.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { reprBytes } from '../src/index.js';
import { seedUnavailable } from './helpers/seed.js';
import { suite } from './helpers/peers.js';

suite('reprBytes', seedUnavailable(), () => {
  it("matches Python's repr() of bytes for every byte value and random data", () => {
    const samples = [
      Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
      Buffer.from('it\'s a "quote" \\ test\n'),
      Buffer.from("it's"),
      ...Array.from({ length: 20 }, () => randomBytes(64)),
    ];
    const script = 'import sys\nfor line in sys.stdin.read().split():\n    print(repr(bytes.fromhex(line)))';
    const python = spawnSync('python3', ['-c', script], {
      input: samples.map((s) => s.toString('hex')).join('\n'),
      encoding: 'utf8',
    });
    assert.equal(python.status, 0, python.stderr);
    const expected = python.stdout.trimEnd().split('\n');
    assert.deepEqual(samples.map(reprBytes), expected);
  });

  it('takes any Uint8Array, and the empty one', () => {
    assert.equal(reprBytes(new Uint8Array([0x27, 0x41, 0x00])), `b"'A\\x00"`);
    assert.equal(reprBytes(new Uint8Array(0)), "b''");
    // A long input after a short one: the scratch space grows.
    assert.equal(reprBytes(Buffer.alloc(5000, 0xff)), `b'${'\\xff'.repeat(5000)}'`);
  });
});
