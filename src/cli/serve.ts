// `echoplex serve`: flags to options, the listening line, signals to a graceful close.

import cluster from 'node:cluster';
import { Command } from 'commander';
import { sharedPortsIn, type MetricsJson, type WorkerMessage } from '../ops/workers.js';
import {
  createEchoServer,
  type EchoServer,
  DEFAULT_HOST,
  DEFAULT_MAX_BUFFERED,
  DEFAULT_PORT,
  DEFAULT_SHUTDOWN_TIMEOUT_MS,
  type BoundAddress,
  type EchoServerOptions,
} from '../server/server.js';
import { DEFAULT_MAX_LINE, FRAMINGS, type Framing } from '../protocol/framing.js';
import { isTransformName, loadTransformModule, TRANSFORM_NAMES } from '../protocol/transforms.js';
import { createLogger, LOG_FORMATS, LOG_LEVEL_NAMES, type LogFormat, type LogLevel } from '../core/log.js';
import { DEFAULT_MAX_CONNECTIONS } from '../server/limits.js';
import { DEFAULT_MAX_MESSAGE } from '../server/websocket-settings.js';
import { ENGINE_CHOICES, fallbackNotice, type EngineChoice } from '../native/engine.js';
import { counted, UsageError } from '../core/errors.js';
import { formatFaults } from '../server/faults.js';
import { envOption } from './environment.js';
import {
  parseCidrList,
  parseNonNegativeInteger,
  parsePort,
  parsePortList,
  parsePositiveInteger,
  parseWorkers,
  parsePositiveSize,
  parseSeconds,
  parseTransform,
} from './parsers.js';

interface ServeFlags {
  host: string;
  port: number[];
  unix?: string;
  udp: boolean;
  tlsCert?: string;
  tlsKey?: string;
  tlsSelfSigned: boolean;
  tlsCa?: string;
  tlsAlpn?: string[];
  ws: boolean;
  maxMessage: number;
  wsDeflate: boolean;
  transform: string;
  framing: Framing;
  prefix?: string;
  maxLine: number;
  proxyProtocol: boolean;
  proxyTrust?: string[];
  workers: number;
  maxBuffered: number;
  shutdownTimeout: number;
  maxConnections: number;
  maxConnectionsPerIp?: number;
  idleTimeout: number;
  delay: number;
  allow?: string[];
  metricsPort?: number;
  metricsHost: string;
  logFormat: LogFormat;
  logLevel: LogLevel;
  quiet: boolean;
  engine: EngineChoice;
  fault: string[];
  faultSeed?: number;
  admin: boolean;
  adminToken?: string;
  hello: boolean;
  instance?: string;
}

export function serveCommand(): Command {
  return new Command('serve')
    .description('run the echo server')
    .addOption(envOption('--host <host>', 'address to listen on').default(DEFAULT_HOST))
    .addOption(
      envOption('--port <port[,port...]>', 'port(s); 0 picks a free one')
        .default([DEFAULT_PORT], String(DEFAULT_PORT))
        .argParser(parsePortList),
    )
    .addOption(envOption('--unix <path>', 'listen on this Unix socket (alone: instead of TCP; with --port: as well)'))
    .addOption(envOption('--udp', 'also echo UDP datagrams on the same port(s)').default(false))
    .addOption(
      envOption('--tls-cert <file>', 'serve TLS on the TCP port(s) with this PEM certificate (needs --tls-key)'),
    )
    .addOption(envOption('--tls-key <file>', 'PEM private key for --tls-cert'))
    .addOption(
      envOption(
        '--tls-self-signed',
        'serve TLS with a certificate generated at start (for localhost and --host)',
      ).default(false),
    )
    .addOption(envOption('--tls-ca <file>', 'mTLS: require client certificates signed by this PEM CA'))
    .addOption(
      envOption(
        '--tls-alpn <protocols>',
        'ALPN protocols to select from, in order of preference, e.g. h2,http/1.1 (a client offering only others is refused)',
      ).argParser((value) => value.split(',').filter((name) => name !== '')),
    )
    .addOption(
      envOption(
        '--ws',
        'the TCP port(s) speak WebSocket (wss with TLS), one echo per message; a plain GET gets an echo page',
      ).default(false),
    )
    .addOption(
      envOption('--max-message <bytes>', 'with --ws: largest message; a larger one closes with 1009')
        .default(DEFAULT_MAX_MESSAGE, '1MiB')
        .argParser(parsePositiveSize),
    )
    .addOption(envOption('--ws-deflate', 'with --ws: offer permessage-deflate compression').default(false))
    .addOption(
      envOption(
        '--transform <name|module>',
        `${TRANSFORM_NAMES.join(', ')}, or a path to a module whose default export maps a chunk (a line in line mode) to the reply`,
      )
        .default('echo')
        .argParser(parseTransform),
    )
    .addOption(
      envOption('--framing <mode>', 'raw: echo chunks as they arrive; line: the transform sees whole lines')
        .choices(FRAMINGS)
        .default('raw'),
    )
    .addOption(
      envOption(
        '--prefix <text>',
        'put TEXT before every echoed line (implies --framing line), UDP reply and WebSocket message',
      ),
    )
    .addOption(
      envOption('--max-line <bytes>', 'line mode: longest line; a longer one is answered with an error and closed')
        .default(DEFAULT_MAX_LINE, '64KiB')
        .argParser(parsePositiveSize),
    )
    .addOption(
      envOption(
        '--proxy-protocol',
        'every connection starts with a PROXY protocol v1/v2 header naming the real client',
      ).default(false),
    )
    .addOption(
      envOption(
        '--proxy-trust <cidr[,cidr...]>',
        'with --proxy-protocol: only these proxies may connect (default: any)',
      ).argParser(parseCidrList),
    )
    .addOption(
      envOption('--max-buffered <bytes>', 'unsent bytes per connection before reading pauses')
        .default(DEFAULT_MAX_BUFFERED, '1MiB')
        .argParser(parsePositiveSize),
    )
    .addOption(
      envOption('--shutdown-timeout <seconds>', 'on SIGTERM/SIGINT, how long connections may drain')
        .default(DEFAULT_SHUTDOWN_TIMEOUT_MS / 1000)
        .argParser(parseSeconds),
    )
    .addOption(
      envOption('--max-connections <n>', 'connections open at once; more are closed at once')
        .default(DEFAULT_MAX_CONNECTIONS)
        .argParser(parsePositiveInteger),
    )
    .addOption(
      envOption(
        '--max-connections-per-ip <n>',
        'connections open at once from one address (default: unlimited)',
      ).argParser(parsePositiveInteger),
    )
    .addOption(
      envOption('--idle-timeout <seconds>', 'close connections with no traffic for this long; 0 = never')
        .default(0)
        .argParser(parseSeconds),
    )
    .addOption(
      envOption(
        '--delay <seconds>',
        'answer each chunk (each UDP datagram) this long after it arrived, in order: a slow server for timeout tests',
      )
        .default(0)
        .argParser(parseSeconds),
    )
    .addOption(
      envOption('--allow <cidr[,cidr...]>', 'only these IPv4/IPv6 networks may connect (default: all)').argParser(
        parseCidrList,
      ),
    )
    .addOption(
      envOption('--workers <n|auto>', 'event loops (processes) sharing the ports; auto: one per CPU')
        .default(1)
        .argParser(parseWorkers),
    )
    .addOption(
      envOption(
        '--metrics-port <port>',
        'serve /metrics, /healthz, /readyz and a status page (/) over HTTP on this port (default: off)',
      ).argParser(parsePort),
    )
    .addOption(envOption('--metrics-host <host>', 'address for the metrics port').default('127.0.0.1'))
    .addOption(
      envOption('--log-format <format>', 'text lines, or one JSON object per event')
        .choices(LOG_FORMATS)
        .default('text'),
    )
    .addOption(envOption('--log-level <level>', 'least severe level logged').choices(LOG_LEVEL_NAMES).default('info'))
    .addOption(
      envOption(
        '--fault <spec>',
        'misbehave on purpose, repeatable: reset=P, close=P, stall=P:SECONDS, truncate=P (a fraction P of connections), drop=P (datagrams), delay=10ms:90,500ms:10',
      )
        .argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value])
        .default([]),
    )
    .addOption(
      envOption('--fault-seed <n>', "seed for the faults' random choices: the same seed, the same faults").argParser(
        parseNonNegativeInteger,
      ),
    )
    .addOption(
      envOption(
        '--hello',
        'open every stream connection with one JSON line: instance, worker, local and client addresses, TLS details',
      ).default(false),
    )
    .addOption(envOption('--instance <name>', 'the name --hello gives this instance (default: hostname:pid)'))
    .addOption(
      envOption(
        '--admin',
        'on the metrics port: POST /admin/ready?state=false|true, GET and POST /admin/faults',
      ).default(false),
    )
    .addOption(
      envOption(
        '--admin-token <token>',
        'with --admin: the bearer token every admin request must carry, loopback included (without it, loopback only)',
      ),
    )
    .addOption(
      envOption(
        '--engine <engine>',
        'what moves plain TCP bytes: native (C, no JavaScript per message), portable (net.Socket), auto: native where built',
      )
        .choices(ENGINE_CHOICES)
        .default('auto'),
    )
    .addOption(
      envOption('-q, --quiet', 'no per-event log lines (warnings and errors still go to stderr)').default(false),
    )
    .action(async (flags: ServeFlags, command: Command) => {
      // `--unix PATH` alone serves only the socket; a port given as well adds TCP.
      const portGiven = command.getOptionValueSource('port') !== 'default';
      checkDependentFlags(
        flags,
        (name) => command.getOptionValueSource(name) !== 'default' && command.getOptionValueSource(name) !== undefined,
      );
      await serve(flags, flags.unix !== undefined && !portGiven ? [] : flags.port);
    });
}

/** A flag that only means something beside another is a usage error without it, not quietly ignored. */
function checkDependentFlags(flags: ServeFlags, given: (name: string) => boolean): void {
  const needs: Array<[string, string, boolean]> = [
    ['adminToken', '--admin-token applies with --admin', flags.admin],
    ['proxyTrust', '--proxy-trust applies with --proxy-protocol', flags.proxyProtocol],
    ['wsDeflate', '--ws-deflate applies with --ws', flags.ws],
    ['maxMessage', '--max-message applies with --ws', flags.ws],
    ['faultSeed', '--fault-seed applies with --fault', flags.fault.length > 0],
  ];
  for (const [name, message, present] of needs) if (given(name) && !present) throw new UsageError(message);
}

async function serverOptions(
  flags: ServeFlags,
  ports: number[],
  identity = sharedSelfSignedIdentity(),
): Promise<EchoServerOptions> {
  const { loadTlsOptions } = tlsWanted(flags) ? await import('../server/tls.js') : { loadTlsOptions: undefined };
  return {
    host: flags.host,
    port: ports,
    ...(flags.unix !== undefined && { unix: flags.unix }),
    udp: flags.udp,
    ...(loadTlsOptions && {
      tls: await loadTlsOptions(
        {
          certFile: flags.tlsCert,
          keyFile: flags.tlsKey,
          selfSigned: flags.tlsSelfSigned,
          caFile: flags.tlsCa,
          ...(flags.tlsAlpn !== undefined && { alpn: flags.tlsAlpn }),
          ...identity,
        },
        flags.host,
      ),
    }),
    transform: isTransformName(flags.transform) ? flags.transform : await loadTransformModule(flags.transform),
    // Over WebSocket the message is the unit: a prefix needs no lines.
    framing: flags.prefix !== undefined && !flags.ws ? 'line' : flags.framing,
    ...(flags.ws && { websocket: { maxMessage: flags.maxMessage, deflate: flags.wsDeflate } }),
    ...(flags.prefix !== undefined && { prefix: flags.prefix }),
    maxLine: flags.maxLine,
    proxyProtocol: flags.proxyProtocol,
    ...(flags.proxyTrust !== undefined && { proxyTrust: flags.proxyTrust }),
  };
}

// Workers must all present the same self-signed certificate, or a client that pins it would
// fail on every other connection: the primary makes one and hands it down in the environment.
const WORKER_CERT_VARIABLE = 'ECHOPLEX_WORKER_TLS_CERT';
const WORKER_KEY_VARIABLE = 'ECHOPLEX_WORKER_TLS_KEY';

function sharedSelfSignedIdentity(): { selfSignedIdentity?: { cert: string; key: string } } {
  return cluster.isWorker ? identityIn(process.env) : {};
}

/** The self-signed certificate the primary made, in the workers' environment. */
function identityIn(env: Record<string, string | undefined>): { selfSignedIdentity?: { cert: string; key: string } } {
  const cert = env[WORKER_CERT_VARIABLE];
  const key = env[WORKER_KEY_VARIABLE];
  return cert !== undefined && key !== undefined ? { selfSignedIdentity: { cert, key } } : {};
}

async function workerEnvironment(flags: ServeFlags): Promise<Record<string, string>> {
  if (!flags.tlsSelfSigned) return {};
  const { selfSignedCertificateFor } = await import('../server/tls.js');
  const { cert, key } = await selfSignedCertificateFor(flags.host);
  return { [WORKER_CERT_VARIABLE]: cert, [WORKER_KEY_VARIABLE]: key };
}

/** `native engine` when one engine serves every listener; else which serves what: `native engine for tcp, udp; portable for unix`. */
function describeEngines(addresses: readonly BoundAddress[]): string {
  const byEngine = new Map<string, string[]>();
  for (const { transport, engine } of addresses) {
    const transports = byEngine.get(engine) ?? [];
    if (!transports.includes(transport)) transports.push(transport);
    byEngine.set(engine, transports);
  }
  const parts = [...byEngine];
  if (parts.length <= 1) return `${parts[0]?.[0] ?? 'portable'} engine`;
  return parts
    .map(([engine, transports], i) => `${engine}${i === 0 ? ' engine' : ''} for ${transports.join(', ')}`)
    .join('; ');
}

/** Whether the TCP ports speak TLS: any TLS flag says so. */
function tlsWanted(flags: ServeFlags): boolean {
  return (
    flags.tlsCert !== undefined ||
    flags.tlsKey !== undefined ||
    flags.tlsSelfSigned ||
    flags.tlsCa !== undefined ||
    flags.tlsAlpn !== undefined
  );
}

/** What the TCP ports speak, as a URL's scheme. */
function streamTransportOf(flags: ServeFlags): string {
  if (flags.ws) return tlsWanted(flags) ? 'wss' : 'ws';
  return tlsWanted(flags) ? 'tls' : 'tcp';
}

function describeSettings(flags: ServeFlags): string {
  const framing = flags.ws
    ? ', WebSocket'
    : flags.framing === 'line' || flags.prefix !== undefined
      ? ', line mode'
      : '';
  const proxy = flags.proxyProtocol ? ', PROXY protocol' : '';
  const faults = flags.fault.length > 0 ? ', faults on purpose' : '';
  const delay = flags.delay > 0 ? `, replies after ${flags.delay} s` : '';
  return `transform: ${flags.transform}${framing}${proxy}${delay}${faults}`;
}

async function serve(flags: ServeFlags, ports: number[]): Promise<void> {
  const logger = await createLogger(flags.logFormat, flags.logLevel, cluster.worker?.id);
  if (flags.admin && flags.workers > 1) throw new UsageError('--admin controls one process: not with --workers yet');
  if (flags.admin && flags.metricsPort === undefined)
    throw new UsageError('--admin serves on the metrics port: give --metrics-port too');
  if (flags.udp && ports.length === 0)
    throw new UsageError('--udp answers on the TCP port numbers, and --unix alone serves none: give --port too');
  if (flags.workers > 1 && cluster.isPrimary) {
    const workerEnv = await workerEnvironment(flags);
    // Files are read once here before forking: a bad certificate or transform module is one
    // usage error (exit 2) from the primary, not one per worker.
    await serverOptions(flags, ports, identityIn(workerEnv));
    const { runPrimary } = await import('../ops/workers.js');
    await runPrimary({
      workers: flags.workers,
      logger,
      shutdownTimeoutSeconds: flags.shutdownTimeout,
      unixPaths: flags.unix !== undefined ? [flags.unix] : [],
      ...(flags.metricsPort !== undefined && { metrics: { host: flags.metricsHost, port: flags.metricsPort } }),
      describe: describeSettings(flags),
      workerEnv,
      tcp: { host: flags.host, ports, transport: streamTransportOf(flags) },
    });
    return;
  }
  // A worker whose primary claimed the TCP ports listens there on sockets of its own.
  const shared = cluster.isWorker ? sharedPortsIn(process.env) : undefined;
  const server = createEchoServer({
    ...(await serverOptions(flags, shared?.ports ?? ports)),
    ...(shared !== undefined && { host: shared.ip, sharedPorts: true }),
    maxBuffered: flags.maxBuffered,
    logger,
    logConnectionEvents: !flags.quiet,
    maxConnections: flags.maxConnections,
    ...(flags.maxConnectionsPerIp !== undefined && { maxConnectionsPerIp: flags.maxConnectionsPerIp }),
    ...(flags.allow !== undefined && { allow: flags.allow }),
    idleTimeoutMs: flags.idleTimeout * 1000,
    delayMs: flags.delay * 1000,
    engine: flags.engine,
    ...(flags.fault.length > 0 && { faults: flags.fault }),
    ...(flags.faultSeed !== undefined && { faultSeed: flags.faultSeed }),
    faultsLive: flags.admin,
    hello: flags.hello,
    ...(flags.instance !== undefined && { instance: flags.instance }),
  });
  if (server.faults !== undefined && flags.fault.length > 0) {
    logger.info(
      { event: 'faults', faults: formatFaults(server.faults.spec), seed: server.faults.seed },
      `faults on purpose: ${formatFaults(server.faults.spec)} (--fault-seed ${server.faults.seed})`,
    );
  }
  const notice = fallbackNotice(flags.engine);
  if (notice !== undefined) logger.warn({ event: 'engine_fallback' }, notice);
  const portableOnly = server.portableBecause;
  // `auto` where Node's OpenSSL cannot be reached from C: one line, as for a missing addon.
  const tlsFallback = portableOnly.find((reason) => reason.startsWith('TLS ('));
  if (flags.engine === 'auto' && tlsFallback !== undefined)
    logger.warn(
      { event: 'engine_fallback' },
      `echoplex: TLS on the portable engine; the native one cannot: ${tlsFallback.slice(5, -1)}`,
    );
  if (flags.engine === 'native' && portableOnly.length > 0) {
    // Asked for by name, so said: what the native engine does not do is served by the portable one.
    logger.warn(
      { event: 'engine_fallback' },
      `--engine native: ${portableOnly.join(', ')} ${portableOnly.length === 1 ? 'is' : 'are'} served by the portable engine (the native one echoes TCP, TLS, WebSocket and UDP with the built-in transforms)`,
    );
  }
  let closeMetrics: (() => Promise<void>) | undefined;
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    // A worker drains once: a SIGTERM sent to the whole group (systemd's default, `kill -- -PGID`)
    // reaches it beside the primary's own, and a second signal is the primary's to act on (SIGKILL).
    if (signalled && cluster.isWorker) return;
    if (signalled) {
      logger.warn(
        { event: 'shutdown', signal },
        `${signal} again: closing ${counted(server.connections.size, 'connection')} now`,
      );
      server.destroy();
      process.exit(1);
    }
    signalled = true;
    logger.info(
      { event: 'shutdown', signal, connections: server.connections.size },
      `${signal}: no longer accepting; draining ${counted(server.connections.size, 'connection')} (up to ${flags.shutdownTimeout}s)`,
    );
    void server.close({ timeoutMs: flags.shutdownTimeout * 1000 }).then(({ forced }) => {
      if (forced > 0) {
        logger.warn(
          { event: 'shutdown', forced },
          `shutdown timeout: closed ${counted(forced, 'connection')} that ${forced === 1 ? 'was' : 'were'} still open`,
        );
      }
      logger.info({ event: 'shutdown', forced }, 'shut down');
      void closeMetrics?.();
      process.exitCode = 0;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      // A worker's channel to the primary would keep it alive.
      if (cluster.isWorker) process.disconnect();
    });
  };
  // Handlers first: whoever reads the listening line may signal us at once.
  process.on('SIGTERM', onSignal);
  // A worker leaves Ctrl-C to the primary, which tells every worker to drain, once.
  process.on('SIGINT', cluster.isWorker ? () => {} : onSignal);
  await server.listen().catch((err: unknown) => {
    // A worker that cannot listen exits, for its primary to stop and say why: its channel to
    // the primary would otherwise keep it alive, half started. (The worker's own disconnect, not
    // process.disconnect(), which cluster takes for a lost primary and answers with exit 0.)
    cluster.worker?.disconnect();
    throw err;
  });
  const urls = server.addresses.map((address) => address.url);
  if (cluster.isWorker) {
    await serveAsWorker(server, flags.metricsPort !== undefined, urls, describeEngines(server.addresses));
    return;
  }
  if (flags.metricsPort !== undefined) {
    // Loaded only when asked for: a plain echo server carries no HTTP or metrics code.
    const { serveMetrics, serverMetricsSource } = await import('../ops/metrics.js');
    const admin = flags.admin ? { server, token: flags.adminToken, logger } : undefined;
    closeMetrics = await serveMetrics(
      serverMetricsSource(server),
      { host: flags.metricsHost, port: flags.metricsPort, ...(admin && { admin }) },
      logger,
      () => {
        server.destroy();
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      },
    );
  }
  process.stdout.write(
    `echoplex listening on ${urls.join(', ')} (${describeSettings(flags)}, ${describeEngines(server.addresses)})\n`,
  );
}

/** In a cluster worker: answer the primary's requests for counters and metrics, then say we listen. */
async function serveAsWorker(server: EchoServer, metrics: boolean, urls: string[], engines: string): Promise<void> {
  const registry = metrics ? (await import('../ops/metrics.js')).createMetricsRegistry(server) : undefined;
  process.on('message', (message: WorkerMessage) => {
    if (message.type === 'echoplex:stats-request') {
      const reply: WorkerMessage = { type: 'echoplex:stats', id: message.id, stats: server.stats() };
      process.send?.(reply);
    } else if (message.type === 'echoplex:metrics-request' && registry !== undefined) {
      void registry.getMetricsAsJSON().then((json) => {
        const reply: WorkerMessage = {
          type: 'echoplex:metrics',
          id: message.id,
          metrics: json as unknown as MetricsJson,
        };
        process.send?.(reply);
      });
    }
  });
  const listening: WorkerMessage = { type: 'echoplex:listening', urls, engines };
  process.send?.(listening);
}
