// The line splitter: lines cut the same whatever the chunking, and overlong lines reported (no sockets).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { LineSplitter } from '../../src/protocol/framing.js';

describe('LineSplitter', () => {
  it('yields the same lines however the stream is cut', () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ unit: fc.constantFrom('a', 'b', '\n', 'é') }), { maxLength: 20 }),
        fc.array(fc.nat(40), { maxLength: 10 }),
        (pieces, cuts) => {
          const stream = Buffer.from(pieces.join(''));
          const splitter = new LineSplitter(1000);
          const lines: string[] = [];
          let start = 0;
          for (const cut of [...cuts.map((c) => Math.min(stream.length, start + c)), stream.length]) {
            if (cut < start) continue;
            const { lines: got, overflow } = splitter.push(Buffer.from(stream.subarray(start, cut)));
            assert.equal(overflow, false);
            lines.push(...got.map((line) => line.toString()));
            start = cut;
          }
          const tail = splitter.flush();
          if (tail) lines.push(tail.toString());
          assert.equal(lines.join(''), stream.toString());
          const expected = stream
            .toString()
            .split(/(?<=\n)/)
            .filter(Boolean);
          assert.deepEqual(lines, expected);
        },
      ),
    );
  });

  it('reports overflow once a line passes the limit, with or without its newline', () => {
    assert.equal(new LineSplitter(4).push(Buffer.from('abcd\n')).overflow, false);
    assert.equal(new LineSplitter(4).push(Buffer.from('abcde\n')).overflow, true);
    const splitter = new LineSplitter(4);
    assert.equal(splitter.push(Buffer.from('abc')).overflow, false);
    assert.equal(splitter.push(Buffer.from('de')).overflow, true);
  });
});
