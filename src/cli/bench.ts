// `echoplex bench`: flags to a run, a progress line on a terminal, a table or JSON, exit 1 on any error.

import { access, constants, readFile, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { RunStep } from '../bench/capacity.js';
import { wrongReplies, type BenchOptions, type BenchResult, type RateStep } from '../bench/settings.js';
import { EchoplexError, UsageError } from '../core/errors.js';
import { ENGINE_CHOICES, type EngineChoice } from '../native/engine.js';
import { envOption } from './environment.js';
import { parseAddressList, parsePositiveInteger, parseSeconds, parseSize, parseWorkers } from './parsers.js';
import {
  expectationFromFlag,
  expectationOptions,
  TARGET_ARGUMENT,
  targetFromFlags,
  targetOptions,
  withTargetUrl,
  wsTextOption,
  type TargetFlags,
} from './target.js';

interface BenchFlags extends TargetFlags {
  proxyProtocol?: 1 | 2;
  connections: number;
  size: number;
  pipeline: number;
  duration: number;
  messages?: number;
  warmup?: number;
  connectRate?: number;
  messagesPerConnection?: number;
  rate?: number;
  expect: string;
  expectPrefix?: string;
  lines: boolean;
  timeout: number;
  json: boolean;
  report?: string;
  engine: EngineChoice;
  threshold: string[];
  hdrLog?: string;
  startAt?: number;
  findMaxRate: boolean;
  ramp?: string;
  hello: boolean;
  workers: number;
  sourceIp?: string[];
}

export function benchCommand(): Command {
  const command = new Command('bench').description(
    'load an echo server, verify every byte, report throughput and latency percentiles',
  );
  for (const option of [
    ...targetOptions('send datagrams, one message each (--connections UDP sockets)', true),
    wsTextOption(),
    ...expectationOptions(),
  ])
    command.addOption(option);
  return (
    command
      .addOption(
        new Option('--proxy-protocol <version>', 'open each connection with a PROXY header, v1 or v2').argParser(
          parseProxyVersion,
        ),
      )
      .addOption(
        new Option('-c, --connections <n>', 'concurrent connections').default(50).argParser(parsePositiveInteger),
      )
      .addOption(new Option('-s, --size <bytes>', 'bytes per message').default(64).argParser(parseSize))
      .addOption(
        new Option('-p, --pipeline <n>', 'messages in flight per connection (closed loop)')
          .default(1)
          .argParser(parsePositiveInteger),
      )
      .addOption(new Option('-d, --duration <seconds>', 'measured time').default(10).argParser(parseSeconds))
      .addOption(
        new Option('-n, --messages <n>', 'stop after this many measured messages instead').argParser(
          parsePositiveInteger,
        ),
      )
      .addOption(
        new Option('--warmup <seconds>', 'load before measuring (default 1; 0 with --messages)').argParser(
          parseSeconds,
        ),
      )
      .addOption(
        new Option(
          '--connect-rate <per-second>',
          'new connections per second (default: as fast as accepted)',
        ).argParser(parsePositiveInteger),
      )
      .addOption(
        new Option(
          '--messages-per-connection <n>',
          'close each connection after N replies and open a new one (connection churn: accept rate, TLS handshakes)',
        ).argParser(parsePositiveInteger),
      )
      .addOption(
        new Option(
          '--rate <msgs-per-second>',
          'open loop: send on a fixed schedule, latency from intended send time',
        ).argParser(parsePositiveInteger),
      )
      .option(
        '--lines',
        'make each message a line (printable text ending in its only newline), for servers that answer whole lines',
        false,
      )
      .addOption(
        new Option('--timeout <seconds>', 'longest wait for a reply or a connection')
          .default(5)
          .argParser(parseSeconds),
      )
      .option('--json', 'print one JSON object instead of the table', false)
      .option('--report <file.html>', 'also write a self-contained HTML report')
      .addOption(thresholdOption())
      .option(
        '--hello',
        'read the hello line the server opens each connection with (serve --hello) and count connections per instance',
        false,
      )
      .option(
        '--find-max-rate',
        'open-loop steps up from --rate (default 1000/s), then bisects, to the highest rate at which every --threshold holds and nothing is lost',
        false,
      )
      .option(
        '--ramp <from:to:steps>',
        'open-loop steps at rates evenly from FROM to TO, each reported with its latencies',
      )
      .option(
        '--hdr-log <file>',
        'also write the latencies as an HdrHistogram interval log (one histogram per second, microseconds)',
      )
      .addOption(
        new Option(
          '--start-at <time>',
          'begin measuring at this time (ISO 8601 or epoch ms), warming up until then: several generators measure one window',
        ).argParser(parseTime),
      )
      .addOption(
        new Option(
          '--workers <n|auto>',
          'generator processes sharing the run (connections and --rate split between them, results merged); auto: one per CPU',
        )
          .default(1)
          .argParser(parseWorkers),
      )
      .addOption(
        new Option(
          '--source-ip <addresses>',
          'local addresses to spread connections over, a list or ranges (127.0.0.2-127.0.0.9): past ~28,000 connections per port',
        ).argParser(parseAddressList),
      )
      .addOption(
        envOption(
          '--engine <engine>',
          'what carries the closed loop over TCP: native (C), portable (net.Socket), auto: native where built',
        )
          .choices(ENGINE_CHOICES)
          .default('auto'),
      )
      .argument(...TARGET_ARGUMENT)
      .action(async (url: string | undefined, flags: BenchFlags, self: Command) => {
        process.exitCode = await bench(withTargetUrl(flags, url, self));
      })
      // Options after `merge` are merge's own (its --json, --report, --threshold).
      .enablePositionalOptions()
      .addCommand(mergeCommand())
  );
}

interface MergeFlags {
  json: boolean;
  report?: string;
  threshold: string[];
  force: boolean;
}

/** `echoplex bench merge a.json b.json ...`: several generators' runs as one. */
function mergeCommand(): Command {
  return new Command('merge')
    .description(
      'add up the results of several generators (bench --json output): counts summed, percentiles from the merged histograms',
    )
    .argument('<files...>', 'results written by echoplex bench --json')
    .option('--json', 'print one JSON object instead of the table', false)
    .option('--report <file.html>', 'also write a self-contained HTML report')
    .addOption(thresholdOption())
    .option(
      '--force',
      'merge runs that measured different things (mode, target, size, expected reply) or the same run twice',
      false,
    )
    .action(async (files: string[], flags: MergeFlags) => {
      const [
        { mergeResults, parseResult },
        { renderHtmlReport },
        { formatTable, passed, brokenThresholds },
        { describeBroken },
      ] = await Promise.all([
        import('../bench/merge.js'),
        import('../bench/html.js'),
        import('../bench/report.js'),
        import('../bench/thresholds.js'),
      ]);
      if (flags.report !== undefined) await checkWritable('--report', flags.report);
      const results = await Promise.all(
        files.map(async (file) => {
          const text = await readFile(file, 'utf8').catch((err: Error) => {
            throw new UsageError(`cannot read ${file}: ${err.message}`);
          });
          return parseResult(text, file);
        }),
      );
      const merged = mergeResults(results, { thresholds: flags.threshold, force: flags.force });
      if (flags.json) {
        const { percentiles: _curve, ...summary } = merged;
        process.stdout.write(`${JSON.stringify(summary)}\n`);
      } else {
        process.stdout.write(formatTable(merged));
      }
      if (flags.report !== undefined) {
        await writeFile(resolve(flags.report), renderHtmlReport(merged));
        process.stderr.write(`echoplex bench merge: report written to ${resolve(flags.report)}\n`);
      }
      const broken = brokenThresholds(merged);
      for (const outcome of broken) process.stderr.write(`echoplex bench merge: ${describeBroken(outcome)}\n`);
      process.exitCode = !passed(merged) ? 1 : broken.length > 0 ? EXIT_THRESHOLD : 0;
    });
}

function thresholdOption(): Option {
  return new Option(
    '--threshold <expr>',
    'fail (exit 3) unless this holds: p50|p90|p99|p999|max<DURATION, errors<=N, error-rate<PERCENT, rate>=N; repeatable',
  )
    .argParser((value: string, previous: string[]) => [...previous, value])
    .default([]);
}

/** One run, or with --find-max-rate or --ramp, a run per rate (each step reported on stderr). */
async function runSchedule(flags: BenchFlags, options: BenchOptions, runBench: RunStep): Promise<BenchResult> {
  if (!flags.findMaxRate && flags.ramp === undefined) return runBench(options);
  const { findMaxRate, parseRamp, runRamp } = await import('../bench/capacity.js');
  if (flags.findMaxRate && flags.ramp !== undefined)
    throw new UsageError('--find-max-rate and --ramp are two schedules: give one');
  if (flags.ramp !== undefined && flags.rate !== undefined)
    throw new UsageError('--ramp sets the rates itself: not with --rate');
  if (flags.messagesPerConnection !== undefined)
    throw new UsageError('rate steps run the open loop: not with --messages-per-connection');
  const onStep = (step: RateStep) => {
    const l = step.latencyUs;
    process.stderr.write(
      `echoplex bench: ${step.rate.toLocaleString('en-US')} msg/s offered: ${step.ok ? 'held' : 'broke'} (${Math.round(step.messagesPerSecond).toLocaleString('en-US')} msg/s, p50 ${l.p50}us, p99 ${l.p99}us, errors ${step.errors})\n`,
    );
  };
  // Each step shows its own progress; the steps' lines stay, one per rate.
  const quiet: BenchOptions = { ...options, onProgress: undefined };
  return flags.findMaxRate
    ? findMaxRate(quiet, runBench, onStep)
    : runRamp(quiet, parseRamp(flags.ramp!), runBench, onStep);
}

/** The exit status when every reply was right but a --threshold did not hold. */
const EXIT_THRESHOLD = 3;

async function bench(flags: BenchFlags): Promise<number> {
  // Loaded here, not at the top: `echoplex serve` has no use for the bench's modules or the
  // histogram library, so its process does not load them.
  const [
    { runBench },
    { renderHtmlReport },
    { brokenThresholds, errorSummary, formatTable, passed, shortBy },
    { describeBroken },
    { runWorkers },
  ] = await Promise.all([
    import('../bench/loadgen.js'),
    import('../bench/html.js'),
    import('../bench/report.js'),
    import('../bench/thresholds.js'),
    import('../bench/workers.js'),
  ]);
  // A report that cannot be written is found out now, not after the whole run.
  for (const [flag, path] of [
    ['--report', flags.report],
    ['--hdr-log', flags.hdrLog],
  ] as const)
    if (path !== undefined) await checkWritable(flag, path);
  const progressLine = !flags.json && process.stdout.isTTY;
  const options: BenchOptions = {
    ...(await targetFromFlags(flags)),
    ...(flags.proxyProtocol !== undefined && { proxyProtocol: flags.proxyProtocol }),
    connections: flags.connections,
    size: flags.size,
    pipeline: flags.pipeline,
    durationSeconds: flags.duration,
    expect: await expectationFromFlag(flags.expect),
    lines: flags.lines,
    ...(flags.expectPrefix !== undefined && { expectPrefix: flags.expectPrefix }),
    timeoutSeconds: flags.timeout,
    engine: flags.engine,
    thresholds: flags.threshold,
    hello: flags.hello,
    ...(flags.hdrLog !== undefined && { hdrLog: flags.hdrLog }),
    ...(flags.startAt !== undefined && { startAt: flags.startAt }),
    ...(flags.messages !== undefined && { messages: flags.messages }),
    ...(flags.warmup !== undefined && { warmupSeconds: flags.warmup }),
    ...(flags.connectRate !== undefined && { connectRate: flags.connectRate }),
    ...(flags.messagesPerConnection !== undefined && { messagesPerConnection: flags.messagesPerConnection }),
    ...(flags.rate !== undefined && { rate: flags.rate }),
    ...(flags.sourceIp !== undefined && { sourceAddresses: flags.sourceIp }),
    ...(progressLine && {
      onProgress: (p) => {
        process.stdout.write(
          `\r\x1b[K${p.phase} ${Math.floor(p.elapsedSeconds)}s  ${Math.round(p.messagesPerSecond).toLocaleString('en-US')} msg/s  errors ${p.errors}`,
        );
      },
    }),
  };
  // Ctrl-C ends the measured window and reports it, as ping reports on Ctrl-C; a second quits at once.
  const stop = new AbortController();
  const onInterrupt = () => {
    process.once('SIGINT', () => process.exit(130));
    if (progressLine) process.stdout.write('\r\x1b[K');
    process.stderr.write(
      'echoplex bench: stopping early, waiting for the replies still owed (Ctrl-C again to quit now)\n',
    );
    stop.abort();
  };
  process.once('SIGINT', onInterrupt);
  const runStep: RunStep =
    flags.workers > 1 ? async (stepOptions) => (await runWorkers(stepOptions, flags.workers)).merged : runBench;
  const result = await runSchedule(flags, { ...options, signal: stop.signal }, runStep)
    .catch((err: unknown) => {
      // --json promises one object on stdout: a run that could not start is one too.
      if (flags.json && err instanceof EchoplexError)
        process.stdout.write(`${JSON.stringify({ error: { code: err.code, message: err.message } })}\n`);
      throw err;
    })
    .finally(() => process.off('SIGINT', onInterrupt));
  if (progressLine) process.stdout.write('\r\x1b[K');
  if (flags.json) {
    const { percentiles: _curve, ...summary } = result;
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  } else {
    process.stdout.write(formatTable(result));
  }
  // After the results, so that a report that fails to write loses nothing else.
  let reportFailed = false;
  if (flags.report !== undefined) {
    const path = resolve(flags.report);
    try {
      await writeFile(path, renderHtmlReport(result));
      process.stderr.write(`echoplex bench: report written to ${path}\n`);
    } catch (err) {
      process.stderr.write(`echoplex bench: cannot write the report to ${path}: ${(err as Error).message}\n`);
      reportFailed = true;
    }
  }
  const broken = brokenThresholds(result);
  for (const outcome of broken) process.stderr.write(`echoplex bench: ${describeBroken(outcome)}\n`);
  if (!passed(result)) {
    process.stderr.write(
      `echoplex bench: FAILED: errors ${errorSummary(result)}, ${result.mismatchedBytes} mismatched bytes\n`,
    );
    const short = shortBy(result);
    if (short > 0) {
      process.stderr.write(
        `echoplex bench: stopped short of -n ${result.messagesRequested}: ${result.messages} good replies and ${result.errors} errors, every connection gone (the errors above say why)\n`,
      );
    }
    if (wrongReplies(result.errorsByKind) > 0)
      process.stderr.write(
        'echoplex bench: (wrong replies: an echo server never sends another message than the one it was sent, whatever --threshold allows)\n',
      );
    for (const hint of [
      ...causeHints(result),
      timeoutHint(result, flags.lines === true),
      wrongReplyHint(result),
      closedHint(result),
    ]) {
      if (hint !== undefined) process.stderr.write(`echoplex bench: (${hint})\n`);
    }
    return 1;
  }
  if (reportFailed) return 1;
  // Distinct from 1: the server answered correctly, but not well enough.
  return broken.length > 0 ? EXIT_THRESHOLD : 0;
}

function parseProxyVersion(value: string): 1 | 2 {
  if (value === '1' || value === 'v1') return 1;
  if (value === '2' || value === 'v2') return 2;
  throw new InvalidArgumentError(`"${value}" is not a PROXY protocol version (1 or 2).`);
}

/** What the first wrong reply was, and what the server seems to speak when it tells. */
function wrongReplyHint(result: BenchResult): string | undefined {
  const first = result.firstWrongReply;
  if (first === undefined || first === null) return undefined;
  // The reply as Python's repr shows bytes (describeBytes): b'HTTP/1.1 400 ...'.
  const speaks = first.startsWith("b'HTTP/")
    ? ': the server answers in HTTP (a WebSocket port wants a ws:// URL)'
    : first.startsWith(`b'{"instance"`)
      ? ': the server opens each connection with a hello line (serve --hello): add --hello'
      : first.startsWith("b'error: ")
        ? ': the server refused a message (a line server wants --lines)'
        : '';
  return `the first wrong reply began ${first}${speaks}`;
}

/** What the socket said when the first connection failed to open, and when the first was lost. */
function causeHints(result: BenchResult): string[] {
  const causes = result.errorCauses ?? {};
  return [
    ...(causes.connect === undefined ? [] : [`the first connection that failed to open: ${causes.connect}`]),
    ...(causes.closed === undefined ? [] : [`the first connection lost: ${causes.closed}`]),
  ];
}

/** Every connection closed before a single reply: a server that refuses, not a slow one. */
function closedHint(result: BenchResult): string | undefined {
  if (result.messagesTotal > 0 || result.errorsByKind.closed === 0 || result.errorsByKind.closed < result.connections)
    return undefined;
  return 'the server closed every connection before answering anything: is it an echo server, and does it take this transport (TLS, PROXY header, WebSocket)?';
}

/** What replies that never came most likely mean, judged by whether any reply came at all. */
function timeoutHint(result: BenchResult, lines: boolean): string | undefined {
  if (result.errorsByKind.timeout === 0) return undefined;
  // A datagram is lost without a word: no listen backlog or stalled connection is involved.
  if (result.datagrams !== null)
    return 'datagrams whose reply did not come within --timeout are counted lost: UDP may drop them, and a server slower than that needs a longer --timeout';
  // Random bytes leave a server that answers whole lines waiting for the rest of a line: no
  // reply ever comes. Replies to some connections and none to others point at the server.
  if (result.messagesTotal === 0) {
    const slow = 'a server slower than that needs a longer --timeout';
    return lines
      ? `no reply came within --timeout: ${slow}`
      : `no reply came within --timeout: a server that answers only whole lines needs --lines; ${slow}`;
  }
  const waited = result.errorsByKind.timeout;
  return `${waited} ${waited === 1 ? 'connection' : 'connections'} waited over --timeout for a reply while others were answered: a server slow to accept (a small listen backlog: try --connect-rate) or one that stalls some clients`;
}

/** A usage error unless `path` can be written: its directory exists and takes files. */
async function checkWritable(flag: string, path: string): Promise<void> {
  const directory = dirname(resolve(path));
  try {
    await access(directory, constants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(
      `${flag}: cannot write ${path}: ${code === 'ENOENT' ? `no such directory ${directory}` : `${directory} is not writable`}`,
    );
  }
}

/** `2026-11-29T13:00:00Z`, or milliseconds since the epoch. */
function parseTime(value: string): number {
  const time = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(time))
    throw new InvalidArgumentError(
      `"${value}" is not a time (ISO 8601, such as 2026-11-29T13:00:00Z, or milliseconds since the epoch).`,
    );
  return time;
}
