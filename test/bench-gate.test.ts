// The bench as a CI gate and across generators: thresholds and exit 3, standard HdrHistogram
// output, interval logs, one measured window for several generators, merged exactly.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as hdr from 'hdr-histogram-js';
import { parseAllDocuments } from 'yaml';
import type { BenchResult } from '../src/bench/settings.js';
import { runCli, startServe, type ServeProcess } from './helpers/cli.js';
import { withTimeout } from './helpers/timeout.js';

interface JobManifest {
  kind: string;
  spec: {
    completionMode: string;
    completions: number;
    parallelism: number;
    template: { spec: { containers: Array<{ args: string[]; env: unknown }> } };
  };
}

describe('bench thresholds, histograms and merging', () => {
  let server: ServeProcess;
  let dir: string;
  before(async () => {
    server = await startServe(['--quiet']);
    dir = await mkdtemp(join(tmpdir(), 'echoplex-gate-'));
  });
  after(async () => {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const bench = (args: string[]) => runCli(['bench', '--port', String(server.port), ...args], { ms: 30_000 });

  it('exits 0 when every threshold holds, and 3 (one line each) when one breaks, with the verdicts in JSON', async () => {
    const held = await bench([
      '-n',
      '2000',
      '-c',
      '4',
      '--json',
      '--threshold',
      'p99<10s',
      '--threshold',
      'errors<=0',
      '--threshold',
      'rate>=1',
    ]);
    assert.equal(held.code, 0, held.stderr);
    const heldResult = JSON.parse(held.stdout) as BenchResult;
    assert.deepEqual(
      heldResult.thresholds.map((t) => t.ok),
      [true, true, true],
    );
    const broken = await bench(['-n', '2000', '-c', '4', '--json', '--threshold', 'p50<1us', '--threshold', 'max<10s']);
    assert.equal(broken.code, 3, broken.stderr);
    assert.match(broken.stderr, /^echoplex bench: threshold p50<1us broken: measured \d+ us$/m);
    assert.doesNotMatch(broken.stderr, /max<10s/);
    const result = JSON.parse(broken.stdout) as BenchResult;
    assert.deepEqual(
      result.thresholds.map((t) => [t.expression, t.ok]),
      [
        ['p50<1us', false],
        ['max<10s', true],
      ],
    );
    assert.equal(result.thresholds[0]!.value, result.latencyUs.p50);
    const bad = await bench(['-n', '10', '--threshold', 'p99<2']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /a latency needs a unit/);
  });

  it('lets an errors threshold judge errors: within it, exit 0; past it, exit 3; with none, exit 1', async () => {
    // A server that takes one connection: the others are closed at once, each a bench error.
    const narrow = await startServe(['--quiet', '--max-connections', '1']);
    try {
      const run = (extra: string[]) =>
        runCli(['bench', '--port', String(narrow.port), '-c', '3', '-n', '300', '--json', ...extra], { ms: 30_000 });
      const plain = await run([]);
      assert.equal(plain.code, 1, plain.stderr);
      const errors = (JSON.parse(plain.stdout) as BenchResult).errors;
      assert.ok(errors >= 2, `${errors} errors`);
      assert.equal((await run(['--threshold', 'errors<=100'])).code, 0);
      assert.equal((await run(['--threshold', 'errors<1'])).code, 3);
    } finally {
      await narrow.stop();
    }
  });

  it("carries the latency histogram in HdrHistogram's compressed base64, readable by the library", async () => {
    const { stdout, code } = await bench(['-n', '3000', '-c', '3', '--json']);
    assert.equal(code, 0);
    const result = JSON.parse(stdout) as BenchResult;
    const decoded = hdr.decodeFromCompressedBase64(result.latencyHistogram);
    assert.equal(decoded.totalCount, result.messages);
    assert.equal(decoded.getValueAtPercentile(99), result.latencyUs.p99);
    // Decoded, min and max are known to the histogram's precision (3 significant digits).
    assert.ok(Math.abs(decoded.maxValue - result.latencyUs.max) <= result.latencyUs.max / 1000 + 1);
  });

  it('--hdr-log writes one interval histogram per second that add up to the measured messages', async () => {
    const log = join(dir, 'latency.hlog');
    const { stdout, code, stderr } = await bench(['-d', '2', '--warmup', '0', '-c', '2', '--json', '--hdr-log', log]);
    assert.equal(code, 0, stderr);
    const result = JSON.parse(stdout) as BenchResult;
    const text = await readFile(log, 'utf8');
    assert.match(text, /^#\[Histogram log format version 1\.3\]$/m);
    assert.match(text, /^#\[StartTime: \d+\.\d{3} \(seconds since epoch\)/m);
    assert.match(text, /^"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"$/m);
    const intervals = text.split('\n').filter((line) => /^\d/.test(line));
    assert.ok(intervals.length >= 2, `${intervals.length} intervals`);
    let total = 0;
    for (const line of intervals) total += hdr.decodeFromCompressedBase64(line.split(',')[3]!).totalCount;
    assert.equal(total, result.messages);
    // HdrHistogram's own reader takes the file.
    const reader = new hdr.HistogramLogReader(text);
    let read = 0;
    for (let h = reader.nextIntervalHistogram(); h !== null; h = reader.nextIntervalHistogram()) read += h.totalCount;
    assert.equal(read, result.messages);
  });

  it('generators given one --start-at measure one window, and bench merge adds them up exactly', async () => {
    const startAt = new Date(Date.now() + 2500).toISOString();
    const runs = await Promise.all([1, 2, 3].map(() => bench(['-d', '2', '-c', '2', '--start-at', startAt, '--json'])));
    const files: string[] = [];
    for (const [index, run] of runs.entries()) {
      assert.equal(run.code, 0, run.stderr);
      const result = JSON.parse(run.stdout) as BenchResult;
      assert.ok(
        Math.abs(Date.parse(result.startedAt) - Date.parse(startAt)) < 250,
        `${result.startedAt} against ${startAt}`,
      );
      files.push(join(dir, `run-${index}.json`));
      await writeFile(files[index]!, run.stdout);
    }
    const results = runs.map((run) => JSON.parse(run.stdout) as BenchResult);
    const merge = await runCli(['bench', 'merge', ...files, '--json'], { ms: 10_000 });
    assert.equal(merge.code, 0, merge.stderr);
    const merged = JSON.parse(merge.stdout) as BenchResult;
    assert.equal(
      merged.messages,
      results.reduce((sum, r) => sum + r.messages, 0),
    );
    assert.equal(merged.connections, 6);
    assert.equal(merged.generators, 3);
    assert.ok(merged.timeline.length <= 3, `one window, not three in a row: ${merged.timeline.length} seconds`);
    const all = hdr.build();
    for (const r of results) all.add(hdr.decodeFromCompressedBase64(r.latencyHistogram));
    assert.equal(merged.latencyUs.p99, all.getValueAtPercentile(99));
    const table = await runCli(['bench', 'merge', ...files, '--threshold', 'p99<10s'], { ms: 10_000 });
    assert.equal(table.code, 0);
    assert.match(table.stdout, /^generators +3 runs merged/m);
    const late = await bench(['-d', '1', '--start-at', new Date(Date.now() - 1000).toISOString()]);
    assert.equal(late.code, 2);
    assert.match(late.stderr, /has already passed/);
  });

  it('deploy/bench-job.yaml runs generators with flags the bench takes, and its runs merge', async () => {
    const manifest = parseAllDocuments(
      await readFile(new URL('../deploy/bench-job.yaml', import.meta.url), 'utf8'),
    ).map((d) => d.toJS() as JobManifest);
    const job = manifest.find((m) => m.kind === 'Job')!;
    assert.equal(job.spec.completionMode, 'Indexed');
    assert.equal(job.spec.completions, job.spec.parallelism, 'every generator runs at once');
    const container = job.spec.template.spec.containers[0]!;
    const args = container.args;
    assert.equal(args[0], 'bench');
    const help = (await runCli(['bench', '--help'])).stdout;
    for (const flag of args.filter((arg) => arg.startsWith('--')))
      assert.ok(help.includes(`${flag} `) || help.includes(`${flag}\n`), `bench takes ${flag}`);
    assert.ok(
      args.includes('--json') && args.includes('--start-at'),
      'each pod prints one JSON result for one shared window',
    );
    assert.deepEqual(container.env, [{ name: 'START_AT', value: 'START_AT_PLACEHOLDER' }]);
    // The same arguments, here: two generators against a local server, in a short window.
    const local = (value: string, index: number): string => {
      const flag = args[index - 1];
      if (flag === '--host') return '127.0.0.1';
      if (flag === '--port') return String(server.port);
      if (flag === '--duration') return '1';
      if (flag === '--connections') return '4';
      return value;
    };
    const startAt = new Date(Date.now() + 2000).toISOString();
    const runs = await Promise.all(
      [0, 1].map(() =>
        runCli(
          args.map(local).map((arg) => arg.replace('$(START_AT)', startAt)),
          { ms: 30_000 },
        ),
      ),
    );
    const files: string[] = [];
    for (const [index, run] of runs.entries()) {
      assert.equal(run.code, 0, run.stderr);
      files.push(join(dir, `pod-${index}.json`));
      await writeFile(files[index]!, run.stdout);
    }
    const merged = await runCli(['bench', 'merge', ...files, '--json'], { ms: 10_000 });
    assert.equal(merged.code, 0, merged.stderr);
    assert.equal((JSON.parse(merged.stdout) as BenchResult).generators, 2);
  });
});

describe('bench capacity search', () => {
  let server: ChildProcess;
  let port: number;
  let dir: string;
  before(async () => {
    // 2 ms of CPU per message: at most 500 messages per second.
    server = spawn(process.execPath, [fileURLToPath(new URL('./fixtures/busy-echo.mjs', import.meta.url)), '2'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const [line] = (await withTimeout(once(server.stdout!, 'data'), 10_000, 'the busy server')) as [Buffer];
    port = Number(line.toString().trim());
    dir = await mkdtemp(join(tmpdir(), 'echoplex-capacity-'));
  });
  after(async () => {
    server.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  });

  it('--find-max-rate steps up, then bisects, to the highest rate that holds every threshold', async () => {
    const report = join(dir, 'search.html');
    const run = await runCli(
      [
        'bench',
        '--port',
        String(port),
        '-c',
        '4',
        '-d',
        '1',
        '--warmup',
        '0',
        '--rate',
        '100',
        '--find-max-rate',
        '--threshold',
        'p99<30ms',
        '--json',
        '--report',
        report,
      ],
      { ms: 120_000 },
    );
    assert.equal(run.code, 0, run.stderr);
    const result = JSON.parse(run.stdout) as BenchResult;
    const search = result.rateSearch!;
    assert.ok(
      search.maxRate !== null && search.maxRate >= 250 && search.maxRate <= 500,
      `max rate ${search.maxRate} for a server that takes 500/s`,
    );
    assert.ok(
      search.steps.some((step) => !step.ok),
      'it went past the capacity',
    );
    const rates = search.steps.map((step) => step.rate);
    assert.deepEqual(rates.slice(0, 3), [100, 200, 400], 'doubling first');
    const failing = Math.min(...search.steps.filter((step) => !step.ok).map((step) => step.rate));
    assert.ok(failing / search.maxRate <= 1.06, `bisected to within 5%: held ${search.maxRate}, broke ${failing}`);
    assert.match(run.stderr, /msg\/s offered: broke/);
    const html = await readFile(report, 'utf8');
    assert.match(html, /Latency against offered rate/);
    assert.match(
      html,
      /<div class="chart" id="rates"><\/div>/,
      'a chart of latency against rate (drawn by the page: report-browser.test.ts)',
    );
    for (const step of search.steps)
      assert.match(
        html,
        new RegExp(`<td class="n">${step.rate.toLocaleString('en-US')}</td>`),
        `a row for ${step.rate}/s`,
      );
  });

  it('--find-max-rate needs a threshold; --ramp runs each rate it names', async () => {
    const refused = await runCli(['bench', '--port', String(port), '--find-max-rate'], { ms: 10_000 });
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /needs at least one --threshold/);
    const ramp = await runCli(
      [
        'bench',
        '--port',
        String(port),
        '-c',
        '2',
        '-d',
        '1',
        '--warmup',
        '0',
        '--ramp',
        '50:150:3',
        '--threshold',
        'p99<100ms',
      ],
      { ms: 60_000 },
    );
    assert.equal(ramp.code, 0, ramp.stderr);
    assert.match(ramp.stdout, /^ +50 .* held$/m);
    assert.match(ramp.stdout, /^ +100 .* held$/m);
    assert.match(ramp.stdout, /^ +150 .* held$/m);
    assert.match(ramp.stdout, /^max rate: 150 msg\/s/m);
  });
});

describe('bench UDP accounting', () => {
  it('a UDP server that restarts mid-run costs the datagrams sent meanwhile, not the sockets', async () => {
    let echoed = 0;
    const echo = async (port = 0) => {
      const server = dgram.createSocket('udp4');
      server.on('message', (message, from) => {
        echoed++;
        server.send(message, from.port, from.address);
      });
      await new Promise<void>((resolve) => server.bind(port, '127.0.0.1', resolve));
      return server;
    };
    let server = await echo();
    const { port } = server.address();
    const bench = runCli(
      ['bench', '--udp', '--port', String(port), '-c', '4', '-d', '3', '--warmup', '0', '--timeout', '0.3', '--json'],
      { ms: 30_000 },
    );
    try {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      // Down for half a second: the kernel answers the datagrams sent meanwhile with port unreachable.
      await new Promise<void>((resolve) => server.close(resolve));
      await new Promise((resolve) => setTimeout(resolve, 500));
      const before = echoed;
      server = await echo(port);
      const run = await bench;
      const result = JSON.parse(run.stdout) as BenchResult;
      assert.equal(run.code, 1, 'lost datagrams are errors');
      assert.equal(result.errorsByKind.closed, 0, 'no socket was given up');
      assert.ok(result.datagrams!.lost > 0, 'the datagrams sent while it was down are lost');
      assert.ok(echoed - before > 100, `${echoed - before} datagrams reached the restarted server`);
    } finally {
      server.close();
    }
  });

  it('a UDP port nobody listens on fails the run with the reason, as a refused connect does', async () => {
    const gone = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => gone.bind(0, '127.0.0.1', resolve));
    const { port } = gone.address();
    await new Promise<void>((resolve) => gone.close(resolve));
    const run = await runCli(['bench', '--udp', '--port', String(port), '-c', '3', '-d', '1', '--warmup', '0'], {
      ms: 30_000,
    });
    assert.equal(run.code, 1);
    assert.match(
      run.stderr,
      new RegExp(`cannot reach udp://127\\.0\\.0\\.1:${port}: connection refused \\(is the server running\\?\\)`),
    );
    assert.doesNotMatch(run.stdout, /^messages /m, 'no table of zeros');
  });

  it('counts a lossy, duplicating, reordering peer exactly, and a lost reply stalls nothing', async () => {
    const peer = spawn(process.execPath, [fileURLToPath(new URL('./fixtures/lossy-udp-echo.mjs', import.meta.url))], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const [line] = (await withTimeout(once(peer.stdout!, 'data'), 10_000, 'the lossy peer')) as [Buffer];
      const port = line.toString().trim();
      const run = await runCli(
        ['bench', '--udp', '--port', port, '-c', '1', '-p', '4', '-n', '200', '--timeout', '0.5', '--json'],
        { ms: 60_000 },
      );
      const result = JSON.parse(run.stdout) as BenchResult;
      const d = result.datagrams!;
      assert.equal(d.sent, 200);
      // 20 dropped (…3) and 4 answered after the timeout (9, 59, 109, 159): lost, or late if the
      // run was still listening when they came.
      assert.equal(d.received, 200 - 20 - 4);
      assert.equal(d.lost + d.late, 24);
      assert.ok(d.lost >= 20);
      assert.equal(d.duplicates, 20, 'every …5 answered twice');
      // A …7 reply is overtaken when another slot is not itself waiting out a dropped datagram.
      assert.ok(d.reordered >= 1 && d.reordered <= 20, `${d.reordered} reordered: only …7 replies can be overtaken`);
      assert.equal(result.mismatchedBytes, 0, 'duplicates and late replies are not mismatches');
      assert.equal(result.errorsByKind.timeout, 24, 'each datagram that timed out counted once');
      assert.equal(result.errorsByKind.closed, 0, 'the socket was never given up');
      assert.equal(run.code, 1, 'lost datagrams are errors');
      const tolerated = await runCli(
        [
          'bench',
          '--udp',
          '--port',
          port,
          '-c',
          '1',
          '-p',
          '4',
          '-n',
          '100',
          '--timeout',
          '0.5',
          '--threshold',
          'error-rate<20%',
        ],
        { ms: 60_000 },
      );
      assert.equal(tolerated.code, 0, tolerated.stderr);
      assert.match(
        tolerated.stdout,
        /^datagrams +100 sent, \d+ received, \d+ lost, \d+ late, 10 duplicates, \d+ reordered$/m,
      );
    } finally {
      peer.kill('SIGTERM');
    }
  });
});
