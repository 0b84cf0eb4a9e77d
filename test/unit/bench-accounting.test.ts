// The bench's accounting: which replies fall in the measured window, when a run is over, and what its CPU line says (no sockets).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MessageCodec } from '../../src/bench/message.js';
import { Run } from '../../src/bench/run.js';
import { describeLoadCpu } from '../../src/bench/report.js';
import { resolveSettings, type BenchResult } from '../../src/bench/settings.js';

function newRun(): Run {
  const codec = new MessageCodec({ size: 8, lines: false, text: false, transform: (chunk) => chunk, bytewise: true });
  return new Run(resolveSettings({ port: 1, size: 8, engine: 'portable' }), codec);
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

describe('bench report: the load CPU line', () => {
  it('warns that the bench may set the rate only when there was a rate', () => {
    const busy = { loadCpuPercent: 100, durationSeconds: 5 } as BenchResult;
    assert.match(
      describeLoadCpu({ ...busy, messages: 5000 }),
      /^100% of one core \(the bench may be what limits the rate/,
    );
    // A run that got no reply, or a few milliseconds of -n 100, has a window too short for its CPU share to mean anything.
    assert.equal(describeLoadCpu({ ...busy, messages: 0 }), '100% of one core');
    assert.equal(describeLoadCpu({ ...busy, messages: 100, durationSeconds: 0.02 }), '100% of one core');
    assert.equal(
      describeLoadCpu({ loadCpuPercent: 40, messages: 5000, durationSeconds: 5 } as BenchResult),
      '40% of one core',
    );
  });
});
