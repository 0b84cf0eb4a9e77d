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
