// Merging generators' results is exact: percentiles from the summed histograms equal those of one histogram of every sample.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { LatencyHistogram } from '../../src/bench/histogram.js';
import { mergeResults, parseResult } from '../../src/bench/merge.js';
import { emptyErrorCounts, type BenchResult } from '../../src/bench/settings.js';

/** A result as one generator would report it, from its own latency samples. */
function resultOf(samples: number[], startedAt: number, timeline: number[]): BenchResult {
  const histogram = new LatencyHistogram();
  for (const sample of samples) histogram.recordMicros(sample);
  return {
    target: 'tcp://127.0.0.1:1234',
    mode: 'closed-loop',
    engine: 'native',
    connections: 10,
    size: 64,
    pipeline: 1,
    rate: null,
    expect: 'echo',
    expectPrefix: null,
    lines: false,
    warmupSeconds: 1,
    durationSeconds: timeline.length,
    messages: samples.length,
    messagesTotal: samples.length,
    messagesPerConnection: null,
    connectsPerSecond: null,
    connectLatencyUs: null,
    messagesPerSecond: samples.length / timeline.length,
    bytesPerSecond: (samples.length * 64) / timeline.length,
    latencyUs: histogram.summary(),
    errors: 1,
    errorsByKind: { ...emptyErrorCounts(), closed: 1 },
    mismatchedBytes: 0,
    timeline,
    percentiles: histogram.curve(),
    latencyHistogram: histogram.encode(),
    startedAt: new Date(startedAt).toISOString(),
    thresholds: [],
    loadCpuPercent: 50,
    datagrams: null,
    instances: null,
    stopped: false,
    verification: 'connection-and-sequence',
    sendLagUs: null,
  };
}

describe('bench merge', () => {
  it('gives the percentiles of one histogram holding every sample, and sums the counts', () => {
    const sampleSets = fc.array(fc.array(fc.integer({ min: 1, max: 5_000_000 }), { minLength: 1, maxLength: 300 }), {
      minLength: 1,
      maxLength: 5,
    });
    fc.assert(
      fc.property(sampleSets, (sets) => {
        const merged = mergeResults(sets.map((samples) => resultOf(samples, 1_000_000, [samples.length])));
        const all = new LatencyHistogram();
        for (const sample of sets.flat()) all.recordMicros(sample);
        assert.deepEqual(merged.latencyUs, all.summary());
        assert.equal(merged.messages, sets.flat().length);
        assert.equal(merged.errors, sets.length);
        assert.equal(merged.errorsByKind.closed, sets.length);
        assert.equal(merged.connections, 10 * sets.length);
        assert.equal(merged.generators, sets.length);
        assert.equal(merged.stopped, false);
      }),
      { numRuns: 50 },
    );
  });

  it('lines timelines up by start time, and checks thresholds on the merged figures', () => {
    const t0 = Date.UTC(2026, 10, 29, 13, 0, 0);
    const merged = mergeResults([resultOf([100, 200], t0, [5, 5, 5]), resultOf([300], t0 + 2000, [1, 1, 1])], {
      thresholds: ['p99<250us', 'rate>=0.5'],
    });
    assert.deepEqual(merged.timeline, [5, 5, 6, 1, 1]);
    assert.equal(merged.durationSeconds, 5);
    assert.equal(merged.messagesPerSecond, 3 / 5);
    assert.equal(merged.startedAt, new Date(t0).toISOString());
    assert.deepEqual(
      merged.thresholds.map((t) => [t.expression, t.ok]),
      [
        ['p99<250us', false],
        ['rate>=0.5', true],
      ],
    );
  });

  it('places runs that followed each other on the wall clock: no gap left empty, and messages / duration is the rate', () => {
    const t0 = Date.UTC(2026, 10, 29, 13, 0, 0);
    const merged = mergeResults([resultOf([100, 100, 100], t0, [3]), resultOf([100, 100], t0 + 5000, [2])]);
    assert.deepEqual(merged.timeline, [3, 0, 0, 0, 0, 2]);
    assert.ok(merged.timeline.every((count) => typeof count === 'number'));
    assert.equal(merged.durationSeconds, 6);
    assert.equal(merged.messagesPerSecond, Math.round((5 / 6) * 10) / 10);
    assert.deepEqual(merged.generatorCpuPercent, [50, 50]);
    assert.equal(merged.loadCpuPercent, 50, 'a share of one core each, not summed');
  });

  it('refuses runs that measured different things, and one run twice, unless forced', () => {
    const t0 = Date.UTC(2026, 10, 29, 13, 0, 0);
    const a = resultOf([100], t0, [1]);
    const cases: Array<[BenchResult, RegExp]> = [
      [{ ...resultOf([200], t0, [1]), mode: 'open-loop', rate: 100 }, /differ in mode/],
      [{ ...resultOf([200], t0, [1]), target: 'tcp://127.0.0.1:9' }, /differ in target/],
      [{ ...resultOf([200], t0, [1]), size: 128 }, /differ in message size/],
      [{ ...resultOf([200], t0, [1]), expect: 'upper' }, /differ in expected reply/],
      [a, /the same run given twice/],
    ];
    for (const [b, message] of cases) {
      assert.throws(
        () => mergeResults([a, b]),
        (err: Error & { code?: string }) => message.test(err.message) && err.code === 'ERR_ECHOPLEX_USAGE',
        String(message),
      );
      assert.equal(mergeResults([a, b], { force: true }).generators, 2);
    }
  });

  it('never puts a percentile above the exact maximum', () => {
    const samples = [102_400, 102_400, 102_401];
    const result = resultOf(samples, Date.UTC(2026, 10, 29), [3]);
    for (const p of ['p50', 'p90', 'p99', 'p999'] as const)
      assert.ok(result.latencyUs[p] <= result.latencyUs.max, `${p} ${result.latencyUs[p]} > ${result.latencyUs.max}`);
    const merged = mergeResults([result, { ...resultOf(samples, Date.UTC(2026, 10, 29, 0, 0, 1), [3]) }]);
    for (const p of ['p50', 'p90', 'p99', 'p999'] as const)
      assert.ok(merged.latencyUs[p] <= merged.latencyUs.max, `merged ${p}`);
  });

  it('adds up what holding connections cost each generator, and keeps the first cause of each kind of error', () => {
    const first = {
      ...resultOf([100], Date.UTC(2026, 11, 6), [1]),
      loadMemory: { rssGrowthBytes: 30_000_000, connections: 50_000 },
      errorCauses: { closed: 'connection reset' },
    };
    const second = {
      ...resultOf([200], Date.UTC(2026, 11, 6), [1]),
      loadMemory: { rssGrowthBytes: 20_000_000, connections: 50_000 },
      errorCauses: { closed: 'broken pipe', connect: 'connection refused' },
    };
    const merged = mergeResults([first, second], { force: true });
    assert.deepEqual(merged.loadMemory, { rssGrowthBytes: 50_000_000, connections: 100_000 });
    assert.deepEqual(merged.errorCauses, { closed: 'connection reset', connect: 'connection refused' });
    // A result written before the field existed leaves the sum unknown rather than short.
    assert.equal(
      mergeResults([first, resultOf([300], Date.UTC(2026, 11, 6), [1])], { force: true }).loadMemory,
      undefined,
    );
  });

  it('is stopped when any generator was stopped early', () => {
    const t0 = Date.UTC(2026, 10, 29, 13, 0, 0);
    const whole = resultOf([100], t0, [1]);
    assert.equal(mergeResults([whole, { ...resultOf([200], t0, [1]), stopped: true }]).stopped, true);
    // A result written before the field existed ran its whole window.
    const { stopped: _stopped, ...older } = whole;
    assert.equal(
      mergeResults([whole, { ...(older as BenchResult), startedAt: new Date(t0 + 1000).toISOString() }]).stopped,
      false,
    );
  });

  it('refuses files that are not bench --json results, naming them', () => {
    assert.throws(() => parseResult('not json', 'a.json'), /a\.json: not JSON/);
    assert.throws(() => parseResult('{"messages": 1}', 'b.json'), /b\.json: not a result of echoplex bench --json/);
  });
});
