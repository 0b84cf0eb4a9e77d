// Configuration from the environment: every flag `--some-flag` is also `ECHOPLEX_SOME_FLAG`.

import { Option } from 'commander';

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
