// The package as published: packed with its prebuilt addon, installed into a new project on a
// machine with no C compiler or make on PATH, it serves on the native engine.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { withTimeout } from './helpers/timeout.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const supported = process.platform === 'linux' && process.arch === 'x64';

/** A PATH holding node, npm, npx and sh only: no cc, gcc, g++, make or python. */
function bareBin(dir: string): string {
  mkdirSync(dir);
  for (const program of ['node', 'npm', 'npx', 'sh']) {
    const found = spawnSync('sh', ['-c', `command -v ${program}`], { encoding: 'utf8' }).stdout.trim();
    symlinkSync(found, join(dir, program));
  }
  return dir;
}

describe('the packed package', { skip: !supported && 'prebuilt binaries are made for linux-x64' }, () => {
  let work: string;
  let tarball: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'echoplex-package-'));
    // Packed from a copy, so that building the prebuilt addon leaves this checkout's build alone.
    const source = join(work, 'source');
    mkdirSync(source);
    for (const entry of ['package.json', 'tsconfig.json', 'binding.gyp', 'README.md', 'src', 'native'])
      cpSync(join(ROOT, entry), join(source, entry), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(source, 'node_modules'));
    const packed = spawnSync('npm', ['pack', '--pack-destination', work], {
      cwd: source,
      encoding: 'utf8',
      timeout: 240_000,
    });
    assert.equal(packed.status, 0, packed.stdout + packed.stderr);
    tarball = join(
      work,
      readdirSync(work).find((name) => name.endsWith('.tgz'))!,
    );
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  it('carries the addon prebuilt for linux-x64, and no build directory', () => {
    const listing = spawnSync('tar', ['tzf', tarball], { encoding: 'utf8' }).stdout.split('\n');
    assert.ok(listing.includes('package/prebuilds/linux-x64/echoplex.node'), listing.join('\n'));
    assert.ok(!listing.some((path) => path.startsWith('package/build/')));
  });

  it('installed with no C compiler or make on PATH, `npx echoplex serve` runs on the native engine', async () => {
    const app = join(work, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    const env = { HOME: process.env['HOME'] ?? work, PATH: bareBin(join(work, 'bin')) };
    assert.notEqual(
      spawnSync('sh', ['-c', 'command -v cc || command -v gcc || command -v make'], { env, encoding: 'utf8' }).status,
      0,
      'a compiler is reachable',
    );
    const installed = spawnSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], {
      cwd: app,
      env,
      encoding: 'utf8',
      timeout: 180_000,
    });
    assert.equal(installed.status, 0, installed.stdout + installed.stderr);
    const server = spawn('npx', ['echoplex', 'serve', '--port', '0', '--quiet'], {
      cwd: app,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let output = '';
    server.stdout!.setEncoding('utf8').on('data', (text: string) => (output += text));
    server.stderr!.setEncoding('utf8').on('data', (text: string) => (output += text));
    try {
      await withTimeout(
        new Promise<void>((resolve) => server.stdout!.on('data', () => output.includes('listening on') && resolve())),
        30_000,
        `the installed server to listen (${output})`,
      );
      assert.match(output, /echoplex listening on tcp:\/\/127\.0\.0\.1:\d+ \(transform: echo, native engine\)/);
      assert.doesNotMatch(output, /portable engine/);
    } finally {
      // npx runs the server under a shell: end the whole group.
      process.kill(-server.pid!, 'SIGKILL');
    }
  });
});
