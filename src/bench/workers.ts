// `bench --workers N`: N generator processes share one run, and their results merge as `bench merge` merges them.
//
// wrk's -t and tcpkali's --workers: one event loop saturates one core, so a run that needs more
// load than a core makes is split across processes. Connections, the open-loop rate and -n are
// divided exactly; every worker measures the same window, which begins (after the warm-up) once
// the last worker has every connection open, however long that took; the parent adds their results up with mergeResults, so `--workers 2` is two benches merged by hand.

import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { EchoplexError, UsageError } from '../core/errors.js';
import { mergeResults } from './merge.js';
import { CONNECTION_MODULUS } from './message.js';
import { DEFAULT_MESSAGE_SIZE, type BenchOptions, type BenchProgress, type BenchResult } from './settings.js';

/** Between the last worker's connections being open and the warm-up's start: time for the word to reach every worker. */
const START_MARGIN_MS = 100;

/** What a worker process is sent, and what it sends back (worker-process.ts). */
export type ToWorker = { run: BenchOptions } | { stop: true } | { startAt: number };
export type FromWorker =
  | { connected: true }
  | { result: BenchResult }
  | { progress: BenchProgress }
  | { error: { code: string; message: string } };

/** `auto`: one worker per CPU. */
export function workerCount(value: number | 'auto'): number {
  return value === 'auto' ? availableParallelism() : value;
}

/** `total` split into `parts` whole shares that add up to it exactly, the larger ones first. */
export function shares(total: number, parts: number): number[] {
  const base = Math.floor(total / parts);
  return Array.from({ length: parts }, (_, index) => base + (index < total % parts ? 1 : 0));
}

/** Each worker's options: its share of connections, rate, messages and source addresses. */
export function workerOptions(options: BenchOptions, count: number): BenchOptions[] {
  const connections = options.connections ?? 50;
  if (connections < count)
    throw new UsageError(`--workers ${count} needs at least one connection each: give -c ${count} or more`);
  if (options.messages !== undefined && options.messages < count)
    throw new UsageError(`--workers ${count} needs at least one message each: give -n ${count} or more`);
  if (typeof options.expect === 'function')
    throw new UsageError('--workers cannot hand an --expect module to its workers yet: give a built-in --expect');
  if (options.hdrLog !== undefined)
    throw new UsageError("--hdr-log writes one generator's intervals: not with --workers (merge the JSON instead)");
  const connectionShares = shares(connections, count);
  const rateShares = options.rate === undefined ? undefined : shares(options.rate, count);
  const messageShares = options.messages === undefined ? undefined : shares(options.messages, count);
  const connectRateShares =
    options.connectRate === undefined ? undefined : shares(options.connectRate, count).map((rate) => Math.max(1, rate));
  const { onProgress: _progress, signal: _signal, thresholds: _thresholds, ...plain } = options;
  // Numbers apart for each worker (churn opens more connections than its share), so that a
  // reply crossed between two workers' connections is not taken for the receiver's own.
  // and one set of messages for all, so that such a reply reads as crossed, not as noise.
  const numbersEach = Math.floor(CONNECTION_MODULUS / count);
  const messageSeed = options.messageSeed ?? randomBytes(options.size ?? DEFAULT_MESSAGE_SIZE);
  return connectionShares.map((share, index) => ({
    ...plain,
    connections: share,
    firstConnection: (options.firstConnection ?? 0) + index * numbersEach,
    messageSeed,
    ...(rateShares !== undefined && { rate: rateShares[index]! }),
    ...(messageShares !== undefined && { messages: messageShares[index]! }),
    ...(connectRateShares !== undefined && { connectRate: connectRateShares[index]! }),
    // Each worker's share of a source list, so that no two use one address for the same ports.
    ...(options.sourceAddresses !== undefined && {
      sourceAddresses: spread(options.sourceAddresses, count, index),
    }),
  }));
}

/** Worker `index`'s addresses of `all`: every count-th, or all of them when there are fewer than workers. */
function spread(all: readonly string[], count: number, index: number): string[] {
  if (all.length < count) return [all[index % all.length]!];
  return all.filter((_, i) => i % count === index);
}

export interface WorkersRun {
  /** The run as one generator would report it, thresholds checked against the merged figures. */
  merged: BenchResult;
  /** Each worker's own result, in worker order. */
  results: BenchResult[];
}

const here = fileURLToPath(import.meta.url);
/** The worker's module beside this one (.js when built, .ts under tsx in a checkout). */
const WORKER_MODULE = here.replace(/workers\.(ts|js)$/, 'worker-process.$1');

/** Runs `options` on `count` worker processes and merges their results. */
export async function runWorkers(options: BenchOptions, count: number): Promise<WorkersRun> {
  const perWorker = workerOptions(options, count);
  const children: ChildProcess[] = perWorker.map(() =>
    fork(WORKER_MODULE, [], {
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      execArgv: here.endsWith('.ts') ? ['--import', 'tsx'] : [],
    }),
  );
  const progress: Array<BenchProgress | undefined> = perWorker.map(() => undefined);
  // With a --start-at of the user's, that is the window; else one window from when all are connected.
  let connected = 0;
  const workerConnected = () => {
    if (++connected < children.length || options.startAt !== undefined) return;
    const startAt =
      Date.now() + START_MARGIN_MS + (options.warmupSeconds ?? (options.messages === undefined ? 1 : 0)) * 1000;
    for (const child of children) if (child.connected) child.send({ startAt } satisfies ToWorker);
  };
  const stop = () => children.forEach((child) => child.connected && child.send({ stop: true } satisfies ToWorker));
  options.signal?.addEventListener('abort', stop, { once: true });
  try {
    const results = await Promise.all(
      children.map(
        (child, index) =>
          new Promise<BenchResult>((resolve, reject) => {
            child.on('message', (message: FromWorker) => {
              if ('connected' in message) workerConnected();
              else if ('result' in message) resolve(message.result);
              else if ('error' in message) reject(workerError(message.error));
              else {
                progress[index] = message.progress;
                reportProgress(options, progress);
              }
            });
            // 'close', not 'exit': a busy parent may reap the worker before it has read the
            // worker's last message, the result, which 'close' waits for.
            child.once('close', (code, signal) =>
              reject(
                new EchoplexError(
                  'ERR_ECHOPLEX_WORKER',
                  `bench worker ${index + 1} exited (${signal ?? `status ${code}`}) before its result`,
                ),
              ),
            );
            child.send({ run: perWorker[index]! } satisfies ToWorker);
          }),
      ),
    );
    // The workers ran one set of settings by construction, and two of them may well report the
    // same figures (none at all, say): merge's guard against one result given twice is not for them.
    return { merged: mergeResults(results, { thresholds: options.thresholds ?? [], force: true }), results };
  } finally {
    options.signal?.removeEventListener('abort', stop);
    for (const child of children) if (child.exitCode === null) child.kill();
  }
}

/** One progress line for the whole run: the first worker's phase and time, every worker's rate and errors. */
function reportProgress(options: BenchOptions, progress: ReadonlyArray<BenchProgress | undefined>): void {
  const first = progress[0];
  if (options.onProgress === undefined || first === undefined) return;
  const known = progress.filter((p): p is BenchProgress => p !== undefined);
  options.onProgress({
    ...first,
    messagesPerSecond: known.reduce((sum, p) => sum + p.messagesPerSecond, 0),
    errors: known.reduce((sum, p) => sum + p.errors, 0),
  });
}

/** A worker's error as the class the CLI maps to an exit status. */
function workerError({ code, message }: { code: string; message: string }): Error {
  return code === 'ERR_ECHOPLEX_USAGE' ? new UsageError(message) : new EchoplexError(code, message);
}
