// `echoplex ping`: flags to runPing, Ctrl-C for the summary, exit 1 unless every reply came back right.

import { Command, Option } from 'commander';
import type { PingOptions } from '../client/ping.js';
import { parsePositiveInteger, parseSeconds, parseSize } from './parsers.js';
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

interface PingFlags extends TargetFlags {
  count?: number;
  interval: number;
  size: number;
  timeout: number;
  expect: string;
  expectPrefix?: string;
  newConnection: boolean;
  hello: boolean;
}

export function pingCommand(): Command {
  const command = new Command('ping').description(
    'one message at a time through an echo server, each round trip timed and verified, like ping(8)',
  );
  for (const option of [
    ...targetOptions('ping with datagrams (echo over UDP, RFC 862)'),
    wsTextOption(),
    ...expectationOptions(),
  ])
    command.addOption(option);
  return command
    .addOption(
      new Option('-c, --count <n>', 'stop after N messages (default: until Ctrl-C)').argParser(parsePositiveInteger),
    )
    .addOption(
      new Option('-i, --interval <seconds>', 'from one message to the next').default(1).argParser(parseSeconds),
    )
    .addOption(
      new Option('-s, --size <bytes>', 'bytes per message (ends in a newline, so line servers answer too)')
        .default(64)
        .argParser(parseSize),
    )
    .addOption(
      new Option('--timeout <seconds>', 'longest wait for a connection or a reply').default(5).argParser(parseSeconds),
    )
    .option('--new-connection', 'connect afresh for every message and time the connection too', false)
    .option(
      '--hello',
      'read the hello line the server opens each connection with (serve --hello) and say which instance answered',
      false,
    )
    .argument(...TARGET_ARGUMENT)
    .action(async (url: string | undefined, flags: PingFlags, self: Command) => {
      process.exitCode = await ping(withTargetUrl(flags, url, self));
    });
}

async function ping(flags: PingFlags): Promise<number> {
  const { runPing } = await import('../client/ping.js');
  const stop = new AbortController();
  const onInterrupt = () => stop.abort();
  process.once('SIGINT', onInterrupt);
  const options: PingOptions = {
    ...(await targetFromFlags(flags)),
    ...(flags.count !== undefined && { count: flags.count }),
    intervalSeconds: flags.interval,
    size: flags.size,
    timeoutSeconds: flags.timeout,
    expect: await expectationFromFlag(flags.expect),
    ...(flags.expectPrefix !== undefined && { expectPrefix: flags.expectPrefix }),
    newConnection: flags.newConnection,
    hello: flags.hello,
    signal: stop.signal,
    output: process.stdout,
  };
  try {
    const summary = await runPing(options);
    return summary.sent > 0 && summary.received === summary.sent && summary.mismatched === 0 ? 0 : 1;
  } finally {
    process.off('SIGINT', onInterrupt);
  }
}
