// Command-line options for the benchmark scripts: --help prints the usage; a bad option says so and exits 2.

import { parseArgs, type ParseArgsConfig } from 'node:util';

type OptionsConfig = NonNullable<ParseArgsConfig['options']>;

/** The parsed option values; `--help` (`-h`) prints `usage` and exits 0, an unknown or malformed option exits 2. */
export function scriptOptions<const O extends OptionsConfig>(
  options: O,
  usage: string,
): ReturnType<typeof parseArgs<{ options: O }>>['values'] {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    console.log(usage);
    process.exit(0);
  }
  try {
    return parseArgs({ args, options }).values;
  } catch (err) {
    console.error(`${(err as Error).message}\n${usage}`);
    process.exit(2);
  }
}

/** Splits a comma-separated list of names and checks each against `known`; exits 2 naming the valid ones otherwise. */
export function namesFrom(list: string, known: readonly string[], what: string): string[] {
  const names = list.split(',').filter((name) => name !== '');
  const unknown = names.filter((name) => !known.includes(name));
  if (unknown.length > 0) {
    console.error(`unknown ${what}: ${unknown.join(', ')} (known: ${known.join(', ')})`);
    process.exit(2);
  }
  return names;
}

/** A positive number given as an option's text; exits 2 naming the option otherwise. */
export function positiveNumber(value: string, option: string): number {
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0) {
    console.error(`--${option} must be a positive number, not "${value}"`);
    process.exit(2);
  }
  return number;
}

/** One of `known`, given as an option's text; exits 2 naming the choices otherwise. */
export function oneOf<const K extends string>(value: string, known: readonly K[], option: string): K {
  if ((known as readonly string[]).includes(value)) return value as K;
  console.error(`--${option} must be one of ${known.join(', ')}, not "${value}"`);
  process.exit(2);
}
