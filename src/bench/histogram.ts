// Latency recording on a maintained HdrHistogram implementation, in microseconds.

import * as hdr from 'hdr-histogram-js';

export interface LatencySummary {
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** One point of the percentile curve: `percentile` in [0, 100], value in microseconds. */
export interface PercentilePoint {
  percentile: number;
  valueUs: number;
}

export class LatencyHistogram {
  // Plain JS (no WebAssembly init needed); 3 significant digits, auto-resizing like wrk2's.
  readonly #histogram = hdr.build({
    bitBucketSize: 32,
    autoResize: true,
    numberOfSignificantValueDigits: 3,
    useWebAssembly: false,
  });

  recordMicros(value: number): void {
    this.#histogram.recordValue(value < 1 ? 1 : Math.round(value));
  }

  get count(): number {
    return this.#histogram.totalCount;
  }

  /** HdrHistogram's compressed base64 encoding (V2), as its libraries and log tools read it. */
  encode(): string {
    return hdr.encodeIntoCompressedBase64(this.#histogram);
  }

  /** Adds every value of an encoded histogram (a run from another generator, say). */
  addEncoded(encoded: string): void {
    this.#histogram.add(hdr.decodeFromCompressedBase64(encoded, 32, false));
  }

  /** Adds the values of `other`. */
  add(other: LatencyHistogram): void {
    this.#histogram.add(other.#histogram);
  }

  /** Forgets every value (for interval histograms). */
  reset(): void {
    this.#histogram.reset();
  }

  /** The underlying HdrHistogram, for its log writer. */
  get hdr(): hdr.Histogram {
    return this.#histogram;
  }

  summary(): LatencySummary {
    const h = this.#histogram;
    if (h.totalCount === 0) return { min: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
    return {
      min: h.minNonZeroValue,
      mean: Math.round(h.mean * 10) / 10,
      p50: this.#percentile(50),
      p90: this.#percentile(90),
      p99: this.#percentile(99),
      p999: this.#percentile(99.9),
      max: h.maxValue,
    };
  }

  /**
   * The value at `percentile`, never above the largest value recorded: HdrHistogram answers
   * with the top of the value's bucket, which can lie past the exact maximum it also keeps.
   */
  #percentile(percentile: number): number {
    return Math.min(this.#histogram.getValueAtPercentile(percentile), this.#histogram.maxValue);
  }

  /** Points for an HdrHistogram-style curve: denser towards the tail (1 - p halves each step). */
  curve(): PercentilePoint[] {
    const points: PercentilePoint[] = [];
    if (this.#histogram.totalCount === 0) return points;
    for (let step = 0; step <= 60; step++) {
      const tail = Math.pow(0.5, step / 4);
      const percentile = 100 * (1 - tail);
      const valueUs = step === 0 ? this.#histogram.minNonZeroValue : this.#percentile(percentile);
      points.push({ percentile, valueUs });
      if (tail * this.#histogram.totalCount < 1) break;
    }
    points.push({ percentile: 100, valueUs: this.#histogram.maxValue });
    return points;
  }
}
