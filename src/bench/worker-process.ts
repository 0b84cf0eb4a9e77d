// One `bench --workers` generator: runs the options its parent sends and sends back the result (see workers.ts).

import { runBench } from './loadgen.js';
import type { FromWorker, ToWorker } from './workers.js';

const stop = new AbortController();
// Ctrl-C reaches the whole process group: this worker stops as its parent asks, not at once.
process.on('SIGINT', () => stop.abort());

/** Resolves with the window's start, once the parent has heard that every worker is connected. */
let started: ((startAt: number) => void) | undefined;

process.on('message', (message: ToWorker) => {
  if ('stop' in message) return stop.abort();
  if ('startAt' in message) return started?.(message.startAt);
  const own = message.run.startAt;
  runBench({
    ...message.run,
    // A --start-at of the user's is every worker's window as it is.
    ...(own === undefined && {
      startWhen: () =>
        new Promise<number>((resolve) => {
          started = resolve;
          send({ connected: true });
        }),
    }),
    signal: stop.signal,
    onProgress: (progress) => send({ progress }),
  }).then(
    (result) => send({ result }),
    (err: Error & { code?: string }) =>
      send({ error: { code: err.code ?? 'ERR_ECHOPLEX_WORKER', message: err.message } }),
  );
});

function send(message: FromWorker): void {
  const last = 'result' in message || 'error' in message;
  // Disconnecting at once would close the channel under a write the parent has not read yet
  // (a large result while the parent is busy), and the worker would exit without it.
  process.send?.(message, undefined, {}, () => {
    if (last) process.disconnect?.();
  });
}
