// The native addon (native/*.c): a prebuilt binary from the package, or one compiled here; loaded once.

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
/** The package root: node-gyp-build looks in its `prebuilds/` and `build/Release/`. */
const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

type Addon = Record<string, unknown>;

/** What native/addon.c's INTERFACE_VERSION must say: the exports this file and its users expect. */
const INTERFACE_VERSION = 7;

let addon: Addon | undefined;
let absence: string | undefined;

function load(): void {
  if (addon !== undefined || absence !== undefined) return;
  // Adopting a descriptor is a Unix notion; elsewhere the portable engine serves.
  if (process.platform === 'win32') {
    absence = 'the native engine runs on Unix systems only';
    return;
  }
  try {
    const nodeGypBuild = require('node-gyp-build') as (root: string) => Addon;
    const loaded = nodeGypBuild(PACKAGE_ROOT);
    if (loaded['interfaceVersion'] !== INTERFACE_VERSION) {
      absence = `the built addon is out of date (interface ${String(loaded['interfaceVersion'] ?? 1)}, expected ${INTERFACE_VERSION}): run npm run build:native`;
      return;
    }
    addon = loaded;
  } catch (err) {
    // No prebuilt binary for this platform, and none compiled: the addon is written for Linux
    // (epoll, accept4, recvmmsg), and the install compiles it only where cc and make are found.
    const message = err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err);
    if (process.platform !== 'linux')
      absence = `the native engine is built for Linux only (this is ${process.platform})`;
    else if (message.startsWith('No native build was found'))
      absence =
        'no prebuilt addon for this platform, and none compiled here: with a C compiler and make, run npm rebuild echoplex (npm run build:native in a clone)';
    else absence = `${message}: npm rebuild echoplex (npm run build:native in a clone) rebuilds it`;
  }
}

/** The addon's exports, or undefined where it was neither shipped for this platform nor built. */
export function loadAddon(): Addon | undefined {
  load();
  return addon;
}

/** Why the addon is not there (undefined when it is). */
export function addonAbsence(): string | undefined {
  load();
  return absence;
}

/** The addon's functions as `T`, or undefined where it is absent or lacks one of `functions`. */
export function addonBinding<T>(functions: readonly string[]): T | undefined {
  const binding = loadAddon();
  if (binding === undefined) return undefined;
  return functions.every((name) => typeof binding[name] === 'function') ? (binding as T) : undefined;
}

/** The platform values the addon was compiled with (socket options, errno values). */
export interface PlatformConstants {
  readonly EAGAIN: number;
  readonly EBADF: number;
  readonly SOL_SOCKET: number;
  readonly SO_REUSEADDR: number;
  readonly SO_TYPE: number;
  readonly SO_ERROR: number;
  readonly SO_KEEPALIVE: number;
  readonly IPPROTO_TCP: number;
  readonly TCP_NODELAY: number;
  readonly AF_UNIX: number;
  readonly AF_INET: number;
  readonly AF_INET6: number;
  readonly SOCK_STREAM: number;
  /** A native connection's id modulo this is its slot's index (native/glue.h). */
  readonly SLOT_INDEX_LIMIT: number;
}

/** The addon's constants, or undefined where the addon is absent. */
export function platformConstants(): PlatformConstants | undefined {
  const constants = loadAddon()?.['constants'];
  return typeof constants === 'object' && constants !== null ? (constants as PlatformConstants) : undefined;
}
