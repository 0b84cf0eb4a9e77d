// --workers N: the primary process forks N event loops that share the listening sockets (Node's
// cluster), prints one listening line, restarts a worker that dies, drains them all on SIGTERM,
// and serves metrics summed over every worker.

import cluster, { type Worker } from 'node:cluster';
import { WorkerStartError } from '../core/errors.js';
import { removeStaleSocket } from '../server/listener.js';
import { addStats, emptyStats, type ServerStats } from '../server/stats.js';
import type { Logger } from '../core/log.js';

/** Messages between the primary and its workers. */
export type WorkerMessage =
  | { type: 'echoplex:listening'; urls: string[] }
  | { type: 'echoplex:stats-request'; id: number }
  | { type: 'echoplex:stats'; id: number; stats: ServerStats };

export interface PrimaryOptions {
  workers: number;
  logger: Logger;
  /** The workers' own drain timeout; the primary waits that long plus a margin. */
  shutdownTimeoutSeconds: number;
  /** Checked (and a stale file removed) once here, before the workers share the socket. */
  unixPaths: readonly string[];
  metrics?: { host: string; port: number };
  /** What the listening line says after the addresses, e.g. `transform: echo`. */
  describe: string;
  /** Extra environment for every worker (say, a certificate made once for all of them). */
  workerEnv?: Record<string, string>;
}

const RESTART_WINDOW_MS = 10_000;
const MAX_RESTARTS_IN_WINDOW = 10;
const STATS_TIMEOUT_MS = 1000;

/** The set of workers: keeps `target` of them running until shutdown. */
export class WorkerPool {
  readonly #target: number;
  readonly #log: Logger;
  readonly #env: Record<string, string>;
  readonly #listening = new Set<Worker>();
  readonly #restarts: number[] = [];
  #started = false;
  #shuttingDown = false;
  #nextRequest = 1;
  readonly #pendingStats = new Map<number, (stats: ServerStats) => void>();
  #onStartFailed: ((err: Error) => void) | undefined;
  #onAllListening: ((urls: string[]) => void) | undefined;
  #onGaveUp: (() => void) | undefined;

  constructor(target: number, log: Logger, env: Record<string, string> = {}) {
    this.#target = target;
    this.#log = log;
    this.#env = env;
  }

  /** Forks every worker; resolves with the addresses once all listen, rejects if one fails first. */
  start(): Promise<string[]> {
    return new Promise((resolve, reject) => {
      this.#onAllListening = resolve;
      this.#onStartFailed = reject;
      for (let i = 0; i < this.#target; i++) this.#fork();
    });
  }

  /** Called when workers keep dying faster than they can be replaced. */
  onGaveUp(callback: () => void): void {
    this.#onGaveUp = callback;
  }

  get ready(): boolean {
    return !this.#shuttingDown && this.#listening.size === this.#target;
  }

  get state(): string {
    if (this.#shuttingDown) return 'draining';
    return `${this.#listening.size} of ${this.#target} workers listening`;
  }

  /** Every listening worker's counters, added up. A worker that does not answer in time is left out. */
  async stats(): Promise<ServerStats> {
    const readings = await Promise.all([...this.#listening].map((worker) => this.#statsOf(worker)));
    return readings.reduce<ServerStats>((total, stats) => (stats ? addStats(total, stats) : total), emptyStats());
  }

  /** Asks every worker to drain (SIGTERM) and resolves once all have exited; SIGKILL after `timeoutMs`. */
  async shutdown(timeoutMs: number): Promise<number> {
    this.#shuttingDown = true;
    const workers = Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => worker !== undefined);
    const exits = workers.map((worker) => new Promise<void>((resolve) => (worker.isDead() ? resolve() : worker.once('exit', () => resolve()))));
    for (const worker of workers) worker.process.kill('SIGTERM');
    let killed = 0;
    const deadline = setTimeout(() => {
      for (const worker of workers) {
        if (!worker.isDead()) {
          killed++;
          worker.process.kill('SIGKILL');
        }
      }
    }, timeoutMs);
    await Promise.all(exits);
    clearTimeout(deadline);
    return killed;
  }

  /** Kills every worker at once (a second signal). */
  kill(): void {
    this.#shuttingDown = true;
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGKILL');
  }

  #fork(): void {
    const worker = cluster.fork(this.#env);
    worker.on('message', (message: WorkerMessage) => this.#message(worker, message));
    worker.once('exit', (code, signal) => this.#exited(worker, code, signal));
  }

  #message(worker: Worker, message: WorkerMessage): void {
    if (message.type === 'echoplex:listening') {
      this.#listening.add(worker);
      if (!this.#started && this.#listening.size === this.#target) {
        this.#started = true;
        this.#onAllListening?.(message.urls);
      }
    } else if (message.type === 'echoplex:stats') {
      this.#pendingStats.get(message.id)?.(message.stats);
    }
  }

  #exited(worker: Worker, code: number | null, signal: string | null): void {
    this.#listening.delete(worker);
    if (this.#shuttingDown) return;
    const how = signal ? `killed by ${signal}` : `exited with status ${code}`;
    if (!this.#started) {
      // It has already said why (port in use, bad certificate...) on stderr.
      this.#shuttingDown = true;
      this.kill();
      this.#onStartFailed?.(new WorkerStartError(how, code !== null && code > 0 ? code : 1));
      return;
    }
    const now = Date.now();
    this.#restarts.push(now);
    while (this.#restarts.length > 0 && this.#restarts[0]! < now - RESTART_WINDOW_MS) this.#restarts.shift();
    if (this.#restarts.length > MAX_RESTARTS_IN_WINDOW) {
      this.#log.error({ event: 'worker_restarts', restarts: this.#restarts.length }, `workers died ${this.#restarts.length} times in ${RESTART_WINDOW_MS / 1000}s; giving up`);
      this.#onGaveUp?.();
      return;
    }
    this.#log.warn({ event: 'worker_exit', worker: worker.id, pid: worker.process.pid, code, signal }, `worker ${worker.id} (pid ${worker.process.pid}) ${how}; starting a new one`);
    this.#fork();
  }

  #statsOf(worker: Worker): Promise<ServerStats | undefined> {
    const id = this.#nextRequest++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(undefined), STATS_TIMEOUT_MS);
      const done = (stats: ServerStats | undefined) => {
        clearTimeout(timer);
        this.#pendingStats.delete(id);
        resolve(stats);
      };
      this.#pendingStats.set(id, done);
      const request: WorkerMessage = { type: 'echoplex:stats-request', id };
      try {
        worker.send(request);
      } catch {
        done(undefined);
      }
    });
  }
}

/** The primary's life: check paths, fork, print the listening line, serve metrics, handle signals. */
export async function runPrimary(options: PrimaryOptions): Promise<void> {
  const { logger } = options;
  for (const path of options.unixPaths) await removeStaleSocket(path, `unix://${path}`);
  const pool = new WorkerPool(options.workers, logger, options.workerEnv);
  let closeMetrics: (() => Promise<void>) | undefined;
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.warn({ event: 'shutdown', signal }, `${signal} again: killing the workers now`);
      pool.kill();
      process.exit(1);
    }
    signalled = true;
    logger.info({ event: 'shutdown', signal, workers: options.workers }, `${signal}: draining ${options.workers} workers (up to ${options.shutdownTimeoutSeconds}s)`);
    void pool.shutdown(options.shutdownTimeoutSeconds * 1000 + 5000).then(async (killed) => {
      if (killed > 0) logger.warn({ event: 'shutdown', killed }, `killed ${killed} workers that did not exit in time`);
      logger.info({ event: 'shutdown' }, 'shut down');
      await closeMetrics?.();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.exitCode = 0;
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  pool.onGaveUp(() => {
    void pool.shutdown(5000).then(() => process.exit(1));
  });

  const urls = await pool.start();
  if (options.metrics) {
    const [{ AggregatorRegistry }, { startMetricsServer }] = await Promise.all([import('prom-client'), import('./metrics.js')]);
    const aggregator = new AggregatorRegistry();
    const metrics = await startMetricsServer(
      {
        // prom-client asks each worker for its registry and adds the figures up.
        metrics: () => aggregator.clusterMetrics(),
        contentType: aggregator.contentType,
        stats: () => pool.stats(),
        readiness: () => ({ ready: pool.ready, state: pool.state }),
      },
      options.metrics,
    ).catch((err: unknown) => {
      // As with one process: every listener is up before the listening line, or none stays up.
      pool.kill();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      throw err;
    });
    closeMetrics = metrics.close;
    logger.info({ event: 'metrics', url: metrics.url }, `metrics on ${metrics.url}/metrics (probes: /healthz, /readyz; status page: /)`);
  }
  process.stdout.write(`echoplex listening on ${urls.join(', ')} (${options.describe}, ${options.workers} workers)\n`);
}
