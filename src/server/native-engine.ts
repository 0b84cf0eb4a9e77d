// The server's native engine (native/echo_engine.c): its functions, where the addon was built.

import { addonBinding } from '../native/addon.js';

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

/** The native engine, or undefined where it was not built (or is turned off). */
export const nativeEngine: NativeEngineBinding | undefined = addonBinding<NativeEngineBinding>(FUNCTIONS);
