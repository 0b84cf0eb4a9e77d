// `echoplex client`: the seed's line client, interactive on a TTY and a byte pipe otherwise.

import { Command, Option } from 'commander';
import { runClient } from '../client/client.js';
import { parsePort } from './parsers.js';

export function clientCommand(): Command {
  return new Command('client')
    .description('talk to an echo server: a >: prompt on a terminal, a byte pipe when stdin is piped')
    .addOption(new Option('--host <host>', 'server address').default('127.0.0.1'))
    .addOption(new Option('--port <port>', 'server port').default(1234).argParser(parsePort))
    .action(async (flags: { host: string; port: number }) => {
      await runClient({ host: flags.host, port: flags.port });
    });
}
