// File-descriptor budget: the process limit, how many are open, and a `ulimit -n` hint.

import { readdirSync, readFileSync } from 'node:fs';
import { EchoplexError } from './errors.js';

/** Descriptors a Node process needs besides its connections (stdio, libuv, timers...). */
const RESERVED_DESCRIPTORS = 64;

/** The soft RLIMIT_NOFILE, read from /proc; undefined where /proc is not there. */
export function openFileLimit(): number | undefined {
  try {
    const limits = readFileSync('/proc/self/limits', 'utf8');
    const match = /^Max open files\s+(\S+)/m.exec(limits);
    if (!match || match[1] === 'unlimited') return undefined;
    return Number(match[1]);
  } catch {
    return undefined;
  }
}

/** Descriptors this process has open now (Linux); undefined elsewhere. */
export function openDescriptorCount(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return undefined;
  }
}

/** Throws, naming `ulimit -n`, when `connections` sockets cannot fit under the limit. */
export function checkDescriptorBudget(connections: number): void {
  const limit = openFileLimit();
  if (limit !== undefined && connections + RESERVED_DESCRIPTORS > limit) {
    throw new EchoplexError(
      'ERR_ECHOPLEX_FD_LIMIT',
      `${connections} connections need about ${connections + RESERVED_DESCRIPTORS} file descriptors, but this process may open only ${limit}: raise the limit with \`ulimit -n ${connections + 1024}\` and run again`,
    );
  }
}
