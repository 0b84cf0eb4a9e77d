// Runs a suite once per server engine: the native one (where it was built) and the portable one.

import { after, before, describe, it } from 'node:test';
import type { EngineName } from '../../src/index.js';
import { addonAbsence } from '../../src/native/addon.js';
import { ENGINE_VARIABLE } from '../../src/native/engine.js';

/**
 * `describe(name, body)` for each engine, with ECHOPLEX_ENGINE set to it meanwhile, so that
 * servers made by the library and by the CLI (which inherits the variable) both take it. A run
 * that forces the portable engine (`npm run test:portable`) runs the portable pass only.
 */
export function forEachEngine(name: string, body: (engine: EngineName) => void): void {
  const forced = process.env[ENGINE_VARIABLE];
  for (const engine of ['native', 'portable'] as const) {
    const title = `${name} (${engine} engine)`;
    if (engine === 'native' && forced === 'portable') continue;
    if (engine === 'native' && addonAbsence() !== undefined) {
      it(title, { skip: `the native engine is not built: ${addonAbsence()}` });
      continue;
    }
    describe(title, () => {
      before(() => {
        process.env[ENGINE_VARIABLE] = engine;
      });
      after(() => {
        if (forced === undefined) delete process.env[ENGINE_VARIABLE];
        else process.env[ENGINE_VARIABLE] = forced;
      });
      body(engine);
    });
  }
}
