// The bench's accounting: which replies fall in the measured window, and when a run is over (no sockets).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Run } from '../../src/bench/run.js';
import { resolveSettings } from '../../src/bench/settings.js';

function newRun(): Run {
  const payload = Buffer.from('x'.repeat(8));
  return new Run(resolveSettings({ port: 1, size: 8, engine: 'portable' }), payload, payload, Buffer.concat([payload, payload]));
}

describe('bench accounting (Run)', () => {
  it('counts a reply by when its message was sent: inside the window, whenever the reply lands', () => {
    const run = newRun();
    run.inFlight = 4;
    run.startMeasuring();
    const start = run.measureStartedAt;
    run.completed(start + 5, start - 1); // sent during warm-up: not measured
    run.completed(start + 10, start + 2); // measured
    run.endMeasuring(start + 100);
    run.completed(start + 150, start + 99); // sent inside, landed after: measured
    run.completed(start + 160, start + 101); // sent after the window: not measured
    assert.equal(run.measured, 2);
    assert.equal(run.completedTotal, 4);
    assert.equal(run.inFlight, 0);
    assert.equal(run.histogram.count, 2);
    assert.equal(run.timeline[0], 2, 'both in the first second');
  });

  it('finishes a fixed-count run when its budget is spent and every reply is in', () => {
    const run = newRun();
    let finished = 0;
    run.finish = () => void finished++;
    run.startMeasuring();
    run.setSendBudget(0);
    run.inFlight = 2;
    run.completed(run.measureStartedAt + 1, run.measureStartedAt);
    assert.equal(finished, 0, 'one reply still owed');
    run.completed(run.measureStartedAt + 2, run.measureStartedAt);
    assert.equal(finished, 1);
  });

  it('a lost connection gives up the replies it owed', () => {
    const run = newRun();
    run.inFlight = 5;
    run.lost(3);
    assert.equal(run.inFlight, 2);
    assert.equal(run.errors, 0, 'losing replies is counted by the caller, by kind');
  });
});
