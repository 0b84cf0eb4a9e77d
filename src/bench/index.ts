// `echoplex/bench`: the verifying load generator and its reports, kept off the main entry point
// so that a program that only serves does not load the histogram library.

export { runBench } from './loadgen.js';
export { BenchSetupError } from './settings.js';
export type { BenchOptions, BenchResult, BenchProgress, BenchErrorKind } from './settings.js';
export type { CustomExpectation } from '../protocol/transforms.js';
export type { BenchTarget, WebSocketTarget } from '../protocol/transports.js';
export type { LatencySummary, PercentilePoint } from './histogram.js';
export { renderHtmlReport } from './html.js';
export { formatTable } from './report.js';
export { mergeResults } from './merge.js';
export type { ThresholdOutcome } from './thresholds.js';
