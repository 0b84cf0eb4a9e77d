// Configuration from the environment: every flag `--some-flag` is also `ECHOPLEX_SOME_FLAG`.

import { Command, Option } from 'commander';
import { UsageError } from '../core/errors.js';

/** The variable for a flag: `--max-connections` -> `ECHOPLEX_MAX_CONNECTIONS`. */
export function environmentVariableFor(longFlag: string): string {
  return `ECHOPLEX_${longFlag.replace(/^--/, '').replace(/-/g, '_').toUpperCase()}`;
}

/**
 * An option that may also come from its ECHOPLEX_ variable. commander applies it with the
 * right precedence (the command line wins), lists it in --help, and runs the same value parser,
 * so a bad value is a usage error naming the variable. (The variable must be set before the
 * option is added to a command, hence a factory rather than a pass over the options.)
 */
export function envOption(flags: string, description: string): Option {
  const option = new Option(flags, description);
  return option.long ? option.env(environmentVariableFor(option.long)) : option;
}

/** ECHOPLEX_ variables read by other means than a flag (the build's own and the test suite's). */
const OTHER_VARIABLES = [
  'ECHOPLEX_DEBUG',
  'ECHOPLEX_REQUIRE_PEERS',
  'ECHOPLEX_BASELINE',
  'ECHOPLEX_WORKER_TLS_CERT',
  'ECHOPLEX_WORKER_TLS_KEY',
  'ECHOPLEX_WORKER_SHARED_PORTS',
];

/**
 * One warning line for each ECHOPLEX_ variable set that no command reads, naming the closest
 * one that is read: `ECHOPLEX_PROT=5` would otherwise be ignored without a word.
 */
export function unknownVariableWarnings(root: Command, env: NodeJS.ProcessEnv = process.env): string[] {
  const known = new Set(OTHER_VARIABLES);
  const collect = (command: Command): void => {
    for (const option of command.options) if (option.envVar !== undefined) known.add(option.envVar);
    command.commands.forEach(collect);
  };
  collect(root);
  return Object.keys(env)
    .filter((name) => name.startsWith('ECHOPLEX_') && !known.has(name))
    .map((name) => {
      const closest = [...known].sort((a, b) => editDistance(name, a) - editDistance(name, b))[0];
      return `echoplex: warning: ${name} is not a variable echoplex reads${closest !== undefined && editDistance(name, closest) <= 3 ? ` (did you mean ${closest}?)` : ''}`;
    });
}

/** Levenshtein distance, for suggesting the variable meant. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = row;
  }
  return previous[b.length]!;
}

const TRUE_WORDS = new Set(['1', 'true', 'yes', 'on']);
const FALSE_WORDS = new Set(['0', 'false', 'no', 'off']);

/**
 * commander turns a boolean flag on whenever its variable is set, whatever the value, so that
 * ECHOPLEX_QUIET=false would mean quiet. Before `command` runs, each boolean flag that came from
 * its variable is read again: 1/true/yes/on or 0/false/no/off, anything else a usage error.
 */
export function readBooleanVariables(command: Command): Command {
  return command.hook('preAction', (_root, action) => {
    for (const option of action.options) {
      if (option.required || option.optional || option.envVar === undefined) continue;
      const name = option.attributeName();
      if (action.getOptionValueSource(name) !== 'env') continue;
      const raw = process.env[option.envVar] ?? '';
      const word = raw.trim().toLowerCase();
      if (TRUE_WORDS.has(word)) action.setOptionValueWithSource(name, true, 'env');
      else if (FALSE_WORDS.has(word)) action.setOptionValueWithSource(name, false, 'env');
      else throw new UsageError(`${option.envVar} must be one of 1, true, yes, on, 0, false, no, off; got "${raw}"`);
    }
  });
}
