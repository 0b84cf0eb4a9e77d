// Flags that say how to reach a server, shared by `echoplex client` and `echoplex bench`.

import { Option } from 'commander';
import { parsePort } from './parsers.js';

export interface TargetFlags {
  host: string;
  port: number;
  unix?: string;
  udp: boolean;
  tls: boolean;
  tlsInsecure: boolean;
  tlsCa?: string;
}

/** `--host`, `--port`, `--unix`, `--udp` (described by `udpHelp`), `--tls`, `--tls-insecure`, `--tls-ca`. */
export function targetOptions(udpHelp: string): Option[] {
  return [
    new Option('--host <host>', 'server address').default('127.0.0.1'),
    new Option('--port <port>', 'server port').default(1234).argParser(parsePort),
    new Option('--unix <path>', 'connect to this Unix socket instead'),
    new Option('--udp', udpHelp).default(false),
    new Option('--tls', 'speak TLS, verifying the server certificate').default(false),
    new Option('--tls-insecure', 'speak TLS and accept any certificate (self-signed servers)').default(false),
    new Option('--tls-ca <file>', 'speak TLS and also trust this PEM CA'),
  ];
}

/** Whether any TLS flag was given: each of them implies TLS. */
export function wantsTls(flags: TargetFlags): boolean {
  return flags.tls || flags.tlsInsecure || flags.tlsCa !== undefined;
}
