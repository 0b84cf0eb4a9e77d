// The optional native addon (native/*.c, built by `npm install`): loaded once, where it was built.
//
// node-gyp compiles it with the C compiler Node's addons use; where that failed or is not wanted
// (ECHOPLEX_NO_NATIVE=1), every connection runs on the TypeScript paths, which behave the same
// and cost more CPU per message.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

let addon: Record<string, unknown> | null | undefined;

function load(): Record<string, unknown> | null {
  if (process.env['ECHOPLEX_NO_NATIVE']) return null;
  // Adopting a descriptor is a Unix notion; elsewhere the TypeScript paths serve.
  if (process.platform === 'win32') return null;
  const path = new URL('../../build/Release/echoplex.node', import.meta.url);
  if (!existsSync(path)) return null;
  try {
    return createRequire(import.meta.url)(path.pathname) as Record<string, unknown>;
  } catch {
    // Built for another Node or platform: the TypeScript paths serve instead.
    return null;
  }
}

/** The addon's functions as `T`, or undefined where it is absent, turned off, or lacks one of `functions`. */
export function addonBinding<T>(functions: readonly string[]): T | undefined {
  if (addon === undefined) addon = load();
  if (addon === null) return undefined;
  const binding = addon;
  return functions.every((name) => typeof binding[name] === 'function') ? (binding as T) : undefined;
}
