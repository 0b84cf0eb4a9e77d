// --workers N: the primary process forks N event loops that share the listening ports, prints one
// listening line, restarts a worker that dies, drains them all on SIGTERM, and serves metrics
// summed over every worker.
//
// Each worker accepts TCP and reads UDP on sockets of its own where the ports can be shared
// (SO_REUSEPORT, src/native/shared-port.ts): the primary claims the TCP ports and the kernel
// spreads connections and datagrams. Elsewhere, and for Unix sockets, Node's cluster shares the
// primary's sockets.

import cluster, { type Worker } from 'node:cluster';
import { formatEndpoint, ipOf } from '../core/address.js';
import { counted, listenFailure, WorkerStartError } from '../core/errors.js';
import { claimSharedPort, sharedPortsAvailable, type ClaimedPort } from '../native/shared-port.js';
import { removeStaleSocket } from '../server/listener.js';
import { addStats, emptyStats, type ServerStats } from '../server/stats.js';
import type { Logger } from '../core/log.js';

/** A worker's metrics as prom-client's `getMetricsAsJSON()` gives them, for `AggregatorRegistry.aggregate`. */
export type MetricsJson = Array<{ name: string; type: unknown; values: unknown[] }>;

/** Messages between the primary and its workers. */
export type WorkerMessage =
  | { type: 'echoplex:listening'; urls: string[]; engines: string }
  | { type: 'echoplex:stats-request'; id: number }
  | { type: 'echoplex:stats'; id: number; stats: ServerStats }
  | { type: 'echoplex:metrics-request'; id: number }
  | { type: 'echoplex:metrics'; id: number; metrics: MetricsJson };

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
  /** The TCP ports the workers serve (0: a free one), to be claimed and shared where that can be done. */
  tcp?: { host: string; ports: readonly number[]; transport: string };
}

/** The variable that tells a worker which ports its primary claimed for it to share. */
const SHARED_PORTS_VARIABLE = 'ECHOPLEX_WORKER_SHARED_PORTS';

/** In a worker: the address and ports its primary claimed, if it claimed any. */
export function sharedPortsIn(env: NodeJS.ProcessEnv): { ip: string; ports: number[] } | undefined {
  const value = env[SHARED_PORTS_VARIABLE];
  if (value === undefined) return undefined;
  const [ip = '', list = ''] = value.split(' ');
  return { ip, ports: list.split(',').map(Number) };
}

/**
 * Claims the TCP ports for the workers to share, where the system can (see the file's opening),
 * with the environment that tells them; none where it cannot.
 */
async function claimPorts(
  tcp: PrimaryOptions['tcp'],
): Promise<{ claimed: ClaimedPort[]; env: Record<string, string> }> {
  if (tcp === undefined || tcp.ports.length === 0 || !sharedPortsAvailable()) return { claimed: [], env: {} };
  const { host, ports, transport } = tcp;
  const failed = (port: number, err: unknown) => listenFailure(formatEndpoint(transport, host, port), err);
  // Resolved once, here: every worker binds the same address.
  const ip = await ipOf(host).catch((err: unknown) => {
    throw failed(ports[0] ?? 0, err);
  });
  const claimed: ClaimedPort[] = [];
  for (const port of ports) {
    try {
      claimed.push(claimSharedPort(ip, port));
    } catch (err) {
      claimed.forEach((claim) => claim.release());
      throw failed(port, err);
    }
  }
  return { claimed, env: { [SHARED_PORTS_VARIABLE]: `${ip} ${claimed.map((claim) => claim.port).join(',')}` } };
}

const RESTART_WINDOW_MS = 10_000;
/** How often the primary reads its workers' totals, so that a worker killed between scrapes loses little. */
const TOTALS_POLL_MS = 2000;
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
  readonly #pending = new Map<number, (reply: ServerStats | MetricsJson | undefined) => void>();
  /**
   * The newest figures each worker gave, and what workers that died had counted: totals stay
   * monotonic across a worker's death and restart (Prometheus reads a drop as a counter reset).
   */
  readonly #lastStats = new Map<Worker, ServerStats>();
  readonly #lastMetrics = new Map<Worker, MetricsJson>();
  #retiredStats = emptyStats();
  #retiredMetrics: MetricsJson = [];
  #poll: NodeJS.Timeout | undefined;
  #onStartFailed: ((err: Error) => void) | undefined;
  #onAllListening: ((listening: { urls: string[]; engines: string }) => void) | undefined;
  #onGaveUp: (() => void) | undefined;

  constructor(target: number, log: Logger, env: Record<string, string> = {}) {
    this.#target = target;
    this.#log = log;
    this.#env = env;
  }

  /**
   * Forks every worker; resolves with the addresses (and the engines serving them) once all
   * listen, rejects if one fails first.
   */
  start(): Promise<{ urls: string[]; engines: string }> {
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

  /**
   * Every worker's counters, added up, with what dead workers had counted. A worker that does
   * not answer in time counts with its last answer.
   */
  async stats(): Promise<ServerStats> {
    await Promise.all([...this.#listening].map((worker) => this.#ask(worker, 'stats')));
    const total = addStats(emptyStats(), this.#retiredStats);
    for (const worker of this.#listening) {
      const stats = this.#lastStats.get(worker);
      if (stats !== undefined) addStats(total, stats);
    }
    return total;
  }

  /**
   * Every worker's Prometheus metrics, aggregated as prom-client's cluster support does, with
   * the counters and histograms of workers that died added in (their gauges are gone with them).
   */
  async metrics(): Promise<string> {
    await Promise.all([...this.#listening].map((worker) => this.#ask(worker, 'metrics')));
    const { AggregatorRegistry } = await import('prom-client');
    const live = [...this.#listening]
      .map((worker) => this.#lastMetrics.get(worker))
      .filter((metrics) => metrics !== undefined);
    return AggregatorRegistry.aggregate([...live, this.#retiredMetrics]).metrics();
  }

  /** Reads every worker's totals now and then (with metrics on), so a worker's death loses little. */
  pollTotals(metrics: boolean): void {
    this.#poll = setInterval(() => {
      for (const worker of this.#listening) {
        void this.#ask(worker, 'stats');
        if (metrics) void this.#ask(worker, 'metrics');
      }
    }, TOTALS_POLL_MS);
    this.#poll.unref();
  }

  /** Asks every worker to drain (SIGTERM) and resolves once all have exited; SIGKILL after `timeoutMs`. */
  async shutdown(timeoutMs: number): Promise<number> {
    this.#shuttingDown = true;
    clearInterval(this.#poll);
    const workers = Object.values(cluster.workers ?? {}).filter((worker): worker is Worker => worker !== undefined);
    const exits = workers.map(
      (worker) => new Promise<void>((resolve) => (worker.isDead() ? resolve() : worker.once('exit', () => resolve()))),
    );
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
        this.#onAllListening?.(message);
      }
    } else if (message.type === 'echoplex:stats') {
      this.#lastStats.set(worker, message.stats);
      this.#pending.get(message.id)?.(message.stats);
    } else if (message.type === 'echoplex:metrics') {
      this.#lastMetrics.set(worker, message.metrics);
      this.#pending.get(message.id)?.(message.metrics);
    }
  }

  /** Keeps what a worker that died had counted. */
  async #retire(worker: Worker): Promise<void> {
    const stats = this.#lastStats.get(worker);
    this.#lastStats.delete(worker);
    if (stats !== undefined) this.#retiredStats = addStats(this.#retiredStats, { ...stats, connectionsActive: 0 });
    const metrics = this.#lastMetrics.get(worker);
    this.#lastMetrics.delete(worker);
    if (metrics === undefined) return;
    // Only what only grows: a dead worker has no connections open, heap or event-loop lag.
    const kept = metrics.filter((metric) => metric.type === 'counter' || metric.type === 'histogram');
    const { AggregatorRegistry } = await import('prom-client');
    this.#retiredMetrics = (await AggregatorRegistry.aggregate([
      this.#retiredMetrics,
      kept,
    ]).getMetricsAsJSON()) as unknown as MetricsJson;
  }

  #exited(worker: Worker, code: number | null, signal: string | null): void {
    this.#listening.delete(worker);
    void this.#retire(worker);
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
      this.#log.error(
        { event: 'worker_restarts', restarts: this.#restarts.length },
        `workers died ${this.#restarts.length} times in ${RESTART_WINDOW_MS / 1000}s; giving up`,
      );
      this.#onGaveUp?.();
      return;
    }
    this.#log.warn(
      { event: 'worker_exit', worker: worker.id, pid: worker.process.pid, code, signal },
      `worker ${worker.id} (pid ${worker.process.pid}) ${how}; starting a new one`,
    );
    this.#fork();
  }

  /** Asks a worker for its stats or metrics; the answer lands in #lastStats or #lastMetrics. Resolves when it came or timed out. */
  #ask(worker: Worker, what: 'stats' | 'metrics'): Promise<void> {
    const id = this.#nextRequest++;
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, STATS_TIMEOUT_MS);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#pending.set(id, () => {
        this.#pending.delete(id);
        done();
      });
      const request: WorkerMessage =
        what === 'stats' ? { type: 'echoplex:stats-request', id } : { type: 'echoplex:metrics-request', id };
      try {
        worker.send(request);
      } catch {
        this.#pending.delete(id);
        done();
      }
    }).finally(() => this.#pending.delete(id));
  }
}

/** The primary's life: check paths, fork, print the listening line, serve metrics, handle signals. */
export async function runPrimary(options: PrimaryOptions): Promise<void> {
  const { logger } = options;
  for (const path of options.unixPaths) await removeStaleSocket(path, `unix://${path}`);
  const { claimed, env } = await claimPorts(options.tcp);
  const release = () => claimed.forEach((claim) => claim.release());
  const pool = new WorkerPool(options.workers, logger, { ...options.workerEnv, ...env });
  let closeMetrics: (() => Promise<void>) | undefined;
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.warn({ event: 'shutdown', signal }, `${signal} again: killing the workers now`);
      pool.kill();
      process.exit(1);
    }
    signalled = true;
    logger.info(
      { event: 'shutdown', signal, workers: options.workers },
      `${signal}: draining ${counted(options.workers, 'worker')} (up to ${options.shutdownTimeoutSeconds}s)`,
    );
    void pool.shutdown(options.shutdownTimeoutSeconds * 1000 + 5000).then(async (killed) => {
      if (killed > 0) logger.warn({ event: 'shutdown', killed }, `killed ${killed} workers that did not exit in time`);
      logger.info({ event: 'shutdown' }, 'shut down');
      release();
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

  const { urls, engines } = await pool.start();
  if (options.metrics) {
    const [{ AggregatorRegistry }, { serveMetrics }] = await Promise.all([
      import('prom-client'),
      import('./metrics.js'),
    ]);
    pool.pollTotals(true);
    closeMetrics = await serveMetrics(
      {
        // Each worker's registry, added up as prom-client's cluster support does, and dead workers' counts kept.
        metrics: () => pool.metrics(),
        contentType: AggregatorRegistry.PROMETHEUS_CONTENT_TYPE,
        stats: () => pool.stats(),
        readiness: () => ({ ready: pool.ready, state: pool.state }),
      },
      options.metrics,
      logger,
      () => {
        pool.kill();
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      },
    );
  }
  process.stdout.write(
    `echoplex listening on ${urls.join(', ')} (${options.describe}, ${engines}, ${options.workers} workers)\n`,
  );
}
