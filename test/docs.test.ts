// The docs' programs compile as shown: every TypeScript block that begins with an import is
// written out and type-checked with the package's published types, as a user pasting it would.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { findProgram, skipUnless } from './helpers/peers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// Inside the package, so that `import ... from 'echoplex'` resolves to dist/ by the exports map.
const OUT = join(ROOT, 'test', '.doc-programs');
const DOCS = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)];

/** The ```ts blocks of a Markdown file that are whole programs (their first line is an import). */
export function programsIn(markdown: string): string[] {
  const blocks = [...markdown.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((match) => match[1]!);
  return blocks.filter((block) => block.trimStart().startsWith('import '));
}

describe('programs in the docs', () => {
  it('finds the programs it is meant to check (so the check below can fail)', () => {
    const found = DOCS.flatMap((doc) => programsIn(readFileSync(join(ROOT, doc), 'utf8')));
    assert.ok(found.length >= 2, `only ${found.length} programs found`);
    assert.ok(found.some((program) => program.includes("from 'echoplex/selectors'")));
  });

  it('each compiles under tsc --strict with only what it imports, as pasted', () => {
    rmSync(OUT, { recursive: true, force: true });
    mkdirSync(OUT, { recursive: true });
    const files: string[] = [];
    for (const doc of DOCS) {
      programsIn(readFileSync(join(ROOT, doc), 'utf8')).forEach((program, index) => {
        const file = join(OUT, `${doc.replace(/[/.]/g, '-')}-${index + 1}.ts`);
        writeFileSync(file, program);
        files.push(file);
      });
    }
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    // No DOM library: a `print` that resolves to window.print must not slip through.
    const args = ['--noEmit', '--strict', '--noUncheckedIndexedAccess', '--target', 'ES2022', '--lib', 'ES2022,ESNext.Disposable', '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--types', 'node', '--skipLibCheck', ...files];
    const result = spawnSync(process.execPath, [tsc, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    rmSync(OUT, { recursive: true, force: true });
    assert.equal(result.status, 0, result.stdout + result.stderr);
  });
});

const HAPROXY = findProgram(['haproxy', '/usr/sbin/haproxy'], ['-v']);

/** Whether nothing listens on these loopback ports (the recipe uses fixed ones, as a person would). */
async function portsFree(ports: number[]): Promise<boolean> {
  for (const port of ports) {
    const free = await new Promise<boolean>((resolve) => {
      const probe = net.createServer();
      probe.once('error', () => resolve(false));
      probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
    });
    if (!free) return false;
  }
  return true;
}

describe('recipes in the docs', () => {
  it('the HAProxy recipe in docs/deploy.md runs as pasted: a verified bench through HAProxy, then everything stopped', { skip: skipUnless(HAPROXY, 'haproxy', 'haproxy') }, async (t) => {
    const guide = readFileSync(join(ROOT, 'docs', 'deploy.md'), 'utf8');
    const recipe = /## Behind HAProxy[\s\S]*?^```sh\n([\s\S]*?)^```$/m.exec(guide)?.[1];
    assert.ok(recipe !== undefined, 'the recipe block is there');
    assert.doesNotMatch(recipe, /^echoplex /m, 'no bare echoplex, which is not on PATH in a clone');
    if (!(await portsFree([7000, 7001, 7002]))) return t.skip('ports 7000-7002 are in use here');
    const env = { ...process.env, PATH: `${process.env['PATH']}:/usr/sbin` };
    const result = spawnSync('bash', ['-c', recipe], { cwd: ROOT, encoding: 'utf8', timeout: 60_000, env });
    assert.equal(result.status, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /^errors {6}0$/m);
    assert.match(result.stdout, /^mismatched {2}0 bytes$/m);
    assert.match(result.stdout, /^messages .*msg\/s/m);
    // Everything it started is gone: the ports are free again.
    const deadline = Date.now() + 5000;
    while (!(await portsFree([7000, 7001, 7002])) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    assert.ok(await portsFree([7000, 7001, 7002]), 'the recipe left something listening');
  });
});
