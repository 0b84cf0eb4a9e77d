// `echoplex client`: the seed's line client, interactive on a TTY and a byte pipe otherwise.

import { Command, Option } from 'commander';
import { runClient } from '../client/client.js';
import { parsePort } from './parsers.js';

interface ClientFlags {
  host: string;
  port: number;
  unix?: string;
  udp: boolean;
  tls: boolean;
  tlsInsecure: boolean;
  tlsCa?: string;
}

export function clientCommand(): Command {
  return new Command('client')
    .description('talk to an echo server: a >: prompt on a terminal, a byte pipe when stdin is piped')
    .addOption(new Option('--host <host>', 'server address').default('127.0.0.1'))
    .addOption(new Option('--port <port>', 'server port').default(1234).argParser(parsePort))
    .addOption(new Option('--unix <path>', 'connect to this Unix socket instead'))
    .addOption(new Option('--udp', 'send each line as a datagram and print each reply').default(false))
    .addOption(new Option('--tls', 'speak TLS, verifying the server certificate').default(false))
    .addOption(new Option('--tls-insecure', 'speak TLS and accept any certificate (self-signed servers)').default(false))
    .addOption(new Option('--tls-ca <file>', 'speak TLS and also trust this PEM CA'))
    .action(async (flags: ClientFlags) => {
      await runClient({
        host: flags.host,
        port: flags.port,
        udp: flags.udp,
        tls: flags.tls,
        tlsInsecure: flags.tlsInsecure,
        ...(flags.unix !== undefined && { unix: flags.unix }),
        ...(flags.tlsCa !== undefined && { tlsCaFile: flags.tlsCa }),
      });
    });
}
