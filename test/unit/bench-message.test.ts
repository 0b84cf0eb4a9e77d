// The bench's messages: each says whose it is, its reply is what the transform makes of it, and a wrong reply is classified by the stated rules.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { classifyReply, MessageCodec, type OwedReplies } from '../../src/bench/message.js';
import { builtInTransform } from '../../src/protocol/transforms.js';

const upper = builtInTransform('upper');

function codec(size: number, options: Partial<ConstructorParameters<typeof MessageCodec>[0]> = {}): MessageCodec {
  return new MessageCodec({ size, lines: false, text: false, transform: upper, bytewise: true, ...options });
}

/** Connection `connection` owes `head`..`next - 1`, except those in `answered`. */
function owed(connection: number, head: number, next: number, answered: number[] = []): OwedReplies {
  return { connection, head, next, owes: (s) => s >= head && s < next && !answered.includes(s) };
}

describe('bench messages', () => {
  it('are unique, and each reply names its message', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 17, max: 300 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 0xffffff }),
        fc.integer({ min: 0, max: 2 ** 40 - 1 }),
        (size, lines, c, s) => {
          const messages = codec(size, { lines });
          const message = messages.message(c, s);
          assert.equal(message.length, size);
          if (lines) assert.equal(message.indexOf(0x0a), size - 1);
          assert.deepEqual(messages.identify(messages.reply(c, s)), { connection: c, sequence: s });
          assert.ok(!message.equals(messages.message(c, s + 1)));
          assert.ok(!message.equals(messages.message(c + 1, s)));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('build the same reply from a transformed template as the transform makes of each message', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 1000 }),
        fc.integer({ min: 0, max: 1_000_000 }),
        (size, lines, c, s) => {
          fc.pre(size > (lines ? 1 : 0));
          const options = { size, lines, text: false, transform: upper, prefix: 'hi: ' };
          const fast = new MessageCodec({ ...options, bytewise: true });
          const slow = new MessageCodec({ ...options, bytewise: false });
          const message = fast.message(c, s);
          assert.deepEqual(fast.reply(c, s), Buffer.concat([Buffer.from('hi: '), upper(Buffer.from(message))]));
          assert.equal(slow.replyLength, fast.replyLength);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('say how much their size lets them carry', () => {
    assert.equal(codec(64).verification, 'connection-and-sequence');
    assert.equal(codec(16).verification, 'connection-and-sequence');
    assert.equal(codec(16, { lines: true }).verification, 'sequence');
    assert.equal(codec(4).verification, 'sequence');
    assert.equal(codec(1, { lines: true }).verification, 'bytes');
  });

  it('classify a wrong reply by the rules: corrupt, crossed, reordered, then duplicated or stale', () => {
    const m = codec(64);
    const changed = Buffer.from(m.reply(7, 3));
    changed[40]! ^= 1;
    assert.deepEqual(classifyReply(m, changed, owed(7, 3, 5)), { kind: 'corrupt', takes: 'head' });
    assert.deepEqual(classifyReply(m, m.reply(7, 3).subarray(1), owed(7, 3, 5)), { kind: 'corrupt', takes: 'head' });
    assert.deepEqual(classifyReply(m, m.reply(8, 3), owed(7, 3, 5)), { kind: 'crossed', takes: 'head' });
    assert.deepEqual(classifyReply(m, m.reply(7, 4), owed(7, 3, 5)), { kind: 'reordered', takes: 4 });
    assert.deepEqual(classifyReply(m, m.reply(7, 2), owed(7, 3, 5)), { kind: 'stale', takes: 'head' });
    assert.deepEqual(classifyReply(m, m.reply(7, 2), owed(7, 3, 3)), { kind: 'duplicated', takes: 'none' });
    // Answered out of order already: a second copy of it is not reordered again.
    assert.deepEqual(classifyReply(m, m.reply(7, 4), owed(7, 3, 5, [4])), { kind: 'stale', takes: 'head' });
    // A message never sent is no message's reply.
    assert.deepEqual(classifyReply(m, m.reply(7, 9), owed(7, 3, 5)), { kind: 'corrupt', takes: 'head' });
  });
});
