// Prometheus metrics, health probes and the status page over HTTP, read from the server's own
// counters when asked.

import { handleAdmin, type AdminOptions } from './admin.js';
import { listenFailure } from '../core/errors.js';
import { formatHostPort } from '../core/address.js';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { EchoServer } from '../server/server.js';
import type { ErrorKind, RejectReason, ServerStats, Transport } from '../server/stats.js';
import { VERSION } from '../core/version.js';
import type { Logger } from '../core/log.js';
import { STATUS_PAGE, StatusFeed } from './status.js';

export interface MetricsOptions {
  host?: string;
  port: number;
  /** Serve /admin/... as well (--admin). */
  admin?: AdminOptions;
}

export interface MetricsEndpoint {
  /** e.g. `http://127.0.0.1:9090` */
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * A registry whose echoplex metrics are computed from `server.stats()` when scraped: the hot
 * path keeps bumping plain numbers and pays nothing for metrics, and the figures are exact.
 */
export function createMetricsRegistry(server: EchoServer): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  let snapshot: ServerStats = server.stats();
  // One snapshot per scrape, taken by the first metric collected (metrics are collected in the
  // order they were registered), so all figures agree with each other.
  const refresh = () => {
    snapshot = server.stats();
  };

  const counter = (name: string, help: string, read: (s: ServerStats) => number) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read(snapshot));
      },
    });

  // The usual Prometheus idiom: a constant 1 whose label says which build is running, so a
  // dashboard can tell a rollout apart from a regression.
  // Workers all run the same build: their 1s are not summed but taken once.
  // The engine label says which engine serves plain TCP: a server that fell back to the
  // portable one is visible from its metrics.
  new Gauge({
    name: 'echoplex_build_info',
    help: 'Always 1; the labels are the running echoplex version and the engine serving plain TCP (native or portable)',
    labelNames: ['version', 'engine'],
    aggregator: 'first',
    registers: [registry],
  }).set({ version: VERSION, engine: server.engine }, 1);
  new Gauge({
    name: 'echoplex_connections_active',
    help: 'Connections open now',
    registers: [registry],
    collect() {
      refresh();
      this.set(snapshot.connectionsActive);
    },
  });
  counter('echoplex_connections_total', 'Connections accepted', (s) => s.connectionsTotal);
  counter('echoplex_bytes_received_total', 'Bytes received from clients', (s) => s.bytesReceived);
  counter('echoplex_bytes_sent_total', 'Bytes sent to clients', (s) => s.bytesSent);
  counter(
    'echoplex_backpressure_pauses_total',
    'Times a connection stopped being read because its client was not reading',
    (s) => s.backpressurePauses,
  );
  counter('echoplex_idle_timeouts_total', 'Connections closed by --idle-timeout', (s) => s.idleTimeouts);
  new Counter({
    name: 'echoplex_connections_rejected_total',
    help: 'Connections closed at once, by reason',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, count] of Object.entries(snapshot.rejected) as Array<[RejectReason, number]>)
        this.inc({ reason }, count);
    },
  });
  new Counter({
    name: 'echoplex_messages_total',
    help: 'Whole messages echoed, by transport: UDP datagrams, WebSocket messages (ws, wss), and lines in line mode',
    labelNames: ['transport'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [transport, count] of Object.entries(snapshot.messages) as Array<[Transport, number]>)
        this.inc({ transport }, count);
    },
  });
  new Counter({
    name: 'echoplex_errors_total',
    help: 'Errors, by kind',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [kind, count] of Object.entries(snapshot.errors) as Array<[ErrorKind, number]>)
        this.inc({ kind }, count);
    },
  });
  new Counter({
    name: 'echoplex_ws_closes_total',
    help: "WebSocket connections closed, by close code: the one this server sent where it closed first, else the client's (1006: no close frame)",
    labelNames: ['code'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [code, count] of Object.entries(snapshot.wsCloses ?? {})) this.inc({ code }, count);
    },
  });
  new Counter({
    name: 'echoplex_faults_total',
    help: 'Faults injected on purpose (--fault), by kind',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [kind, count] of Object.entries(snapshot.faults ?? {})) this.inc({ kind }, count);
    },
  });
  return registry;
}

/** Where the metrics endpoint gets its figures: one server, or the sum over cluster workers. */
export interface MetricsSource {
  /** Prometheus text exposition. */
  metrics(): Promise<string>;
  readonly contentType: string;
  /** The counters now. */
  stats(): Promise<ServerStats>;
  /** Accepting connections (what /readyz reports), and the state to show when not. */
  readiness(): { ready: boolean; state: string };
}

/** The figures of one server in this process. */
export function serverMetricsSource(server: EchoServer): MetricsSource {
  const registry = createMetricsRegistry(server);
  return {
    metrics: () => registry.metrics(),
    contentType: registry.contentType,
    stats: async () => server.stats(),
    readiness: () => ({
      ready: server.ready,
      state: server.state === 'listening' && !server.ready ? 'out of service' : server.state,
    }),
  };
}

/**
 * Starts the metrics endpoint and logs where it is; returns how to close it. If it cannot
 * listen, `undo` runs first: every listener is up before the listening line, or none stays up,
 * since a server without the probes it was asked for would look healthy to nobody and serve anyway.
 */
export async function serveMetrics(
  source: MetricsSource,
  options: MetricsOptions,
  logger: Logger,
  undo: () => void,
): Promise<() => Promise<void>> {
  const metrics = await startMetricsServer(source, options).catch((err: unknown) => {
    undo();
    throw err;
  });
  logger.info(
    { event: 'metrics', url: metrics.url },
    `metrics on ${metrics.url}/metrics (probes: /healthz, /readyz; status page: /)`,
  );
  return metrics.close;
}

/**
 * Serves `/metrics`, `/healthz` (alive), `/readyz` (accepting; 503 from the moment shutdown
 * begins), and the live status page at `/` with its event stream (see status.ts).
 */
export async function startMetricsServer(source: MetricsSource, options: MetricsOptions): Promise<MetricsEndpoint> {
  const status = new StatusFeed(source);
  const httpServer = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path.startsWith('/admin/')) {
      if (options.admin !== undefined) handleAdmin(req, res, path, options.admin);
      else res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: the admin endpoints need --admin\n');
    } else if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics') {
      source.metrics().then(
        (body) => res.writeHead(200, { 'content-type': source.contentType }).end(body),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
      );
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const { ready, state } = source.readiness();
      res
        .writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' })
        .end(ready ? 'ready\n' : `not ready (${state})\n`);
    } else if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(STATUS_PAGE);
    } else if (path === '/events') {
      status.subscribe(res);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /, /metrics, /healthz, /readyz\n');
    }
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', (err) => reject(listenFailure(`http://${formatHostPort(host, options.port)}`, err)));
    httpServer.listen(options.port, host, () => {
      httpServer.removeAllListeners('error');
      resolve();
    });
  });
  status.start();
  const { port, address } = httpServer.address() as AddressInfo;
  return {
    url: `http://${address.includes(':') ? `[${address}]` : address}:${port}`,
    port,
    close: () =>
      new Promise((resolve) => {
        status.stop();
        httpServer.close(() => resolve());
        httpServer.closeAllConnections();
      }),
  };
}
