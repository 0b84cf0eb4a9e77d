// Real peer programs (HAProxy, openssl, Chromium): found on PATH, or the test is skipped with
// a reason; CI sets ECHOPLEX_REQUIRE_PEERS=1 so that a missing peer fails instead.

import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';

/** The first of `candidates` that runs with `versionArgs`, or undefined. */
export function findProgram(
  candidates: readonly string[],
  versionArgs: readonly string[] = ['--version'],
): string | undefined {
  return candidates.find((path) => spawnSync(path, versionArgs, { timeout: 10_000 }).status === 0);
}

/** A `skip` value for describe(): undefined when the peer exists. */
export function skipUnless(program: string | undefined, name: string, debianPackage: string): string | undefined {
  if (program !== undefined) return undefined;
  if (process.env['ECHOPLEX_REQUIRE_PEERS'] === '1')
    throw new Error(
      `${name} is required (ECHOPLEX_REQUIRE_PEERS=1) but not installed: apt-get install ${debianPackage}`,
    );
  return `${name} is not installed (apt-get install ${debianPackage})`;
}

/**
 * `describe`, or, where `skip` gives a reason, one skipped test in its place: node's test runner
 * counts a skipped suite among the suites and not as skipped, so its summary would hide it.
 */
export function suite(name: string, skip: string | false | undefined, body: () => void): void {
  if (skip) it(name, { skip });
  else describe(name, body);
}
