// `echoplex serve`: flags to options, the listening line, signals to a graceful close.

import { Command } from 'commander';
import { createEchoServer, DEFAULT_HOST, DEFAULT_MAX_BUFFERED, DEFAULT_PORT, DEFAULT_SHUTDOWN_TIMEOUT_MS } from '../server/server.js';
import { TRANSFORM_NAMES, type TransformName } from '../server/transforms.js';
import { createLogger, LOG_FORMATS, LOG_LEVEL_NAMES, type LogFormat, type LogLevel } from '../ops/log.js';
import { DEFAULT_MAX_CONNECTIONS } from '../server/limits.js';
import { envOption } from './environment.js';
import { parseCidrList, parsePort, parsePortList, parsePositiveInteger, parseSeconds, parseSize } from './parsers.js';

interface ServeFlags {
  host: string;
  port: number[];
  transform: TransformName;
  maxBuffered: number;
  shutdownTimeout: number;
  maxConnections: number;
  maxConnectionsPerIp?: number;
  idleTimeout: number;
  allow?: string[];
  metricsPort?: number;
  metricsHost: string;
  logFormat: LogFormat;
  logLevel: LogLevel;
  quiet: boolean;
}

export function serveCommand(): Command {
  return new Command('serve')
    .description('run the echo server')
    .addOption(envOption('--host <host>', 'address to listen on').default(DEFAULT_HOST))
    .addOption(envOption('--port <port[,port...]>', 'port(s); 0 picks a free one').default([DEFAULT_PORT], String(DEFAULT_PORT)).argParser(parsePortList))
    .addOption(envOption('--transform <name>', 'what to send back').choices(TRANSFORM_NAMES).default('echo'))
    .addOption(
      envOption('--max-buffered <bytes>', 'unsent bytes per connection before reading pauses')
        .default(DEFAULT_MAX_BUFFERED, '1MiB')
        .argParser(parseSize),
    )
    .addOption(
      envOption('--shutdown-timeout <seconds>', 'on SIGTERM/SIGINT, how long connections may drain')
        .default(DEFAULT_SHUTDOWN_TIMEOUT_MS / 1000)
        .argParser(parseSeconds),
    )
    .addOption(envOption('--max-connections <n>', 'connections open at once; more are closed at once').default(DEFAULT_MAX_CONNECTIONS).argParser(parsePositiveInteger))
    .addOption(envOption('--max-connections-per-ip <n>', 'connections open at once from one address (default: unlimited)').argParser(parsePositiveInteger))
    .addOption(envOption('--idle-timeout <seconds>', 'close connections with no traffic for this long; 0 = never').default(0).argParser(parseSeconds))
    .addOption(envOption('--allow <cidr[,cidr...]>', 'only these IPv4/IPv6 networks may connect (default: all)').argParser(parseCidrList))
    .addOption(envOption('--metrics-port <port>', 'serve /metrics, /healthz and /readyz over HTTP on this port (default: off)').argParser(parsePort))
    .addOption(envOption('--metrics-host <host>', 'address for the metrics port').default('127.0.0.1'))
    .addOption(envOption('--log-format <format>', 'text lines, or one JSON object per event').choices(LOG_FORMATS).default('text'))
    .addOption(envOption('--log-level <level>', 'least severe level logged').choices(LOG_LEVEL_NAMES).default('info'))
    .addOption(envOption('-q, --quiet', 'no per-event log lines (warnings and errors still go to stderr)').default(false))
    .action(async (flags: ServeFlags) => {
      await serve(flags);
    });
}

async function serve(flags: ServeFlags): Promise<void> {
  const logger = await createLogger(flags.logFormat, flags.logLevel);
  const server = createEchoServer({
    host: flags.host,
    port: flags.port,
    transform: flags.transform,
    maxBuffered: flags.maxBuffered,
    logger,
    logConnectionEvents: !flags.quiet,
    maxConnections: flags.maxConnections,
    ...(flags.maxConnectionsPerIp !== undefined && { maxConnectionsPerIp: flags.maxConnectionsPerIp }),
    ...(flags.allow !== undefined && { allow: flags.allow }),
    idleTimeoutMs: flags.idleTimeout * 1000,
  });
  let closeMetrics: (() => Promise<void>) | undefined;
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.warn({ event: 'shutdown', signal }, `${signal} again: closing ${server.connections.size} connections now`);
      server.destroy();
      process.exit(1);
    }
    signalled = true;
    logger.info(
      { event: 'shutdown', signal, connections: server.connections.size },
      `${signal}: no longer accepting; draining ${server.connections.size} connections (up to ${flags.shutdownTimeout}s)`,
    );
    void server.close({ timeoutMs: flags.shutdownTimeout * 1000 }).then(({ forced }) => {
      if (forced > 0) {
        logger.warn({ event: 'shutdown', forced }, `shutdown timeout: closed ${forced} connections that were still open`);
      }
      logger.info({ event: 'shutdown', forced }, 'shut down');
      void closeMetrics?.();
      process.exitCode = 0;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    });
  };
  // Handlers first: whoever reads the listening line may signal us at once.
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  await server.listen();
  if (flags.metricsPort !== undefined) {
    // Loaded only when asked for: a plain echo server carries no HTTP or metrics code.
    const { startMetricsServer } = await import('../ops/metrics.js');
    const metrics = await startMetricsServer(server, { host: flags.metricsHost, port: flags.metricsPort });
    closeMetrics = metrics.close;
    logger.info({ event: 'metrics', url: metrics.url }, `metrics on ${metrics.url}/metrics (probes: /healthz, /readyz)`);
  }
  const urls = server.addresses.map((address) => address.url).join(', ');
  process.stdout.write(`echoplex listening on ${urls} (transform: ${flags.transform})\n`);
}
