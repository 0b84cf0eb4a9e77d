// `npm run bench:peers`: echoplex beside other echo servers, same load, pinned cores, ratios.
//
// Each server runs pinned to core 0 and the load to core 1 (taskset). For every scenario and
// round the peers run one after another (rounds interleave, so drift hits all alike); the
// table holds medians. Server CPU time comes from /proc/PID/stat (user+sys) over the load run,
// divided by every reply the load generator verified in that run.

import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { namesFrom, oneOf, positiveNumber, scriptOptions } from './script-args.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PEERS_DIR = `${ROOT}bench/peers/`;
const BIN_DIR = `${PEERS_DIR}bin/`;
const SEED_DIR = `${ROOT}../shared/seed/`;
const CLI = `${ROOT}dist/cli/main.js`;
const TSX = ['--import', 'tsx'];
/** One certificate for every TLS peer (made by buildCPeers), so that they do the same cryptography. */
export const CERT_FILES = [`${BIN_DIR}cert.pem`, `${BIN_DIR}key.pem`];
const TLS_FLAGS = ['--tls-cert', CERT_FILES[0]!, '--tls-key', CERT_FILES[1]!];
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

export interface Scenario {
  name: string;
  connections: number;
  size: number;
  pipeline: number;
  /** Datagrams (`connections` UDP sockets): only peers that speak UDP run it. */
  udp?: boolean;
  /** WebSocket messages: only peers that speak WebSocket run it, always under echoplex bench's load. */
  ws?: boolean;
  /** Over TLS (with `ws`: wss): only peers that speak TLS run it, under echoplex bench's load. */
  tls?: boolean;
}

export const SCENARIOS: Scenario[] = [
  { name: '64B-p1', connections: 50, size: 64, pipeline: 1 },
  { name: '64B-p16', connections: 100, size: 64, pipeline: 16 },
  { name: '64KiB', connections: 50, size: 65536, pipeline: 1 },
  { name: 'latency', connections: 1, size: 64, pipeline: 1 },
  { name: 'udp-64B', connections: 50, size: 64, pipeline: 1, udp: true },
  { name: 'ws-64B', connections: 50, size: 64, pipeline: 1, ws: true },
  { name: 'tls-64B', connections: 50, size: 64, pipeline: 1, tls: true },
  { name: 'wss-64B', connections: 50, size: 64, pipeline: 1, ws: true, tls: true },
];

export interface Peer {
  name: string;
  transform: 'echo' | 'upper';
  command(port: number): string[];
  /** Answers UDP datagrams: runs the UDP scenarios, and only those. */
  datagrams?: boolean;
  /** Speaks WebSocket: runs the WebSocket scenarios, and only those. */
  websocket?: boolean;
  /** Speaks TLS (with the certificate in bench/peers/bin): runs the TLS scenarios, and only those. */
  tls?: boolean;
  /** The peer its ratios are taken against (default c-epoll): the ported programs face their seed originals. */
  comparedWith?: string;
  /** Why this peer cannot run here, or undefined. */
  unavailable(): string | undefined;
}

function python(): string {
  return 'python3';
}

/** Debian's python3-uvloop installs for /usr/bin/python3, which may not be the python3 on PATH. */
function pythonWithUvloop(): string | undefined {
  for (const candidate of ['python3', '/usr/bin/python3']) {
    if (spawnSync(candidate, ['-c', 'import uvloop']).status === 0) return candidate;
  }
  return undefined;
}

const hasPython = () => (spawnSync(python(), ['--version']).status === 0 ? undefined : 'python3 not found');
const hasSeed = () =>
  hasPython() ?? (existsSync(`${SEED_DIR}select_server.py`) ? undefined : `seed not found at ${SEED_DIR}`);

export const PEERS: Peer[] = [
  {
    name: 'c-epoll',
    transform: 'echo',
    command: (p) => [`${BIN_DIR}epoll_echo`, String(p)],
    unavailable: () => (existsSync(`${BIN_DIR}epoll_echo`) ? undefined : 'cc not available'),
  },
  {
    name: 'echoplex',
    transform: 'echo',
    command: (p) => [process.execPath, CLI, 'serve', '--quiet', '--port', String(p)],
    unavailable: () => undefined,
  },
  {
    name: 'echoplex-upper',
    transform: 'upper',
    command: (p) => [process.execPath, CLI, 'serve', '--quiet', '--transform', 'upper', '--port', String(p)],
    unavailable: () => undefined,
  },
  {
    // The portable engine: what echoplex runs where the native engine was not built.
    name: 'echoplex-portable',
    transform: 'echo',
    command: (p) => [process.execPath, CLI, 'serve', '--quiet', '--engine', 'portable', '--port', String(p)],
    unavailable: () => undefined,
  },
  {
    // `npm start` as it is: open and close logged for every connection.
    name: 'echoplex-logged',
    transform: 'echo',
    command: (p) => [process.execPath, CLI, 'serve', '--port', String(p)],
    unavailable: () => undefined,
  },
  {
    // Another build of echoplex (say, main before a change): ECHOPLEX_BASELINE=/path/to/dist/cli/main.js.
    name: 'echoplex-baseline',
    transform: 'echo',
    command: (p) => [process.execPath, process.env['ECHOPLEX_BASELINE'] ?? '', 'serve', '--quiet', '--port', String(p)],
    unavailable: () =>
      process.env['ECHOPLEX_BASELINE'] ? undefined : "set ECHOPLEX_BASELINE to another build's dist/cli/main.js",
  },
  {
    name: 'echoplex-udp-baseline',
    transform: 'echo',
    datagrams: true,
    comparedWith: 'c-udp',
    command: (p) => [
      process.execPath,
      process.env['ECHOPLEX_BASELINE'] ?? '',
      'serve',
      '--quiet',
      '--udp',
      '--port',
      String(p),
    ],
    unavailable: () =>
      process.env['ECHOPLEX_BASELINE'] ? undefined : "set ECHOPLEX_BASELINE to another build's dist/cli/main.js",
  },
  {
    name: 'node-raw',
    transform: 'echo',
    command: (p) => [process.execPath, `${PEERS_DIR}node-raw-echo.mjs`, String(p)],
    unavailable: () => undefined,
  },
  // UDP: the plainest C loop, and echoplex's UDP on each engine.
  {
    name: 'c-udp',
    transform: 'echo',
    datagrams: true,
    command: (p) => [`${BIN_DIR}udp_echo`, String(p)],
    unavailable: () => (existsSync(`${BIN_DIR}udp_echo`) ? undefined : 'cc not available'),
  },
  // What batching system calls can save a C loop at best: the ceiling for the UDP engine's recvmmsg/sendmmsg.
  {
    name: 'c-udp-mmsg',
    transform: 'echo',
    datagrams: true,
    comparedWith: 'c-udp',
    command: (p) => [`${BIN_DIR}udp_echo`, String(p), 'mmsg'],
    unavailable: () => (existsSync(`${BIN_DIR}udp_echo`) ? undefined : 'cc not available'),
  },
  // What io_uring would save the UDP engine: the same echo without per-datagram system calls or headers.
  {
    name: 'c-udp-uring',
    transform: 'echo',
    datagrams: true,
    comparedWith: 'c-udp',
    command: (p) => [`${BIN_DIR}uring_echo`, String(p)],
    unavailable: () =>
      !existsSync(`${BIN_DIR}uring_echo`)
        ? 'not built (needs Linux headers with io_uring)'
        : spawnSync(`${BIN_DIR}uring_echo`, ['--check']).status !== 0
          ? 'io_uring refused here (Linux 6.1 or later, not blocked by seccomp)'
          : undefined,
  },
  {
    name: 'echoplex-udp',
    transform: 'echo',
    datagrams: true,
    comparedWith: 'c-udp',
    command: (p) => [process.execPath, CLI, 'serve', '--quiet', '--udp', '--port', String(p)],
    unavailable: () => undefined,
  },
  {
    name: 'echoplex-udp-portable',
    transform: 'echo',
    datagrams: true,
    comparedWith: 'c-udp',
    command: (p) => [process.execPath, CLI, 'serve', '--quiet', '--udp', '--engine', 'portable', '--port', String(p)],
    unavailable: () => undefined,
  },
  // WebSocket: ten lines of the ws library, and echoplex's --ws around the same library.
  {
    name: 'ws-bare',
    transform: 'echo',
    websocket: true,
    command: (p) => [process.execPath, `${PEERS_DIR}ws-echo.mjs`, String(p)],
    unavailable: () => undefined,
  },
  {
    name: 'echoplex-ws',
    transform: 'echo',
    websocket: true,
    comparedWith: 'ws-bare',
    command: (p) => [process.execPath, CLI, 'serve', '--quiet', '--ws', '--port', String(p)],
    unavailable: () => undefined,
  },
  // TLS and WebSocket: the C references on OpenSSL 3 (same certificate, TLS 1.3), and echoplex on each engine.
  {
    name: 'c-ws',
    transform: 'echo',
    websocket: true,
    command: (p) => [`${BIN_DIR}tls_ws_echo`, String(p), 'ws'],
    unavailable: () => (existsSync(`${BIN_DIR}tls_ws_echo`) ? undefined : 'not built (needs cc and libssl-dev)'),
  },
  {
    name: 'echoplex-ws-portable',
    transform: 'echo',
    websocket: true,
    comparedWith: 'c-ws',
    command: (p) => [process.execPath, CLI, 'serve', '--quiet', '--ws', '--engine', 'portable', '--port', String(p)],
    unavailable: () => undefined,
  },
  {
    name: 'c-tls',
    transform: 'echo',
    tls: true,
    command: (p) => [`${BIN_DIR}tls_ws_echo`, String(p), 'tls', ...CERT_FILES],
    unavailable: () => (existsSync(`${BIN_DIR}tls_ws_echo`) ? undefined : 'not built (needs cc and libssl-dev)'),
  },
  {
    name: 'echoplex-tls',
    transform: 'echo',
    tls: true,
    comparedWith: 'c-tls',
    command: (p) => [process.execPath, CLI, 'serve', '--quiet', ...TLS_FLAGS, '--port', String(p)],
    unavailable: () => undefined,
  },
  {
    name: 'echoplex-tls-portable',
    transform: 'echo',
    tls: true,
    comparedWith: 'c-tls',
    command: (p) => [
      process.execPath,
      CLI,
      'serve',
      '--quiet',
      ...TLS_FLAGS,
      '--engine',
      'portable',
      '--port',
      String(p),
    ],
    unavailable: () => undefined,
  },
  {
    name: 'c-wss',
    transform: 'echo',
    tls: true,
    websocket: true,
    command: (p) => [`${BIN_DIR}tls_ws_echo`, String(p), 'wss', ...CERT_FILES],
    unavailable: () => (existsSync(`${BIN_DIR}tls_ws_echo`) ? undefined : 'not built (needs cc and libssl-dev)'),
  },
  {
    name: 'echoplex-wss',
    transform: 'echo',
    tls: true,
    websocket: true,
    comparedWith: 'c-wss',
    command: (p) => [process.execPath, CLI, 'serve', '--quiet', '--ws', ...TLS_FLAGS, '--port', String(p)],
    unavailable: () => undefined,
  },
  {
    name: 'echoplex-wss-portable',
    transform: 'echo',
    tls: true,
    websocket: true,
    comparedWith: 'c-wss',
    command: (p) => [
      process.execPath,
      CLI,
      'serve',
      '--quiet',
      '--ws',
      ...TLS_FLAGS,
      '--engine',
      'portable',
      '--port',
      String(p),
    ],
    unavailable: () => undefined,
  },
  {
    name: 'node-pipe',
    transform: 'echo',
    command: (p) => [process.execPath, `${PEERS_DIR}node-pipe-echo.mjs`, String(p)],
    unavailable: () => undefined,
  },
  {
    name: 'seed-select',
    transform: 'upper',
    command: (p) => [python(), `${SEED_DIR}select_server.py`, String(p)],
    unavailable: hasSeed,
  },
  {
    name: 'port-select',
    transform: 'upper',
    comparedWith: 'seed-select',
    command: (p) => [process.execPath, ...TSX, `${ROOT}examples/select-server.ts`, String(p)],
    unavailable: () => undefined,
  },
  {
    name: 'seed-selectors',
    transform: 'echo',
    command: (p) => [python(), `${SEED_DIR}selectors_server.py`, String(p)],
    unavailable: hasSeed,
  },
  {
    name: 'port-selectors',
    transform: 'echo',
    comparedWith: 'seed-selectors',
    command: (p) => [process.execPath, ...TSX, `${ROOT}examples/selectors-server.ts`, String(p)],
    unavailable: () => undefined,
  },
  {
    name: 'asyncio',
    transform: 'echo',
    command: (p) => [python(), `${PEERS_DIR}asyncio_echo.py`, String(p)],
    unavailable: hasPython,
  },
  {
    name: 'uvloop',
    transform: 'echo',
    command: (p) => [pythonWithUvloop() ?? python(), `${PEERS_DIR}asyncio_echo.py`, String(p), '--uvloop'],
    unavailable: () => (pythonWithUvloop() ? undefined : "uvloop not importable (Debian's python3-uvloop)"),
  },
];

export interface Measurement {
  peer: string;
  scenario: string;
  messagesPerSecond: number;
  bytesPerSecond: number;
  p50Us: number;
  p99Us: number;
  cpuUsPerMessage: number;
  /** The load generator's own CPU per reply over the measured window, where it reports it (not the C one). */
  loadCpuUsPerMessage: number | undefined;
  errors: number;
}

export function buildCPeers(): void {
  if (spawnSync('cc', ['--version']).status !== 0) return;
  mkdirSync(BIN_DIR, { recursive: true });
  for (const name of ['epoll_echo', 'loadgen', 'udp_echo']) {
    execFileSync('cc', ['-O2', '-o', `${BIN_DIR}${name}`, `${PEERS_DIR}${name}.c`]);
  }
  // Optional: older kernel headers lack what it uses, and then the peer is reported unavailable.
  spawnSync('cc', ['-O2', '-o', `${BIN_DIR}uring_echo`, `${PEERS_DIR}uring_echo.c`], { stdio: 'ignore' });
  // Optional too: the TLS and WebSocket references need OpenSSL's headers (Debian's libssl-dev).
  spawnSync('cc', ['-O2', '-o', `${BIN_DIR}tls_ws_echo`, `${PEERS_DIR}tls_ws_echo.c`, '-lssl', '-lcrypto'], {
    stdio: 'ignore',
  });
  if (!existsSync(CERT_FILES[0]!)) {
    // P-256, as --tls-self-signed makes: what a mesh's certificates mostly are.
    spawnSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '365'].concat([
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=IP:127.0.0.1,DNS:localhost',
        '-keyout',
        CERT_FILES[1]!,
        '-out',
        CERT_FILES[0]!,
      ]),
      { stdio: 'ignore' },
    );
  }
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Polls until something accepts on `port`; fails early if `child` exits. */
export async function waitForPort(port: number, child: ChildProcess, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ port, host: '127.0.0.1' }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`server did not listen on ${port} within ${ms} ms`);
}

export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

export interface RunningPeer {
  child: ChildProcess;
  port: number;
  /** What the peer wrote to stderr so far. */
  stderr(): string;
  stop(): Promise<void>;
}

/**
 * The environment peers run in: ours, less what would change how a peer normally runs. Python
 * with PYTHONUNBUFFERED set (as some sandboxes and CI images do) makes a write system call per
 * print(), which slowed the seed servers by 15-25% and flattered every port-vs-seed ratio.
 */
function peerEnvironment(): NodeJS.ProcessEnv {
  const { PYTHONUNBUFFERED: _unbuffered, ...rest } = process.env;
  return rest;
}

export async function startPeer(peer: Peer, core = 0, extraEnv: NodeJS.ProcessEnv = {}): Promise<RunningPeer> {
  const port = await freePort();
  const [command, ...args] = peer.command(port);
  const child = spawn('taskset', ['-c', String(core), command!, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    cwd: ROOT,
    env: { ...peerEnvironment(), ...extraEnv },
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  try {
    await waitForPort(port, child);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${peer.name}: ${(err as Error).message}\n${stderr}`);
  }
  return {
    child,
    port,
    stderr: () => stderr,
    stop: async () => {
      child.kill('SIGKILL');
      if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

interface LoadResult {
  messagesPerSecond: number;
  messagesTotal: number;
  bytesPerSecond: number;
  p50Us: number;
  p99Us: number;
  errors: number;
  loadCpuUsPerMessage?: number;
}

function runLoad(
  kind: 'echoplex' | 'c' | 'ws-loop',
  port: number,
  scenario: Scenario,
  transform: string,
  duration: number,
  warmup: number,
  benchEngine?: 'native' | 'portable',
): LoadResult {
  if (kind === 'ws-loop') {
    const out = spawnSync(
      'taskset',
      [
        '-c',
        '1',
        process.execPath,
        `${PEERS_DIR}ws-load.mjs`,
        `ws://127.0.0.1:${port}/`,
        String(scenario.connections),
        String(scenario.size),
        String(duration),
        String(warmup),
      ],
      {
        timeout: (duration + warmup + 30) * 1000,
      },
    );
    const json = JSON.parse(out.stdout.toString()) as Omit<LoadResult, 'bytesPerSecond'>;
    return { ...json, bytesPerSecond: json.messagesPerSecond * scenario.size };
  }
  // The C load generator speaks TCP and UDP: WebSocket messages always come from echoplex bench.
  if (kind === 'c' && !scenario.ws) {
    const args = [
      String(port),
      String(scenario.connections),
      String(scenario.size),
      String(scenario.pipeline),
      String(duration),
      String(warmup),
      transform,
      ...(scenario.udp ? ['udp'] : []),
    ];
    const out = spawnSync('taskset', ['-c', '1', `${BIN_DIR}loadgen`, ...args], {
      timeout: (duration + warmup + 30) * 1000,
    });
    const json = JSON.parse(out.stdout.toString()) as {
      messagesPerSecond: number;
      messagesTotal: number;
      p50Us: number;
      p99Us: number;
      errors: number;
    };
    return { ...json, bytesPerSecond: json.messagesPerSecond * scenario.size };
  }
  const out = spawnSync(
    'taskset',
    [
      '-c',
      '1',
      process.execPath,
      CLI,
      'bench',
      '--json',
      ...(scenario.ws
        ? [`${scenario.tls ? 'wss' : 'ws'}://127.0.0.1:${port}/`]
        : [...(scenario.tls ? ['--tls'] : []), '--port', String(port)]),
      ...(scenario.tls ? ['--tls-ca', CERT_FILES[0]!] : []),
      '-c',
      String(scenario.connections),
      '-s',
      String(scenario.size),
      '-p',
      String(scenario.pipeline),
      '-d',
      String(duration),
      '--warmup',
      String(warmup),
      '--expect',
      transform,
      ...(scenario.udp ? ['--udp'] : []),
      ...(benchEngine !== undefined ? ['--engine', benchEngine] : []),
    ],
    { timeout: (duration + warmup + 30) * 1000 },
  );
  const json = JSON.parse(out.stdout.toString()) as {
    messagesPerSecond: number;
    messagesTotal: number;
    bytesPerSecond: number;
    latencyUs: { p50: number; p99: number };
    errors: number;
    mismatchedBytes: number;
    loadCpuPercent: number;
  };
  return {
    messagesPerSecond: json.messagesPerSecond,
    messagesTotal: json.messagesTotal,
    bytesPerSecond: json.bytesPerSecond,
    p50Us: json.latencyUs.p50,
    p99Us: json.latencyUs.p99,
    errors: json.errors + json.mismatchedBytes,
    // The bench's CPU over the measured window, per reply in it.
    loadCpuUsPerMessage:
      json.messagesPerSecond > 0 ? ((json.loadCpuPercent / 100) * 1e6) / json.messagesPerSecond : undefined,
  };
}

/** One run of `scenario` against `peer`; `benchEngine` picks echoplex bench's own engine (default: its choice). */
export async function measure(
  peer: Peer,
  scenario: Scenario,
  load: 'echoplex' | 'c' | 'ws-loop',
  duration: number,
  warmup: number,
  benchEngine?: 'native' | 'portable',
): Promise<Measurement> {
  const running = await startPeer(peer);
  try {
    const pid = running.child.pid!;
    // taskset execs the server, so the pid is the server's own.
    const before = cpuSeconds(pid);
    const result = runLoad(load, running.port, scenario, peer.transform, duration, warmup, benchEngine);
    const after = cpuSeconds(pid);
    return {
      peer: peer.name,
      scenario: scenario.name,
      messagesPerSecond: result.messagesPerSecond,
      bytesPerSecond: result.bytesPerSecond,
      p50Us: result.p50Us,
      p99Us: result.p99Us,
      cpuUsPerMessage: ((after - before) * 1e6) / Math.max(1, result.messagesTotal),
      loadCpuUsPerMessage: result.loadCpuUsPerMessage,
      errors: result.errors,
    };
  } finally {
    await running.stop();
  }
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function machineLine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.cpus().length} x ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${os.release()}, Node ${process.version}`;
}

function formatRate(value: number): string {
  return value >= 1e9
    ? `${(value / 1e9).toFixed(2)} G`
    : value >= 1e6
      ? `${(value / 1e6).toFixed(2)} M`
      : value >= 1e3
        ? `${(value / 1e3).toFixed(1)} k`
        : value.toFixed(0);
}

/**
 * Ratios are paired by round (each peer's round i against its reference's round i, run minutes
 * apart), so drift between rounds cancels; the table gives their median and range, which shows
 * how reliably a target holds, not only whether the medians meet it.
 */
export function table(
  scenario: Scenario,
  rows: Measurement[][],
  comparedWith: (peer: string) => string = () => 'c-epoll',
): string {
  const byPeer = new Map(rows.map((runs) => [runs[0]!.peer, runs]));
  const lines = [
    '| server | msgs/s | bytes/s | p50 us | p99 us | server CPU us/msg | load CPU us/msg | compared with | CPU ratio | msgs/s ratio | errors |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const runs of rows) {
    const peer = runs[0]!.peer;
    const referenceName = comparedWith(peer);
    const reference = referenceName === peer ? undefined : byPeer.get(referenceName);
    const ratio = (value: (m: Measurement) => number) => (reference ? pairedRatio(runs, reference, value) : '-');
    const cells = [
      peer,
      formatRate(median(runs.map((r) => r.messagesPerSecond))),
      `${formatRate(median(runs.map((r) => r.bytesPerSecond)))}B`,
      Math.round(median(runs.map((r) => r.p50Us))),
      Math.round(median(runs.map((r) => r.p99Us))),
      median(runs.map((r) => r.cpuUsPerMessage)).toFixed(2),
      runs.every((r) => r.loadCpuUsPerMessage !== undefined)
        ? median(runs.map((r) => r.loadCpuUsPerMessage!)).toFixed(2)
        : '-',
      reference ? referenceName : '-',
      ratio((m) => m.cpuUsPerMessage),
      ratio((m) => m.messagesPerSecond),
      runs.reduce((sum, r) => sum + r.errors, 0),
    ];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return `${scenario.name}: ${scenario.connections} connections, ${scenario.size}-byte messages, pipeline ${scenario.pipeline}\n\n${lines.join('\n')}\n`;
}

/** Each round's ratio of `value` to the reference's same round. */
export function roundRatios(
  runs: readonly Measurement[],
  reference: readonly Measurement[],
  value: (m: Measurement) => number,
): number[] {
  return runs.flatMap((run, round) => {
    const base = reference[round];
    return base && value(base) > 0 ? [value(run) / value(base)] : [];
  });
}

/** `median (min-max)` of some ratios. */
function describeRatios(ratios: number[]): string {
  const text = median(ratios).toFixed(2);
  return ratios.length === 1 ? text : `${text} (${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})`;
}

/** Median of the per-round ratios, then their range: `1.18 (1.10-1.32)`. */
export function pairedRatio(runs: Measurement[], reference: Measurement[], value: (m: Measurement) => number): string {
  const ratios = roundRatios(runs, reference, value);
  return ratios.length === 0 ? '-' : describeRatios(ratios);
}

/** A bar from the issues, checked on every run so that a regression shows in the output. */
export interface Target {
  issue: number;
  scenario: string;
  peer: string;
  against: string;
  metric: 'cpuUsPerMessage' | 'messagesPerSecond' | 'bytesPerSecond' | 'p50Us';
  /** `max`: the ratio must be at most `bar`; `min`: at least. */
  bound: 'max' | 'min';
  bar: number;
  /** Not a bar for our code: the C reference held to the same bar, to show what it asks of any server here. */
  forScale?: true;
}

/**
 * The C server driven by `echoplex bench` instead of the C load generator (64B-p1 with `--load c`
 * only): its msgs/s against the C load generator's, in the same round, is issue 4's efficiency.
 */
export const BENCH_LOAD_PEER = 'c-epoll, echoplex bench load';

/** The bare ws server driven by a bare ws client loop (ws-64B): the reference for the bench's WebSocket load. */
export const WS_LOOP_LOAD_PEER = 'ws-bare, ws client loop load';

export const TARGETS: Target[] = [
  // Issue 24 (one engine seam): the native engine at the C server's cost, npm start's default
  // (open and close logged) close to it.
  {
    issue: 24,
    scenario: '64B-p1',
    peer: 'echoplex',
    against: 'c-epoll',
    metric: 'cpuUsPerMessage',
    bound: 'max',
    bar: 1.1,
  },
  {
    issue: 24,
    scenario: '64B-p1',
    peer: 'echoplex-upper',
    against: 'c-epoll',
    metric: 'cpuUsPerMessage',
    bound: 'max',
    bar: 1.1,
  },
  {
    issue: 24,
    scenario: '64B-p16',
    peer: 'echoplex',
    against: 'c-epoll',
    metric: 'cpuUsPerMessage',
    bound: 'max',
    bar: 1.1,
  },
  {
    issue: 24,
    scenario: '64B-p16',
    peer: 'echoplex-upper',
    against: 'c-epoll',
    metric: 'cpuUsPerMessage',
    bound: 'max',
    bar: 1.1,
  },
  {
    issue: 24,
    scenario: '64KiB',
    peer: 'echoplex',
    against: 'c-epoll',
    metric: 'bytesPerSecond',
    bound: 'min',
    bar: 1.0,
  },
  {
    issue: 24,
    scenario: '64B-p1',
    peer: 'echoplex-logged',
    against: 'c-epoll',
    metric: 'cpuUsPerMessage',
    bound: 'max',
    bar: 1.3,
  },
  // Issue 20: UDP in C, batched, at most what a plain C recvfrom/sendto loop costs per datagram.
  {
    issue: 20,
    scenario: 'udp-64B',
    peer: 'echoplex-udp',
    against: 'c-udp',
    metric: 'cpuUsPerMessage',
    bound: 'max',
    bar: 1.0,
  },
  // Issue 21: --ws costs about what the library alone does, and the bench's WebSocket load keeps up with a bare client loop.
  {
    issue: 21,
    scenario: 'ws-64B',
    peer: 'echoplex-ws',
    against: 'ws-bare',
    metric: 'cpuUsPerMessage',
    bound: 'max',
    bar: 1.1,
  },
  {
    issue: 21,
    scenario: 'ws-64B',
    peer: 'ws-bare',
    against: WS_LOOP_LOAD_PEER,
    metric: 'messagesPerSecond',
    bound: 'min',
    bar: 0.8,
  },
  // Issue 32: TLS and WebSocket in C cost about what a C server on OpenSSL costs.
  ...(['tls', 'ws', 'wss'] as const).map((kind) => ({
    issue: 32,
    scenario: `${kind}-64B`,
    peer: `echoplex-${kind}`,
    against: `c-${kind}`,
    metric: 'cpuUsPerMessage' as const,
    bound: 'max' as const,
    bar: 1.15,
  })),
  { issue: 5, scenario: 'latency', peer: 'echoplex', against: 'c-epoll', metric: 'p50Us', bound: 'max', bar: 1.3 },
  {
    issue: 3,
    scenario: '64B-p1',
    peer: 'port-select',
    against: 'seed-select',
    metric: 'messagesPerSecond',
    bound: 'min',
    bar: 2,
  },
  {
    issue: 3,
    scenario: '64B-p1',
    peer: 'port-selectors',
    against: 'seed-selectors',
    metric: 'messagesPerSecond',
    bound: 'min',
    bar: 2,
  },
  // The seeds are slow mostly in the kernel's share, which every server pays: 2x a seed can be
  // more than the C server reaches under the same load, and these rows show whether it is.
  {
    issue: 3,
    scenario: '64B-p1',
    peer: 'c-epoll',
    against: 'seed-select',
    metric: 'messagesPerSecond',
    bound: 'min',
    bar: 2,
    forScale: true,
  },
  {
    issue: 3,
    scenario: '64B-p1',
    peer: 'c-epoll',
    against: 'seed-selectors',
    metric: 'messagesPerSecond',
    bound: 'min',
    bar: 2,
    forScale: true,
  },
  {
    issue: 4,
    scenario: '64B-p1',
    peer: BENCH_LOAD_PEER,
    against: 'c-epoll',
    metric: 'messagesPerSecond',
    bound: 'min',
    bar: 0.8,
  },
];

const METRIC_NAMES: Record<Target['metric'], string> = {
  cpuUsPerMessage: 'CPU per message',
  messagesPerSecond: 'msgs/s',
  bytesPerSecond: 'bytes/s',
  p50Us: 'p50 latency',
};

/**
 * Each target that this run measured: the median of its per-round ratios, their range, and in
 * how many rounds the bar held. A bar counts as met when the median meets it.
 */
export function targetsTable(results: ReadonlyMap<string, ReadonlyMap<string, Measurement[]>>): string {
  const lines = [
    '| issue | target | bar | ratio: median (range) | rounds meeting the bar | verdict |',
    '|---|---|---|---|---|---|',
  ];
  for (const target of TARGETS) {
    const runs = results.get(target.scenario)?.get(target.peer);
    const reference = results.get(target.scenario)?.get(target.against);
    if (!runs || !reference) continue;
    const ratios = roundRatios(runs, reference, (m) => m[target.metric]);
    if (ratios.length === 0) continue;
    const meets = (ratio: number) => (target.bound === 'max' ? ratio <= target.bar : ratio >= target.bar);
    const middle = median(ratios);
    lines.push(
      `| ${target.issue} | ${target.scenario}: ${target.peer} ${METRIC_NAMES[target.metric]} vs ${target.against} | ${target.bound === 'max' ? 'at most' : 'at least'} ${target.bar}x | ${describeRatios(ratios)} | ${ratios.filter(meets).length} of ${ratios.length} | ${target.forScale ? 'for scale' : meets(middle) ? 'met' : 'missed'} |`,
    );
  }
  return lines.length > 2 ? `Targets\n\n${lines.join('\n')}\n` : '';
}

const USAGE = `Usage: node --import tsx bench/peers.ts [--rounds 3] [--duration 5] [--warmup 1] [--load echoplex|c]
         [--peers name,...] [--scenarios name,...] [--write]
  --load c     drive the servers with bench/peers/loadgen.c instead of echoplex bench
  --write      put the results into BENCHMARKS.md's generated block
  peers:       ${PEERS.map((p) => p.name).join(', ')}
  scenarios:   ${SCENARIOS.map((s) => s.name).join(', ')}`;

async function main(): Promise<void> {
  const values = scriptOptions(
    {
      rounds: { type: 'string', default: '3' },
      duration: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      load: { type: 'string', default: 'echoplex' },
      peers: { type: 'string' },
      scenarios: { type: 'string', default: '64B-p1,64B-p16,64KiB,latency' },
      write: { type: 'boolean', default: false },
    },
    USAGE,
  );
  const load = oneOf(values.load, ['echoplex', 'c'], 'load');
  const rounds = positiveNumber(values.rounds, 'rounds');
  const duration = positiveNumber(values.duration, 'duration');
  const warmup = Number(values.warmup);
  const wanted =
    values.peers === undefined
      ? undefined
      : namesFrom(
          values.peers,
          PEERS.map((p) => p.name),
          'peer',
        );
  const scenarioNames = namesFrom(
    values.scenarios,
    SCENARIOS.map((s) => s.name),
    'scenario',
  );
  buildCPeers();
  if (load === 'c' && !existsSync(`${BIN_DIR}loadgen`))
    throw new Error('--load c needs cc to build bench/peers/loadgen.c');
  const allPeers: Peer[] = [];
  for (const peer of PEERS) {
    if (wanted && !wanted.includes(peer.name)) continue;
    const why = peer.unavailable();
    if (why) console.error(`skipping ${peer.name}: ${why}`);
    else allPeers.push(peer);
  }
  const scenarios = SCENARIOS.filter((s) => scenarioNames.includes(s.name));
  const sections: string[] = [];
  const allResults = new Map<string, Map<string, Measurement[]>>();
  for (const scenario of scenarios) {
    // Each scenario runs on the peers that speak its transport.
    const peers = allPeers.filter(
      (peer) =>
        (peer.datagrams ?? false) === (scenario.udp ?? false) &&
        (peer.websocket ?? false) === (scenario.ws ?? false) &&
        (peer.tls ?? false) === (scenario.tls ?? false),
    );
    if (peers.length === 0) continue;
    // Each round runs the C server under both load generators, one right after the other; and
    // the bare ws server under echoplex bench and under the bare ws client loop.
    const cEpoll = peers.find((p) => p.name === 'c-epoll');
    const wsBare = scenario.ws ? peers.find((p) => p.name === 'ws-bare') : undefined;
    const benchLoad = load === 'c' && scenario.name === '64B-p1' && cEpoll !== undefined;
    const rows = peers.flatMap((p) =>
      benchLoad && p === cEpoll ? [p.name, BENCH_LOAD_PEER] : p === wsBare ? [p.name, WS_LOOP_LOAD_PEER] : [p.name],
    );
    const results = new Map<string, Measurement[]>(rows.map((name) => [name, []]));
    allResults.set(scenario.name, results);
    const log = (round: number, m: Measurement) =>
      console.error(
        `[${scenario.name} round ${round}] ${m.peer}: ${Math.round(m.messagesPerSecond)} msg/s, ${m.cpuUsPerMessage.toFixed(2)} us CPU/msg, p99 ${m.p99Us} us, errors ${m.errors}`,
      );
    for (let round = 1; round <= rounds; round++) {
      for (const peer of peers) {
        const m = await measure(peer, scenario, load, duration, warmup);
        results.get(peer.name)!.push(m);
        log(round, m);
        if (benchLoad && peer === cEpoll) {
          const driven = await measure({ ...cEpoll, name: BENCH_LOAD_PEER }, scenario, 'echoplex', duration, warmup);
          results.get(BENCH_LOAD_PEER)!.push(driven);
          log(round, driven);
        }
        if (peer === wsBare) {
          const driven = await measure({ ...wsBare, name: WS_LOOP_LOAD_PEER }, scenario, 'ws-loop', duration, warmup);
          results.get(WS_LOOP_LOAD_PEER)!.push(driven);
          log(round, driven);
        }
      }
    }
    const comparedWith = (name: string) =>
      name === WS_LOOP_LOAD_PEER ? name : (peers.find((p) => p.name === name)?.comparedWith ?? 'c-epoll');
    const section = table(scenario, [...results.values()], comparedWith);
    console.log(section);
    sections.push(section);
  }
  const targets = targetsTable(allResults);
  if (targets) {
    console.log(targets);
    sections.unshift(targets);
  }
  if (values.write) {
    const header = `Run ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC on ${machineLine()}; load: ${load === 'c' ? 'bench/peers/loadgen.c' : 'echoplex bench'}, ${duration} s measured after ${warmup} s warm-up, median of ${rounds} interleaved rounds; server on core 0, load on core 1.`;
    writeResults(`${header}\n\n${sections.join('\n')}`);
  }
}

const BEGIN = '<!-- bench:peers begin -->';
const END = '<!-- bench:peers end -->';

/** Replaces the generated block in BENCHMARKS.md, keeping the hand-written text around it. */
function writeResults(block: string): void {
  const file = `${ROOT}BENCHMARKS.md`;
  const current = existsSync(file) ? readFileSync(file, 'utf8') : `# Benchmarks\n\n${BEGIN}\n${END}\n`;
  const start = current.indexOf(BEGIN);
  const end = current.indexOf(END);
  const next =
    start >= 0 && end > start
      ? `${current.slice(0, start + BEGIN.length)}\n${block}\n${current.slice(end)}`
      : `${current}\n${BEGIN}\n${block}\n${END}\n`;
  writeFileSync(file, next);
  console.error(`wrote ${file}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main();
}
