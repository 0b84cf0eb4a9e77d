// Locates the seed's Python programs (../shared/seed from the repo root) and python3.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const SEED_DIR = fileURLToPath(new URL('../../../shared/seed/', import.meta.url));

export function seedProgram(name: string): string {
  return `${SEED_DIR}${name}`;
}

/** Why the seed peers cannot run here, or undefined when they can. */
export function seedUnavailable(): string | undefined {
  if (spawnSync('python3', ['--version']).status !== 0) return 'python3 is not installed';
  if (!existsSync(seedProgram('select_server.py'))) return `the seed programs are not at ${SEED_DIR}`;
  return undefined;
}
