// --threshold expressions: what parses, what each measures, and when it holds.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkThresholds, describeBroken, judgesErrors, parseThreshold } from '../../src/bench/thresholds.js';

const subject = {
  latencyUs: { min: 10, mean: 500, p50: 400, p90: 900, p99: 1800, p999: 4200, max: 9000 },
  messages: 990,
  errors: 10,
  messagesPerSecond: 49_500,
};

describe('thresholds', () => {
  it('reads latencies in us, ms and s, counts, percentages and rates', () => {
    assert.deepEqual(parseThreshold('p99<2ms'), { expression: 'p99<2ms', metric: 'p99', comparison: '<', limit: 2000 });
    assert.equal(parseThreshold('max <= 1.5s').limit, 1_500_000);
    assert.equal(parseThreshold('p50<250us').limit, 250);
    assert.equal(parseThreshold('errors<=10').limit, 10);
    assert.equal(parseThreshold('error-rate<1%').limit, 1);
    assert.equal(parseThreshold('rate>=50000').comparison, '>=');
  });

  it('refuses what it cannot read, saying what it expects', () => {
    for (const bad of ['p99<2', 'p99<2%', 'errors<=1ms', 'error-rate<1ms', 'p98<2ms', 'rate=>5', '']) {
      assert.throws(
        () => parseThreshold(bad),
        (err: Error & { code?: string }) => err.code === 'ERR_ECHOPLEX_USAGE',
        bad,
      );
    }
  });

  it('holds or breaks by what was measured', () => {
    const outcomes = checkThresholds(
      ['p99<2ms', 'p99<1ms', 'errors<=10', 'errors<10', 'error-rate<1%', 'error-rate<=1%', 'rate>=50000'].map(
        parseThreshold,
      ),
      subject,
    );
    assert.deepEqual(
      outcomes.map((o) => [o.expression, o.value, o.ok]),
      [
        ['p99<2ms', 1800, true],
        ['p99<1ms', 1800, false],
        ['errors<=10', 10, true],
        ['errors<10', 10, false],
        ['error-rate<1%', 1, false],
        ['error-rate<=1%', 1, true],
        ['rate>=50000', 49_500, false],
      ],
    );
    assert.equal(describeBroken(outcomes[1]!), 'threshold p99<1ms broken: measured 1.800 ms');
    assert.equal(judgesErrors(outcomes), true);
    assert.equal(judgesErrors(outcomes.slice(0, 2)), false);
  });
});
