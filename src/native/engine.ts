// Which engine moves the bytes: the one place that decides between the native addon and the portable path.
//
// Every subsystem (server, selectors, bench) has two engines: `native`, the C addon, where a
// connection's bytes never enter JavaScript; and `portable`, documented Node APIs only. They
// behave the same; the native one costs less CPU per message. `auto` takes the native one where
// the addon loads.

import { UsageError } from '../core/errors.js';
import { addonAbsence } from './addon.js';

export const ENGINE_CHOICES = ['auto', 'native', 'portable'] as const;
export type EngineChoice = (typeof ENGINE_CHOICES)[number];
export type EngineName = Exclude<EngineChoice, 'auto'>;

/** The environment variable that sets the default engine, for the library as for the CLI. */
export const ENGINE_VARIABLE = 'ECHOPLEX_ENGINE';

/** `value` as an engine choice; a UsageError naming `source` otherwise. */
export function parseEngineChoice(value: string, source = '--engine'): EngineChoice {
  if ((ENGINE_CHOICES as readonly string[]).includes(value)) return value as EngineChoice;
  throw new UsageError(`${source} must be one of ${ENGINE_CHOICES.join(', ')}, got "${value}"`);
}

/**
 * The engine to use for `requested` (default: ECHOPLEX_ENGINE, else `auto`). Asking for `native`
 * where the addon is missing is a UsageError that says how to build it.
 */
export function chooseEngine(requested?: EngineChoice): EngineName {
  // JavaScript callers have no types to stop a misspelt engine.
  const choice = requestedEngine(requested);
  if (choice === 'portable') return 'portable';
  const absent = addonAbsence();
  if (absent === undefined) return 'native';
  if (choice === 'native')
    throw new UsageError(`the native engine is not available: ${absent}; or use --engine portable`);
  return 'portable';
}

/** Why `auto` fell back to the portable engine, as one line; undefined when it did not. */
export function fallbackNotice(requested?: EngineChoice): string | undefined {
  const choice = requested ?? defaultChoice();
  const absent = addonAbsence();
  if (choice !== 'auto' || absent === undefined) return undefined;
  return `echoplex: using the portable engine; the native one is not available: ${absent}`;
}

/** What was asked for: `requested`, else ECHOPLEX_ENGINE, else `auto`. */
export function requestedEngine(requested?: EngineChoice): EngineChoice {
  return requested === undefined ? defaultChoice() : parseEngineChoice(requested, 'engine');
}

function defaultChoice(): EngineChoice {
  const value = process.env[ENGINE_VARIABLE];
  return value === undefined || value === '' ? 'auto' : parseEngineChoice(value, ENGINE_VARIABLE);
}
