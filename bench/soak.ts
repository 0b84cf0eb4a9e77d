// `npm run soak`: mixed, misbehaving clients against `echoplex serve` for a while; memory must stay flat.
//
// Normal echo clients, connection churn (a new connection every 20 messages), slow readers,
// clients that reset mid-stream and clients that half-close run side by side. Resident memory is sampled through the run; the median of the last samples
// must be within 10% of the median just after warm-up, every echo must verify, and the server
// must hold no more descriptors at the end than after warm-up.
//
// The warm-up defaults to half the run: under this mix V8 grows its young generation (heapTotal
// 16 -> 40 MiB, heapUsed flat at 8-18 MiB) during the first ~30 s, and RSS follows, then stays
// flat. A leak shows as growth after that point, which is what the check looks for.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { runBench } from '../src/bench/loadgen.js';
import { positiveNumber, scriptOptions } from './script-args.js';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? 0) * 1024;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Sends 1 MiB and reads the reply slowly, 16 KiB at a time. */
async function slowReader(port: number): Promise<boolean> {
  const socket = await connect(port);
  const payload = randomBytes(1024 * 1024);
  socket.write(payload);
  socket.end();
  socket.pause();
  const chunks: Buffer[] = [];
  let got = 0;
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      let chunk: Buffer | null;
      while ((chunk = socket.read(16 * 1024) as Buffer | null) !== null) {
        chunks.push(chunk);
        got += chunk.length;
      }
      if (got >= payload.length || socket.readableEnded || socket.destroyed) {
        clearInterval(tick);
        resolve();
      }
    }, 5);
    socket.on('end', () => {
      const rest = socket.read() as Buffer | null;
      if (rest) {
        chunks.push(rest);
        got += rest.length;
      }
    });
    socket.on('error', () => resolve());
  });
  socket.destroy();
  return Buffer.concat(chunks).equals(payload);
}

async function resetter(port: number): Promise<void> {
  const socket = await connect(port);
  socket.on('error', () => {});
  socket.write(randomBytes(256 * 1024));
  await new Promise((resolve) => setTimeout(resolve, 2));
  socket.resetAndDestroy();
}

async function halfCloser(port: number): Promise<boolean> {
  const socket = await connect(port);
  const payload = randomBytes(64 * 1024);
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve) => {
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => resolve());
    socket.on('error', () => resolve());
  });
  socket.end(payload);
  await done;
  socket.destroy();
  return Buffer.concat(chunks).equals(payload);
}

const USAGE = 'Usage: node --import tsx bench/soak.ts [--seconds 60] [--warmup SECONDS (default: half the run)]';

async function main(): Promise<void> {
  const values = scriptOptions({ seconds: { type: 'string', default: '60' }, warmup: { type: 'string' } }, USAGE);
  const seconds = positiveNumber(values.seconds, 'seconds');
  const warmup = values.warmup !== undefined ? positiveNumber(values.warmup, 'warmup') : seconds / 2;
  const server = spawn(process.execPath, [CLI, 'serve', '--quiet', '--port', '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve) => {
    server.stdout!.setEncoding('utf8').on('data', (s: string) => {
      const match = /:(\d+) \(/.exec(s);
      if (match) resolve(Number(match[1]));
    });
  });
  const pid = server.pid!;
  const started = Date.now();
  const deadline = started + seconds * 1000;
  const samples: Array<{ at: number; rss: number }> = [];
  let failures = 0;
  let rounds = 0;
  const sampler = setInterval(() => samples.push({ at: (Date.now() - started) / 1000, rss: rssBytes(pid) }), 500);

  // Steady normal traffic for the whole run, verified by the bench.
  const steady = runBench({
    port,
    connections: 20,
    size: 512,
    pipeline: 2,
    durationSeconds: seconds,
    warmupSeconds: 0,
  });
  // Connections opened and closed all the while, as behind a proxy that does not pool them.
  const churn = runBench({
    port,
    connections: 10,
    messagesPerConnection: 20,
    durationSeconds: seconds,
    warmupSeconds: 0,
  });
  let descriptorsAfterWarmup: number | undefined;
  while (Date.now() < deadline) {
    const results = await Promise.all([
      ...Array.from({ length: 4 }, () => slowReader(port)),
      ...Array.from({ length: 10 }, () => resetter(port).then(() => true)),
      ...Array.from({ length: 10 }, () => halfCloser(port)),
    ]);
    failures += results.filter((ok) => !ok).length;
    rounds++;
    if (descriptorsAfterWarmup === undefined && Date.now() - started >= warmup * 1000) {
      descriptorsAfterWarmup = readdirSync(`/proc/${pid}/fd`).length;
    }
  }
  const bench = await steady;
  const churned = await churn;
  clearInterval(sampler);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const descriptorsAtEnd = readdirSync(`/proc/${pid}/fd`).length;
  server.kill('SIGTERM');

  const warm = median(samples.filter((s) => s.at >= warmup && s.at < warmup + 5).map((s) => s.rss));
  const end = median(samples.slice(-10).map((s) => s.rss));
  const growth = end / warm - 1;
  const report = {
    seconds,
    rounds,
    mixedClientFailures: failures,
    steadyMessages: bench.messages,
    steadyErrors: bench.errors + bench.mismatchedBytes,
    churnConnectsPerSecond: churned.connectsPerSecond,
    churnErrors: churned.errors + churned.mismatchedBytes,
    rssAfterWarmupMiB: +(warm / 2 ** 20).toFixed(1),
    rssAtEndMiB: +(end / 2 ** 20).toFixed(1),
    rssGrowthPercent: +(growth * 100).toFixed(1),
    descriptorsAfterWarmup,
    descriptorsAtEnd,
    rssMiBEvery5s: samples.filter((_, i) => i % 10 === 9).map((s) => +(s.rss / 2 ** 20).toFixed(0)),
  };
  console.log(JSON.stringify(report, null, 2));
  const ok =
    failures === 0 &&
    report.steadyErrors === 0 &&
    report.churnErrors === 0 &&
    growth <= 0.1 &&
    descriptorsAtEnd <= (descriptorsAfterWarmup ?? Infinity);
  console.log(ok ? 'soak: PASS' : 'soak: FAIL');
  process.exitCode = ok ? 0 : 1;
}

await main();
