// The package's version, read once from its package.json (two levels above src/core/ and dist/core/ alike).

import { readFileSync } from 'node:fs';

/** The `version` field of echoplex's package.json. */
export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
