// The transforms, byte for byte, against an independent reference, on arbitrary data and alignment.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { echoTransform, toTransform, TransformResultError, upperTransform } from '../../src/protocol/transforms.js';

/** Python's bytes.upper(), written the obvious way. */
function referenceUpper(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.map((b) => (b >= 0x61 && b <= 0x7a ? b - 0x20 : b)));
}

describe('upperTransform', () => {
  it('equals bytes.upper() for any bytes at any alignment', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat({ max: 7 }), (bytes, offset) => {
        // Place the data at an arbitrary offset inside a larger buffer, as pooled reads are.
        const backing = Buffer.alloc(bytes.length + 8, 0x61);
        const chunk = backing.subarray(offset, offset + bytes.length);
        chunk.set(bytes);
        const result = upperTransform(chunk);
        assert.deepEqual(result, referenceUpper(bytes));
        // Bytes around the chunk are untouched.
        assert.ok(backing.subarray(0, offset).every((b) => b === 0x61));
        assert.ok(backing.subarray(offset + bytes.length).every((b) => b === 0x61));
      }),
      { numRuns: 2000 },
    );
  });

  it('handles every byte value in every position of a word', () => {
    for (let value = 0; value < 256; value++) {
      for (let position = 0; position < 8; position++) {
        const chunk = Buffer.alloc(8, 0x7b);
        chunk[position] = value;
        const expected = referenceUpper(chunk);
        assert.deepEqual(upperTransform(chunk), expected, `byte 0x${value.toString(16)} at ${position}`);
      }
    }
  });
});

describe('echoTransform', () => {
  it('returns its input unchanged', () => {
    fc.assert(fc.property(fc.uint8Array(), (bytes) => echoTransform(Buffer.from(bytes)).equals(Buffer.from(bytes))));
  });
});

describe('toTransform (a transform a user wrote)', () => {
  it('passes Buffers through, and turns strings (UTF-8) and Uint8Array views into Buffers', () => {
    const chunk = Buffer.from('héllo');
    assert.equal(toTransform((c) => c)(chunk), chunk);
    assert.deepEqual(toTransform((c) => `${c.toString().toUpperCase()}!`)(chunk), Buffer.from('HÉLLO!'));
    const backing = new Uint8Array([0, 1, 2, 3, 4]);
    assert.deepEqual(toTransform(() => backing.subarray(1, 3))(chunk), Buffer.from([1, 2]));
  });

  it('throws a TransformResultError naming what came back for anything else', () => {
    const cases: Array<[unknown, RegExp]> = [
      [Promise.resolve(Buffer.alloc(1)), /a Promise \(transforms must be synchronous\)/],
      [{ bytes: 1 }, /an object \(Object\)/],
      [undefined, /returned undefined/],
      [null, /returned null/],
      [42, /a number/],
      [[1, 2], /an array/],
    ];
    for (const [value, message] of cases) {
      const transform = toTransform(() => value as string);
      assert.throws(
        () => transform(Buffer.from('x')),
        (err: unknown) =>
          err instanceof TransformResultError &&
          err.code === 'ERR_ECHOPLEX_TRANSFORM_RESULT' &&
          message.test(err.message),
      );
    }
  });
});
