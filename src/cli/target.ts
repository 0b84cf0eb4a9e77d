// Flags that say how to reach a server, shared by `echoplex client`, `bench` and `ping`.

import { readFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import type { CustomExpectation } from '../protocol/transforms.js';
import type { BenchTarget } from '../protocol/transports.js';
import { UsageError } from '../core/errors.js';
import { isTransformName, loadTransformModule, TRANSFORM_NAMES, type TransformName } from '../protocol/transforms.js';
import { parsePort, parsePortList, parseTransform } from './parsers.js';

export interface TargetFlags {
  host: string;
  /** Several for the bench (`--port 1234,1235`): connections spread over them. */
  port: number | number[];
  unix?: string;
  udp: boolean;
  tls: boolean;
  tlsInsecure: boolean;
  tlsCa?: string;
  /** A client certificate and its key (PEM files), for servers that require one (mTLS). */
  tlsCert?: string;
  tlsKey?: string;
  /** Set by a ws:// or wss:// URL: the request path. */
  websocketPath?: string;
  /** Over WebSocket: send text messages rather than binary (`--ws-text`, bench and ping). */
  wsText?: boolean;
}

/** `--host`, `--port`, `--unix`, `--udp` (described by `udpHelp`), `--tls`, `--tls-insecure`, `--tls-ca`. */
export function targetOptions(udpHelp: string, portList = false): Option[] {
  return [
    new Option('--host <host>', 'server address').default('127.0.0.1'),
    portList
      ? new Option('--port <port[,port...]>', 'server port, or several to spread connections over')
          .default(1234)
          .argParser(parsePortList)
      : new Option('--port <port>', 'server port').default(1234).argParser(parsePort),
    new Option('--unix <path>', 'connect to this Unix socket instead'),
    new Option('--udp', udpHelp).default(false),
    new Option('--tls', 'speak TLS, verifying the server certificate').default(false),
    new Option('--tls-insecure', 'speak TLS and accept any certificate (self-signed servers)').default(false),
    new Option('--tls-ca <file>', 'speak TLS and also trust this PEM CA'),
    new Option(
      '--tls-cert <file>',
      'speak TLS presenting this PEM client certificate, for servers that require one (mTLS); with --tls-key',
    ),
    new Option('--tls-key <file>', 'the PEM private key of --tls-cert'),
  ];
}

/** `--ws-text`, for the bench and ping (whose messages are binary by default). */
export function wsTextOption(): Option {
  return new Option('--ws-text', 'to a ws:// or wss:// URL: send text messages (default: binary)').default(false);
}

/** Whether any TLS flag was given: each of them implies TLS. */
export function wantsTls(flags: TargetFlags): boolean {
  return (
    flags.tls ||
    flags.tlsInsecure ||
    flags.tlsCa !== undefined ||
    flags.tlsCert !== undefined ||
    flags.tlsKey !== undefined
  );
}

/** Flags that name two kinds of target at once are a usage error, not one of them quietly dropped. */
export function checkTransportFlags(flags: TargetFlags): void {
  if ((flags.tlsCert === undefined) !== (flags.tlsKey === undefined))
    throw new UsageError('--tls-cert and --tls-key go together: a client certificate and its private key');
  if (!flags.udp) return;
  if (wantsTls(flags))
    throw new UsageError('--udp sends datagrams in clear: not with --tls, --tls-insecure, --tls-ca or --tls-cert');
  if (flags.unix !== undefined)
    throw new UsageError('--udp and --unix name two targets (the Unix socket is a stream): give one');
}

/** The PEM CA file given to `--tls-ca`, read; a file that cannot be read is a usage error. */
export function readCaFile(path: string): Promise<Buffer> {
  return readFlagFile('--tls-ca', path);
}

/** A file a flag names, read; one that cannot be read is a usage error naming the flag. */
async function readFlagFile(flag: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new UsageError(`${flag}: cannot read ${path}: ${(err as Error).message}`);
  }
}

/** `--tls-cert` and `--tls-key`, read (none when not given). */
export async function readClientIdentity(flags: TargetFlags): Promise<{ tlsCert?: Buffer; tlsKey?: Buffer }> {
  if (flags.tlsCert === undefined || flags.tlsKey === undefined) return {};
  return {
    tlsCert: await readFlagFile('--tls-cert', flags.tlsCert),
    tlsKey: await readFlagFile('--tls-key', flags.tlsKey),
  };
}

/** The target the flags name, for the bench and ping (the CA file read). */
export async function targetFromFlags(flags: TargetFlags): Promise<Partial<BenchTarget>> {
  if (flags.wsText && flags.websocketPath === undefined)
    throw new UsageError('--ws-text applies to a ws:// or wss:// target URL');
  checkTransportFlags(flags);
  const ports = Array.isArray(flags.port) ? flags.port : [flags.port];
  return {
    host: flags.host,
    port: ports[0]!,
    ...(ports.length > 1 && { ports }),
    ...(flags.unix !== undefined && { unix: flags.unix }),
    udp: flags.udp,
    tls: wantsTls(flags),
    tlsInsecure: flags.tlsInsecure,
    ...(flags.tlsCa !== undefined && { tlsCa: await readCaFile(flags.tlsCa) }),
    ...(await readClientIdentity(flags)),
    ...(flags.websocketPath !== undefined && { websocket: { path: flags.websocketPath, text: flags.wsText ?? false } }),
  };
}

/** `--expect`: a built-in transform's name, or a module loaded as `serve --transform` loads it. */
export async function expectationFromFlag(value: string): Promise<TransformName | CustomExpectation> {
  return isTransformName(value) ? value : { label: value, transform: await loadTransformModule(value, '--expect') };
}

/** `--expect` and `--expect-prefix`: what the bench and ping check each reply against. */
export function expectationOptions(): Option[] {
  return [
    new Option(
      '--expect <name|module>',
      `what the server sends back: ${TRANSFORM_NAMES.join(', ')}, or the module given to echoplex serve --transform, applied to each message`,
    )
      .default('echo')
      .argParser(parseTransform),
    new Option(
      '--expect-prefix <text>',
      "the server puts TEXT before each reply (echoplex serve --prefix, Istio's tcp-echo-server)",
    ),
  ];
}

/** The positional target the client, ping and bench take, as the listening line prints it. */
export const TARGET_ARGUMENT = [
  '[url]',
  'the server as a URL: tcp://HOST:PORT, tls://HOST:PORT, udp://HOST:PORT, ws://HOST[:PORT]/PATH, wss://HOST[:PORT]/PATH or unix:///PATH (instead of --host, --port, --udp, --tls, --unix)',
] as const;

const URL_KINDS =
  'tcp://HOST:PORT, tls://HOST:PORT, udp://HOST:PORT, ws://HOST[:PORT]/PATH, wss://HOST[:PORT]/PATH or unix:///PATH';

const TARGET_FLAGS = ['host', 'port', 'unix', 'udp', 'tls'] as const;

/**
 * `flags` with the target a URL names (`tcp://127.0.0.1:1234`, `tls://[::1]:443`,
 * `udp://host:7`, `ws://host:8080/echo`, `wss://host/`, `unix:///run/echo.sock`); unchanged without one. A URL and target flags
 * together, or a URL of another kind, is a usage error.
 */
export function withTargetUrl<T extends TargetFlags>(flags: T, url: string | undefined, command: Command): T {
  if (url === undefined) return flags;
  const given = TARGET_FLAGS.filter((name) => command.getOptionValueSource(name) === 'cli');
  if (given.length > 0) throw new UsageError(`give the target as a URL or with --${given[0]}, not both`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`"${url}" is not a target URL: ${URL_KINDS}`);
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  switch (parsed.protocol) {
    case 'tcp:':
    case 'tls:':
    case 'udp:': {
      if (parsed.port === '')
        throw new UsageError(`${url}: the URL needs a port (${parsed.protocol}//${parsed.hostname || 'HOST'}:PORT)`);
      return {
        ...flags,
        host,
        port: Number(parsed.port),
        unix: undefined,
        udp: parsed.protocol === 'udp:',
        tls: parsed.protocol === 'tls:',
      };
    }
    case 'ws:':
    case 'wss:': {
      // WHATWG URLs leave out a scheme's default port (80 for ws, 443 for wss).
      const secure = parsed.protocol === 'wss:';
      // The TLS flags would make ws:// quietly encrypted: the URL says which, and says it plainly.
      if (!secure && (flags.tlsInsecure || flags.tlsCa !== undefined || flags.tlsCert !== undefined)) {
        throw new UsageError(`${url}: --tls-insecure, --tls-ca and --tls-cert are for wss:// URLs`);
      }
      const port = parsed.port === '' ? (secure ? 443 : 80) : Number(parsed.port);
      return {
        ...flags,
        host,
        port,
        unix: undefined,
        udp: false,
        tls: secure,
        websocketPath: `${parsed.pathname}${parsed.search}`,
      };
    }
    case 'unix:': {
      const path = decodeURIComponent(parsed.pathname);
      if (path === '' || path === '/')
        throw new UsageError(`${url}: the URL needs a socket path (unix:///run/echo.sock)`);
      return { ...flags, unix: path, udp: false, tls: false };
    }
    default:
      throw new UsageError(
        `${url}: unknown kind of target "${parsed.protocol}"; tcp://, tls://, udp://, ws://, wss:// or unix://`,
      );
  }
}
