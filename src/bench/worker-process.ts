// One `bench --workers` generator: runs the options its parent sends and sends back the result (see workers.ts).

import { runBench } from './loadgen.js';
import type { FromWorker, ToWorker } from './workers.js';

const stop = new AbortController();
// Ctrl-C reaches the whole process group: this worker stops as its parent asks, not at once.
process.on('SIGINT', () => stop.abort());

process.on('message', (message: ToWorker) => {
  if ('stop' in message) return stop.abort();
  runBench({
    ...message.run,
    signal: stop.signal,
    onProgress: (progress) => send({ progress }),
  }).then(
    (result) => send({ result }),
    (err: Error & { code?: string }) =>
      send({ error: { code: err.code ?? 'ERR_ECHOPLEX_WORKER', message: err.message } }),
  );
});

function send(message: FromWorker): void {
  process.send?.(message);
  if (!('progress' in message)) process.disconnect?.();
}
