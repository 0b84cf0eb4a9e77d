// Choosing an engine: one option, one variable, one rule, seen from the CLI and the library.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createEchoServer, UsageError } from '../src/index.js';
import { addonAbsence } from '../src/native/addon.js';
import { runCli, startServe } from './helpers/cli.js';
import { skipUnless } from './helpers/peers.js';
import { listeningSockets } from './helpers/sockets.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const nativeSkip = skipUnless(
  addonAbsence() === undefined ? 'built' : undefined,
  'the native engine',
  'g++ make (then npm install)',
);

describe('engine choice', () => {
  it('importing echoplex, echoplex/selectors and echoplex/bench under --pending-deprecation prints nothing', () => {
    for (const entry of ['echoplex', 'echoplex/selectors', 'echoplex/bench']) {
      const result = spawnSync(
        process.execPath,
        [
          '--pending-deprecation',
          '--throw-deprecation',
          '--input-type=module',
          '-e',
          `await import(${JSON.stringify(entry)})`,
        ],
        { encoding: 'utf8', cwd: ROOT },
      );
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stderr, '', entry);
      assert.equal(result.stdout, '', entry);
    }
  });

  it('the listening line names the engine serving plain TCP', { skip: nativeSkip }, async () => {
    for (const [args, engine] of [
      [[], 'native'],
      [['--engine', 'portable'], 'portable'],
      [['--framing', 'line'], 'portable'],
    ] as const) {
      const server = await startServe([...args, '--quiet'], { env: { ECHOPLEX_ENGINE: 'auto' } });
      try {
        assert.match(server.stdout(), new RegExp(`, ${engine} engine\\)\\n$`), args.join(' '));
      } finally {
        await server.stop();
      }
    }
  });

  it('ECHOPLEX_ENGINE sets the default, and --engine wins over it', { skip: nativeSkip }, async () => {
    const server = await startServe(['--quiet'], { env: { ECHOPLEX_ENGINE: 'portable' } });
    await server.stop();
    assert.match(server.stdout(), /, portable engine\)/);
    const overridden = await startServe(['--quiet', '--engine', 'native'], { env: { ECHOPLEX_ENGINE: 'portable' } });
    await overridden.stop();
    assert.match(overridden.stdout(), /, native engine\)/);
  });

  it('an addon built from older sources is not used: auto falls back, saying to rebuild it', async () => {
    const copy = mkdtempSync(join(tmpdir(), 'echoplex-stale-addon-'));
    try {
      cpSync(join(ROOT, 'dist'), join(copy, 'dist'), { recursive: true });
      cpSync(join(ROOT, 'package.json'), join(copy, 'package.json'));
      symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'));
      // A build whose exports are some other version's: node-gyp-build finds the file, and
      // loading it gives what an addon of interface 1 exported.
      mkdirSync(join(copy, 'build', 'Release'), { recursive: true });
      writeFileSync(join(copy, 'build', 'Release', 'echoplex.node'), '');
      const script = `
        import { createRequire } from 'node:module';
        const require = createRequire(import.meta.url);
        const Module = require('node:module');
        const original = Module._load;
        // node-gyp-build loads build/Release/*.node; hand it the stale stand-in instead.
        Module._load = function (request, ...rest) { return request.endsWith('echoplex.node') ? { interfaceVersion: 1 } : original.call(this, request, ...rest); };
        const { fallbackNotice, chooseEngine } = await import(${JSON.stringify(join(copy, 'dist', 'native', 'engine.js'))});
        process.stdout.write(String(chooseEngine('auto')) + ' / ' + fallbackNotice('auto'));`;
      const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        encoding: 'utf8',
        cwd: copy,
      });
      assert.equal(result.status, 0, result.stderr);
      assert.match(result.stdout, /^portable \/ /);
      assert.match(
        result.stdout,
        /the built addon is out of date \(interface 1, expected 7\): run npm run build:native/,
      );
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });

  it('an unknown engine is a usage error (exit 2), from the flag or the variable', async () => {
    const flag = await runCli(['serve', '--port', '0', '--engine', 'turbo']);
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /turbo/);
    const variable = await runCli(['serve', '--port', '0'], { env: { ECHOPLEX_ENGINE: 'turbo' } });
    assert.equal(variable.code, 2);
    assert.match(variable.stderr, /ECHOPLEX_ENGINE/);
    assert.throws(() => createEchoServer({ port: 0, engine: 'turbo' as 'native' }), UsageError);
  });

  describe('without the addon (a copy of the package with no build)', () => {
    let copy: string;
    before(() => {
      copy = mkdtempSync(join(tmpdir(), 'echoplex-no-addon-'));
      cpSync(join(ROOT, 'dist'), join(copy, 'dist'), { recursive: true });
      cpSync(join(ROOT, 'package.json'), join(copy, 'package.json'));
      symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'));
    });
    after(() => rmSync(copy, { recursive: true, force: true }));

    it('falls back to the portable engine with a one-line notice, and still echoes', async () => {
      const server = await startServe([], {
        command: [process.execPath, join(copy, 'dist/cli/main.js')],
        env: { ECHOPLEX_ENGINE: 'auto' },
      });
      try {
        const reply = await runCli(['client', '--port', String(server.port)], { input: 'still here\n' });
        assert.equal(reply.stdout, 'still here\n');
      } finally {
        await server.stop();
      }
      assert.match(server.stdout(), /, portable engine\)/);
      const notices = server
        .stderr()
        .split('\n')
        .filter((line) => line.includes('using the portable engine; the native one is not available'));
      assert.equal(notices.length, 1, server.stderr());
      assert.match(
        notices[0]!,
        /no prebuilt addon for this platform, and none compiled here: with a C compiler and make/,
      );
    });

    it('--workers shares each port through the cluster primary, which hands connections over', async () => {
      const server = await startServe(['--workers', '2', '--quiet'], {
        command: [process.execPath, join(copy, 'dist/cli/main.js')],
        env: { ECHOPLEX_ENGINE: 'auto' },
      });
      try {
        for (let i = 0; i < 4; i++) {
          const reply = await runCli(['client', '--port', String(server.port)], { input: `hello ${i}\n` });
          assert.equal(reply.stdout, `hello ${i}\n`);
        }
        assert.match(server.stdout(), /, portable engine, 2 workers\)/);
        assert.equal(listeningSockets(server.port), 1, "the primary's socket alone listens");
      } finally {
        await server.stop();
      }
    });

    it('--engine native is a usage error (exit 2) that says how to build it', async () => {
      const result = await runCli(['serve', '--port', '0', '--engine', 'native'], {
        cli: join(copy, 'dist/cli/main.js'),
      });
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, /native engine is not available.*npm rebuild echoplex/);
    });
  });
});
