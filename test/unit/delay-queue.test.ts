// The delay queue behind --delay: items come due in order, no earlier than asked, and clear drops them.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DelayQueue } from '../../src/server/delay.js';
import { withTimeout } from '../helpers/timeout.js';

describe('DelayQueue', () => {
  it('hands items on in arrival order, each no sooner than its delay, and tracks the bytes held', async () => {
    const due: Array<{ item: string; at: number }> = [];
    const queue = new DelayQueue<string>(
      40,
      (item) => item.length,
      (items) => {
        for (const item of items) due.push({ item, at: performance.now() });
      },
    );
    const pushedAt: Record<string, number> = {};
    for (const item of ['a', 'bb', 'ccc']) {
      pushedAt[item] = performance.now();
      queue.push(item);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.ok(queue.bytes >= 3, 'still holding what is not due');
    await withTimeout(
      (async () => {
        while (due.length < 3) await new Promise((resolve) => setTimeout(resolve, 5));
      })(),
      2000,
      'every item to come due',
    );
    assert.deepEqual(
      due.map((d) => d.item),
      ['a', 'bb', 'ccc'],
    );
    for (const { item, at } of due)
      assert.ok(at - pushedAt[item]! >= 39, `${item} came due after ${at - pushedAt[item]!} ms`);
    assert.equal(queue.bytes, 0);
  });

  it('clear() drops what waits and refuses what comes after', async () => {
    let handed = 0;
    const queue = new DelayQueue<string>(
      20,
      () => 1,
      (items) => (handed += items.length),
    );
    queue.push('x');
    queue.clear();
    queue.push('y');
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(handed, 0);
    assert.equal(queue.bytes, 0);
    assert.equal(queue.cleared, true);
  });
});
