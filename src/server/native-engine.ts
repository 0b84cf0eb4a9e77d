// The optional native engine (native/echo_engine.c): loaded when it was built, skipped otherwise.
//
// It is compiled by `npm install` (node-gyp, with the C compiler Node's addons use); where that
// failed or is not wanted (ECHOPLEX_NO_NATIVE=1), connections run on the TypeScript paths,
// which behave the same and cost more CPU per message.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

/** An engine's own opaque object; one per server, so that counters stay per server. */
export type EngineHandle = { readonly __brand: 'echoplex.native.engine' };
/** One adopted connection's opaque object; usable (a no-op once closed) for as long as it is referenced. */
export type NativeHandle = { readonly __brand: 'echoplex.native.connection' };

export interface NativeEngineBinding {
  /** `onClose(token, status)` runs once per adopted connection, after it closed; status is 0 or a negative libuv error. */
  createEngine(upper: boolean, maxBuffered: number, onClose: (token: object, status: number) => void): EngineHandle;
  /** Takes over a duplicate of the connected TCP socket `fd` and echoes on it; the caller closes its own. Throws (code EMFILE, ...) if it cannot. */
  adopt(engine: EngineHandle, fd: number, token: object): NativeHandle;
  /** Sends every pending byte, then FIN. */
  finish(connection: NativeHandle): void;
  /** Closes at once, dropping pending bytes. */
  destroy(connection: NativeHandle): void;
  /** Fills `out` with bytes received, bytes sent, bytes pending. */
  counters(connection: NativeHandle, out: Float64Array): void;
  /** Fills `out` with the engine's bytes received, bytes sent, backpressure pauses. */
  totals(engine: EngineHandle, out: Float64Array): void;
}

const FUNCTIONS = ['createEngine', 'adopt', 'finish', 'destroy', 'counters', 'totals'] as const;

function load(): NativeEngineBinding | undefined {
  if (process.env['ECHOPLEX_NO_NATIVE']) return undefined;
  // Adopting a descriptor is a Unix notion; elsewhere the TypeScript paths serve.
  if (process.platform === 'win32') return undefined;
  const path = new URL('../../build/Release/echo_engine.node', import.meta.url);
  if (!existsSync(path)) return undefined;
  try {
    const binding = createRequire(import.meta.url)(path.pathname) as Partial<NativeEngineBinding>;
    return FUNCTIONS.every((name) => typeof binding[name] === 'function') ? (binding as NativeEngineBinding) : undefined;
  } catch {
    // Built for another Node or platform: the TypeScript paths serve instead.
    return undefined;
  }
}

/** The native engine, or undefined where it was not built (or is turned off). */
export const nativeEngine: NativeEngineBinding | undefined = load();
