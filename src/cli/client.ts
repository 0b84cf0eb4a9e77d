// `echoplex client`: the seed's line client, interactive on a TTY and a byte pipe otherwise.

import { Command, Option } from 'commander';
import { runClient } from '../client/client.js';
import { UsageError } from '../core/errors.js';
import { parseSeconds } from './parsers.js';
import {
  checkTransportFlags,
  readClientIdentity,
  TARGET_ARGUMENT,
  targetOptions,
  wantsTls,
  withTargetUrl,
  type TargetFlags,
} from './target.js';

export function clientCommand(): Command {
  const command = new Command('client').description(
    'talk to an echo server: a >: prompt on a terminal, a byte pipe when stdin is piped',
  );
  for (const option of targetOptions('send each line as a datagram and print each reply')) command.addOption(option);
  command.addOption(
    new Option('--ws-binary', 'to a ws:// or wss:// URL: send each line as a binary message (default: text)').default(
      false,
    ),
  );
  command.addOption(
    new Option(
      '--timeout <seconds>',
      'longest wait for the connection to open (TLS handshake and WebSocket upgrade included), for each UDP reply, and for the server to answer or close once input has ended',
    )
      .default(5)
      .argParser(parseSeconds),
  );
  return command
    .argument(...TARGET_ARGUMENT)
    .action(
      async (url: string | undefined, given: TargetFlags & { wsBinary: boolean; timeout: number }, self: Command) => {
        const flags = withTargetUrl(given, url, self);
        if (flags.wsBinary && flags.websocketPath === undefined)
          throw new UsageError('--ws-binary applies to a ws:// or wss:// target URL');
        if (!(flags.timeout > 0)) throw new UsageError(`--timeout must be more than 0 seconds, got ${flags.timeout}`);
        checkTransportFlags(flags);
        await runClient({
          host: flags.host,
          port: Array.isArray(flags.port) ? flags.port[0]! : flags.port,
          udp: flags.udp,
          tls: wantsTls(flags),
          tlsInsecure: flags.tlsInsecure,
          timeoutMs: flags.timeout * 1000,
          ...(flags.unix !== undefined && { unix: flags.unix }),
          ...(flags.tlsCa !== undefined && { tlsCaFile: flags.tlsCa }),
          ...(await readClientIdentity(flags)),
          ...(flags.websocketPath !== undefined && {
            websocketPath: flags.websocketPath,
            websocketBinary: flags.wsBinary,
          }),
        });
      },
    );
}
