// HdrHistogram interval logs (--hdr-log): one latency histogram per second of the measured window, as wrk2 writes them.

import * as hdr from 'hdr-histogram-js';
import { LatencyHistogram } from './histogram.js';

/**
 * Collects the measured latencies (microseconds) second by second and renders HdrHistogram's log
 * format: a `#[StartTime: ...]` header, the legend, then one line per interval with its start
 * (seconds from the start time), length, max (milliseconds) and compressed histogram.
 */
export class IntervalLog {
  readonly #lines: string[] = [];
  readonly #writer = new hdr.HistogramLogWriter((text) => this.#lines.push(text));
  readonly #interval = new LatencyHistogram();
  readonly #startEpochMs: number;
  #cutAtMs: number;

  constructor(startEpochMs: number) {
    this.#startEpochMs = startEpochMs;
    this.#cutAtMs = startEpochMs;
    this.#writer.outputLogFormatVersion();
    this.#writer.outputComment('[Logged with echoplex bench: latencies in microseconds]');
    this.#writer.outputStartTime(startEpochMs);
    this.#writer.outputLegend();
  }

  recordMicros(value: number): void {
    this.#interval.recordMicros(value);
  }

  /** Ends the current interval at `nowEpochMs` and starts the next. */
  cut(nowEpochMs: number): void {
    if (nowEpochMs <= this.#cutAtMs) return;
    // Microseconds in the histogram, milliseconds in the max column (ratio 1000), as wrk2's logs.
    this.#writer.outputIntervalHistogram(
      this.#interval.hdr,
      (this.#cutAtMs - this.#startEpochMs) / 1000,
      (nowEpochMs - this.#startEpochMs) / 1000,
      1000,
    );
    this.#interval.reset();
    this.#cutAtMs = nowEpochMs;
  }

  text(): string {
    return this.#lines.join('');
  }
}
