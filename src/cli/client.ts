// `echoplex client`: the seed's line client, interactive on a TTY and a byte pipe otherwise.

import { Command } from 'commander';
import { runClient } from '../client/client.js';
import { TARGET_ARGUMENT, targetOptions, wantsTls, withTargetUrl, type TargetFlags } from './target.js';

export function clientCommand(): Command {
  const command = new Command('client').description('talk to an echo server: a >: prompt on a terminal, a byte pipe when stdin is piped');
  for (const option of targetOptions('send each line as a datagram and print each reply')) command.addOption(option);
  return command.argument(...TARGET_ARGUMENT).action(async (url: string | undefined, given: TargetFlags, self: Command) => {
    const flags = withTargetUrl(given, url, self);
    await runClient({
      host: flags.host,
      port: flags.port,
      udp: flags.udp,
      tls: wantsTls(flags),
      tlsInsecure: flags.tlsInsecure,
      ...(flags.unix !== undefined && { unix: flags.unix }),
      ...(flags.tlsCa !== undefined && { tlsCaFile: flags.tlsCa }),
    });
  });
}
