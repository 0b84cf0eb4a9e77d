// The load generator: opens the connections, runs the phases (warm-up, measured window, drain),
// paces the open loop, and turns a run into its verified results.

import { writeFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { ConnectError, describeSocketError, isCertificateError, systemErrorCode } from '../core/errors.js';
import { checkDescriptorBudget } from '../core/descriptors.js';
import { builtInTransform } from '../protocol/transforms.js';
import { connectAddress } from './address.js';
import { BenchConnection } from './connection.js';
import { DatagramConnection } from './datagram.js';
import { LatencyHistogram } from './histogram.js';
import { MessageCodec } from './message.js';
import { NativeBench } from './native-bench.js';
import { Run, type LoadConnection, type RunEngine } from './run.js';
import { checkThresholds } from './thresholds.js';
import { IntervalLog } from './hdr-log.js';
import { describeBytes } from '../core/log.js';
import {
  BenchSetupError,
  resolveSettings,
  type BenchOptions,
  type BenchProgress,
  type BenchResult,
  type SecondLatency,
  type Settings,
} from './settings.js';
import { connectionTarget, describeTarget, openBenchSocket, type BenchTarget } from '../protocol/transports.js';

const MAX_CONNECTS_IN_FLIGHT = 256;
/** How early the open loop's timer wakes before a send is due: a timer can fire this late. */
const TIMER_SLACK_MS = 2;
const SWEEP_MS = 100;

/** Runs one benchmark against a TCP echo server and resolves with its verified results. */
export async function runBench(options: BenchOptions = {}): Promise<BenchResult> {
  const settings = resolveSettings(options);
  checkDescriptorBudget(settings.connections);

  const builtIn = typeof settings.expect === 'string';
  const codec = new MessageCodec({
    size: settings.size,
    lines: settings.lines,
    text: settings.target.websocket?.text === true,
    transform: typeof settings.expect === 'string' ? builtInTransform(settings.expect) : settings.expect.transform,
    bytewise: builtIn,
    prefix: settings.expectPrefix,
    seed: settings.messageSeed,
  });
  const run = new Run(settings, codec);
  run.nextConnection = settings.firstConnection ?? 0;
  if (nativeEngineFits(settings)) {
    // The engine connects to an address: the name is looked up once, as wrk does. Where it cannot
    // be, the portable path tries each connection and reports why it failed.
    const target = settings.target;
    const address = await connectAddress(target.host, target.port, settings.timeoutSeconds * 1000);
    if (address !== undefined) run.engine = NativeBench.create(run, address);
  }
  if (settings.messagesPerConnection !== undefined) run.replaceFailed = () => replaceFailed(run);

  let stopped = false;
  await new Promise<void>((resolve) => {
    const stops: Array<() => void> = [];
    let drainNow: (() => void) | undefined;
    const stopEarly = () => {
      stopped = true;
      // Measuring: close the window and wait for what is owed. Before it, there is nothing to wait for.
      if (run.phase === 'measuring' && drainNow !== undefined) drainNow();
      else if (run.phase !== 'draining') run.finish();
    };
    run.finish = () => {
      if (run.phase === 'done') return;
      run.endMeasuring(performance.now());
      run.phase = 'done';
      for (const stop of stops) stop();
      for (const connection of run.live) connection.destroy();
      run.engine?.close();
      resolve();
    };
    const sweep = setInterval(() => sweepTimeouts(run), SWEEP_MS);
    stops.push(() => clearInterval(sweep));
    if (options.onProgress) stops.push(startProgress(run, options.onProgress));
    if (options.signal !== undefined) {
      const signal = options.signal;
      signal.addEventListener('abort', stopEarly, { once: true });
      stops.push(() => signal.removeEventListener('abort', stopEarly));
    }
    void connectAll(run).then(async () => {
      if (run.phase === 'done') return;
      if (run.live.size === 0 || run.descriptorsExhausted) return run.finish();
      const startAt = options.startWhen === undefined ? run.options.startAt : await options.startWhen();
      // Stopped (Ctrl-C) while waiting for the other generators.
      if ((run.phase as string) === 'done') return;
      const phases = startPhases(run, startAt);
      stops.push(phases.cancel);
      drainNow = phases.drain;
      if (options.signal?.aborted) stopEarly();
    });
  });

  if (settings.hdrLog !== undefined && run.intervalLog !== undefined) {
    // The last interval holds the replies that came in while draining.
    run.intervalLog.cut(Date.now());
    await writeFile(settings.hdrLog, run.intervalLog.text());
  }
  if (run.descriptorsExhausted) {
    throw new BenchSetupError(
      `ran out of file descriptors opening ${settings.connections} connections: raise the limit with \`ulimit -n\``,
    );
  }
  if (run.portsExhausted) {
    const sources = settings.target.sourceAddresses?.length ?? 0;
    throw new BenchSetupError(
      `ran out of local ports opening ${settings.connections} connections (${run.firstConnectError?.code}): ` +
        `one source address reaches about 28,000 connections to one port; ` +
        (sources === 0
          ? 'spread them with --source-ip (127.0.0.2-127.0.0.9 reach a server on 127.0.0.1)'
          : `${sources} source ${sources === 1 ? 'address' : 'addresses'} were not enough: give more with --source-ip`) +
        ', or serve and bench more ports (--port 1234,1235)',
    );
  }
  // Not one connection opened: a table of zeros would hide why, as a client would not.
  if (run.connectionsOpened === 0 && run.errorsByKind.connect > 0) {
    const reason =
      run.firstConnectError === undefined
        ? `no connection within --timeout (${settings.timeoutSeconds} s)`
        : describeSocketError(run.firstConnectError);
    throw new ConnectError(`cannot connect to ${describeTarget(settings.target)}: ${reason}`, run.firstConnectError);
  }
  // Over UDP nothing is refused until a datagram has gone: a port nobody listens on is, like a
  // refused connect, a reason to give rather than a table of zeros.
  const socketError = run.firstSocketError;
  if (
    settings.target.udp &&
    run.completedTotal === 0 &&
    socketError !== undefined &&
    systemErrorCode(socketError) === 'ECONNREFUSED'
  ) {
    throw new ConnectError(
      `cannot reach ${describeTarget(settings.target)}: ${describeSocketError(socketError)}`,
      socketError,
    );
  }
  // An mTLS server that wants a client certificate (or does not trust ours) says so after the
  // handshake: every connection then closes before any reply, for a reason to give in words.
  if (run.completedTotal === 0 && socketError !== undefined && isCertificateError(socketError)) {
    throw new ConnectError(
      `cannot connect to ${describeTarget(settings.target)}: ${describeSocketError(socketError)}`,
      socketError,
    );
  }
  const durationSeconds = Math.max(run.measureEndedAt - (run.measureStartedAt || run.measureEndedAt), 1) / 1000;
  const histogram = run.histogram;
  const latencyUs = histogram.summary();
  const messagesPerSecond = round(run.measured / durationSeconds, 1);
  return {
    target: describeTarget(settings.target),
    mode: settings.rate !== undefined ? 'open-loop' : 'closed-loop',
    engine: run.engine !== undefined ? 'native' : 'portable',
    connections: settings.connections,
    size: settings.size,
    pipeline: settings.pipeline,
    rate: settings.rate ?? null,
    expect: typeof settings.expect === 'string' ? settings.expect : settings.expect.label,
    expectPrefix: settings.expectPrefix ?? null,
    lines: settings.lines,
    warmupSeconds: settings.warmupSeconds,
    durationSeconds: round(durationSeconds, 3),
    messages: run.measured,
    messagesRequested: settings.messages ?? null,
    messagesTotal: run.completedTotal,
    messagesPerConnection: settings.messagesPerConnection ?? null,
    connectsPerSecond:
      settings.messagesPerConnection !== undefined ? round(run.connectHistogram.count / durationSeconds, 1) : null,
    connectLatencyUs: settings.messagesPerConnection !== undefined ? run.connectHistogram.summary() : null,
    messagesPerSecond,
    bytesPerSecond: Math.round((run.measured * settings.size) / durationSeconds),
    latencyUs,
    errors: run.errors,
    errorsByKind: { ...run.errorsByKind },
    mismatchedBytes: run.mismatchedBytes,
    firstWrongReply: run.firstWrongReply === undefined ? null : describeBytes(run.firstWrongReply, 80),
    errorCauses: errorCauses(run),
    timeline: wholeSeconds(run.timeline, durationSeconds),
    latencyTimeline: secondSummaries(run.secondHistograms, durationSeconds),
    errorTimeline: wholeSeconds(run.errorTimeline, durationSeconds),
    percentiles: histogram.curve(),
    latencyHistogram: histogram.encode(),
    instances: settings.hello ? Object.fromEntries(run.instances) : null,
    datagrams: numberedDatagrams(settings, codec) ? { ...run.datagrams } : null,
    verification: codec.verification,
    sendLagUs: settings.rate !== undefined ? lagSummary(run.sendLag) : null,
    startedAt: new Date(performance.timeOrigin + (run.measureStartedAt || run.measureEndedAt)).toISOString(),
    thresholds: checkThresholds(settings.thresholds, {
      latencyUs,
      messages: run.measured,
      errors: run.errors,
      messagesPerSecond,
    }),
    loadCpuPercent: round((run.measuredCpuMicros / (durationSeconds * 1e6)) * 100, 1),
    loadMemory: { rssGrowthBytes: run.rssWithConnections - run.rssBeforeConnecting, connections: run.openAtEnd },
    stopped,
  };
}

/**
 * The native engine carries TCP connections that stay open, plain, over TLS and over WebSocket,
 * in the closed loop and in the open loop (whose schedule stays here and sends through it).
 * UDP, Unix sockets, PROXY headers, --hello and replaced connections stay portable, as does
 * everything with `engine: 'portable'`.
 */
function nativeEngineFits(settings: Settings): boolean {
  return (
    settings.engine === 'native' &&
    !settings.hello &&
    settings.messagesPerConnection === undefined &&
    settings.target.unix === undefined &&
    !settings.target.udp &&
    settings.target.proxyProtocol === undefined
  );
}

/** Over UDP with a built-in expectation, datagrams are matched to their messages by number. */
function numberedDatagrams(settings: Settings, codec: MessageCodec): boolean {
  return settings.target.udp === true && typeof settings.expect === 'string' && codec.sequenceDigits > 0;
}

function lagSummary(histogram: LatencyHistogram): { p50: number; p99: number; max: number } {
  const { p50, p99, max } = histogram.summary();
  return { p50, p99, max };
}

/** Opens every connection, with bounded concurrency or at a fixed rate; resolves once all have settled. */
function connectAll(run: Run): Promise<void> {
  const { connections, connectRate } = run.options;
  let started = 0;
  let settled = 0;
  return new Promise<void>((resolve) => {
    const settle = () => {
      settled++;
      if (settled === connections) resolve();
      else if (connectRate === undefined) startNext();
    };
    const startNext = () => {
      if (started >= connections || run.phase === 'done') return;
      started++;
      openConnection(run, settle);
    };
    if (connectRate === undefined) {
      for (let i = 0; i < Math.min(MAX_CONNECTS_IN_FLIGHT, connections); i++) startNext();
      return;
    }
    const begin = performance.now();
    const tick = () => {
      const due = Math.min(connections, Math.floor(((performance.now() - begin) / 1000) * connectRate) + 1);
      while (started < due) startNext();
      if (started < connections && run.phase !== 'done') setTimeout(tick, Math.max(1, 1000 / connectRate));
    };
    tick();
  });
}

/**
 * Opens one connection. `settled` runs once it is live or has failed to open. A replacement
 * (for one retired by messagesPerConnection) starts sending as soon as it is live.
 */
function openConnection(run: Run, settled: () => void, replacement = false): void {
  const startedAt = performance.now();
  const target = connectionTarget(run.options.target, run.connectionsStarted++);
  let opening = true;
  /** Ends the connecting state, once, however it ends. */
  const stopConnecting = (): boolean => {
    if (!opening) return false;
    opening = false;
    run.connecting--;
    clearTimeout(deadline);
    return true;
  };
  const countFailure = (err?: NodeJS.ErrnoException) => {
    if (run.phase === 'done') return;
    run.errorsByKind.connect++;
    run.firstConnectError ??= err;
    if (err?.code === 'EMFILE' || err?.code === 'ENFILE') run.descriptorsExhausted = true;
    // No local port left for a source address and destination (or, with a source bound first, at all).
    if (err?.code === 'EADDRNOTAVAIL' || err?.code === 'EADDRINUSE') run.portsExhausted = true;
    settled();
    if (replacement) run.lost(0, true);
  };
  const connectFailed = (err?: NodeJS.ErrnoException) => {
    if (!stopConnecting()) return;
    cancel();
    countFailure(err);
  };
  const opened = (connection: LoadConnection) => {
    run.live.add(connection);
    run.connectionsOpened++;
    if (replacement) {
      const now = performance.now();
      run.replaced(startedAt, now - startedAt);
      if (run.sending) connection.send(run.options.pipeline, now);
    }
    settled();
  };
  // A connect that neither succeeds nor fails (a SYN into a black hole) fails after --timeout.
  const deadline = setTimeout(connectFailed, run.options.timeoutSeconds * 1000);
  run.connecting++;
  const engine = run.engine;
  const cancel =
    engine === undefined
      ? openTypeScriptConnection(run, target, { stopConnecting, connectFailed, opened })
      : openNativeConnection(run, engine, target, { stopConnecting, connectFailed, opened });
}

/**
 * A connection the native engine carries, connected by the engine itself: open once its TLS and
 * WebSocket handshakes (if any) are done. Returns its destroyer.
 */
function openNativeConnection(run: Run, engine: RunEngine, target: BenchTarget, opening: Opening): () => void {
  let connection: LoadConnection | undefined;
  try {
    connection = engine.open(target, {
      opened: (opened) => {
        // Opened as the run ended, or after its deadline: closed whole, as the portable path does.
        if (!opening.stopConnecting() || run.phase === 'done') opened.destroy();
        else opening.opened(opened);
      },
      failed: (err) => opening.connectFailed(err),
    });
  } catch (err) {
    // Asynchronously: the caller's deadline and destroyer are not set up until this returns.
    setImmediate(() => opening.connectFailed(err as NodeJS.ErrnoException));
  }
  return () => connection?.destroy();
}

interface Opening {
  stopConnecting(): boolean;
  connectFailed(err?: NodeJS.ErrnoException): void;
  opened(connection: LoadConnection): void;
}

/** A connection whose every read comes to BenchConnection in JavaScript. Returns its destroyer. */
function openTypeScriptConnection(run: Run, target: BenchTarget, opening: Opening): () => void {
  const closedLoop = run.options.rate === undefined;
  const numbered = numberedDatagrams(run.options, run.codec);
  let connection: BenchConnection | DatagramConnection | undefined;
  const socket = openBenchSocket(target, run.readBuffer, {
    connected: () => {
      if (!opening.stopConnecting()) return;
      // Opened as the run ended: closed only now, once it is whole (a PROXY header sent, a TLS
      // handshake done), so that the server does not log a client cut off halfway.
      if (run.phase === 'done') return socket.destroy();
      connection = numbered ? new DatagramConnection(run, socket) : new BenchConnection(run, socket);
      opening.opened(connection);
    },
    data: (bytes, length, binary) => {
      if (connection === undefined || connection.failed) return;
      const done = connection.receive(bytes, length, performance.now(), binary);
      if (connection.spent) return replace(run, connection);
      if (done > 0 && closedLoop && run.sending) run.answerLater(connection, done);
    },
    error: (err) => {
      if (connection === undefined) return opening.connectFailed(err);
      run.firstSocketError ??= err;
      // Over UDP an unreachable port (a server restarting, say) costs the datagram it answered,
      // which the timeout counts lost, not the socket; before any reply, the port is just closed.
      if (connection instanceof DatagramConnection && err.code === 'ECONNREFUSED' && run.completedTotal > 0) return;
      connection.fail('closed');
    },
    closed: () => {
      // The server going away before the run is over is an error, whatever was in flight.
      if (connection !== undefined && run.phase !== 'done') connection.fail('closed');
    },
  });
  return () => socket.destroy();
}

/**
 * Churn keeps its connections: one that failed is replaced while the run sends, until failures
 * outnumber the good replies by more than a connection each (a server that fails every
 * connection would otherwise be dialled for ever).
 */
function replaceFailed(run: Run): boolean {
  if (!run.sending || run.sendBudget <= 0) return false;
  if (run.errors > run.completedTotal + run.options.connections) return false;
  openConnection(run, () => {}, true);
  return true;
}

/** Retires a connection that has sent its share, and opens a new one while the run still sends. */
function replace(run: Run, connection: LoadConnection): void {
  connection.retire();
  if (run.sending && run.sendBudget > 0) openConnection(run, () => {}, true);
  else run.lost(0);
}

/** Warm-up, then the measured window, then waiting for replies still owed. `drain` ends the window now. */
function startPhases(run: Run, startAt: number | undefined): { cancel: () => void; drain: () => void } {
  const { warmupSeconds, durationSeconds, messages, pipeline, rate, hdrLog } = run.options;
  const timers: NodeJS.Timeout[] = [];
  let stopOpenLoop: (() => void) | undefined;
  const beginMeasuring = () => {
    run.startMeasuring();
    const begin = run.measureStartedAt;
    let second = 0;
    // Each whole second's errors, on the measured window's clock.
    const tick = () => {
      second++;
      run.countErrors(begin + second * 1000 - 1);
      timers.push(setTimeout(tick, begin + (second + 1) * 1000 - performance.now()));
    };
    timers.push(setTimeout(tick, 1000));
    if (hdrLog !== undefined) {
      const log = (run.intervalLog = new IntervalLog(Date.now()));
      const ticker = setInterval(() => log.cut(Date.now()), 1000);
      timers.push(ticker);
    }
    if (messages !== undefined) {
      run.setSendBudget(messages);
    } else {
      timers.push(setTimeout(beginDraining, durationSeconds * 1000));
    }
  };
  const beginDraining = () => {
    run.phase = 'draining';
    run.endMeasuring(performance.now());
    for (const timer of timers) clearTimeout(timer);
    run.syncEngine();
    if (run.inFlight === 0) run.finish();
  };
  // With --start-at, the warm-up lasts until then, so that every generator measures one window.
  const warmupMs = startAt !== undefined ? Math.max(0, startAt - Date.now()) : warmupSeconds * 1000;
  if (warmupMs > 0) {
    run.phase = 'warmup';
    run.warmupStartedAt = performance.now();
    timers.push(setTimeout(beginMeasuring, warmupMs));
  } else {
    beginMeasuring();
  }
  if (rate !== undefined) {
    stopOpenLoop = startOpenLoop(run, rate);
  } else {
    const now = performance.now();
    for (const connection of run.live) connection.send(pipeline, now);
  }
  return {
    cancel: () => {
      for (const timer of timers) clearTimeout(timer);
      stopOpenLoop?.();
    },
    drain: beginDraining,
  };
}

/** Closes connections whose oldest reply is overdue. */
function sweepTimeouts(run: Run): void {
  const now = performance.now();
  const limitMs = run.options.timeoutSeconds * 1000;
  for (const connection of [...run.live]) {
    if (connection instanceof DatagramConnection) {
      // A lost datagram costs itself, not its socket; the closed loop sends others in its place.
      const lost = connection.expireOverdue(now, limitMs);
      if (lost > 0 && run.options.rate === undefined && run.sending) run.answerLater(connection, lost);
    } else if (connection.isOverdue(now, limitMs)) {
      connection.fail('timeout');
    }
  }
}

/**
 * Sends on a fixed schedule across all connections, whatever the replies are doing: message k
 * is due at k / rate seconds, and its latency counts from then, so a stall cannot hide (wrk2's
 * rule). A timer sleeps until shortly before the next message is due, and the last stretch is
 * turns of the event loop (setImmediate), which read replies as they go: a timer alone fires
 * up to a millisecond late, which every latency would then carry. How late each message went
 * out all the same is the run's send lag.
 */
function startOpenLoop(run: Run, rate: number): () => void {
  const begin = performance.now();
  const intervalMs = 1000 / rate;
  let scheduled = 0;
  // Round robin over the live set itself: an iterator sees connections added after it began and
  // skips those removed, so a run holding many connections copies none of them per send.
  let order = run.live.values();
  const next = (): LoadConnection | undefined => {
    let step = order.next();
    if (step.done === true) {
      order = run.live.values();
      step = order.next();
    }
    return step.value as LoadConnection | undefined;
  };
  let timer: NodeJS.Timeout | undefined;
  let immediate: NodeJS.Immediate | undefined;
  let stopped = false;
  const pump = () => {
    timer = undefined;
    immediate = undefined;
    if (stopped) return;
    let now = performance.now();
    const due = Math.floor((now - begin) / intervalMs) + 1;
    if (run.sending && run.live.size > 0) {
      while (scheduled < due && run.sendBudget > 0) {
        const intended = begin + scheduled * intervalMs;
        if (run.phase === 'measuring') run.sendLag.recordMicros((now - intended) * 1000);
        next()!.send(1, intended);
        scheduled++;
        now = performance.now();
      }
    } else {
      // Not sending (or nobody to send on): the schedule moves on without a backlog.
      scheduled = Math.max(scheduled, due);
    }
    const wait = begin + scheduled * intervalMs - performance.now();
    if (wait > TIMER_SLACK_MS) timer = setTimeout(pump, wait - TIMER_SLACK_MS);
    else immediate = setImmediate(pump);
  };
  pump();
  return () => {
    stopped = true;
    if (timer !== undefined) clearTimeout(timer);
    if (immediate !== undefined) clearImmediate(immediate);
  };
}

function startProgress(run: Run, onProgress: (progress: BenchProgress) => void): () => void {
  const begin = performance.now();
  let lastMeasured = 0;
  let lastAt = begin;
  const timer = setInterval(() => {
    if (run.phase === 'done') return;
    const now = performance.now();
    const rate = ((run.measured - lastMeasured) * 1000) / (now - lastAt);
    lastMeasured = run.measured;
    lastAt = now;
    // Each phase on its own clock: the warm-up's from its start, the measured window's as long as
    // --duration says it will be (connecting and draining count from the start of the run).
    const since =
      run.phase === 'measuring' && run.measureStartedAt > 0
        ? run.measureStartedAt
        : run.phase === 'warmup' && run.warmupStartedAt > 0
          ? run.warmupStartedAt
          : begin;
    onProgress({ elapsedSeconds: (now - since) / 1000, phase: run.phase, messagesPerSecond: rate, errors: run.errors });
  }, 1000);
  return () => clearInterval(timer);
}

/** Per-second counts, with a last fraction of a second folded into the final whole second. */
function wholeSeconds(timeline: number[], durationSeconds: number): number[] {
  const seconds = Math.max(1, Math.round(durationSeconds));
  const counts = Array.from({ length: seconds }, (_, i) => timeline[i] ?? 0);
  for (let i = seconds; i < timeline.length; i++) counts[seconds - 1]! += timeline[i] ?? 0;
  return counts;
}

/** p50, p99 and max of each measured second (null for a second without replies), the last fraction folded in as wholeSeconds does. */
function secondSummaries(histograms: LatencyHistogram[], durationSeconds: number): Array<SecondLatency | null> {
  const seconds = Math.max(1, Math.round(durationSeconds));
  for (let i = seconds; i < histograms.length; i++) {
    const extra = histograms[i];
    if (extra === undefined) continue;
    const last = (histograms[seconds - 1] ??= new LatencyHistogram());
    last.add(extra);
  }
  return Array.from({ length: seconds }, (_, i) => {
    const histogram = histograms[i];
    if (histogram === undefined || histogram.count === 0) return null;
    const { p50, p99, max } = histogram.summary();
    return { p50, p99, max };
  });
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/** The first connect and socket errors in words, for the kinds of error counted. */
function errorCauses(run: Run): BenchResult['errorCauses'] {
  const causes: NonNullable<BenchResult['errorCauses']> = {};
  if (run.errorsByKind.connect > 0 && run.firstConnectError !== undefined)
    causes.connect = describeSocketError(run.firstConnectError);
  if (run.errorsByKind.closed > 0 && run.firstSocketError !== undefined)
    causes.closed = describeSocketError(run.firstSocketError);
  return causes;
}
