// The docs' programs compile as shown: every TypeScript block that begins with an import is
// written out and type-checked with the package's published types, as a user pasting it would.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { emptyStats } from '../src/server/stats.js';
import { runCli, startServe } from './helpers/cli.js';
import { findProgram, skipUnless } from './helpers/peers.js';
import { connectTo, readToEnd } from './helpers/sockets.js';
import { waitUntil } from './helpers/timeout.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// Inside the package, so that `import ... from 'echoplex'` resolves to dist/ by the exports map.
const OUT = join(ROOT, 'test', '.doc-programs');
const DOCS = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => `docs/${name}`),
];

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
    const args = [
      '--noEmit',
      '--strict',
      '--noUncheckedIndexedAccess',
      '--target',
      'ES2022',
      '--lib',
      'ES2022,ESNext.Disposable',
      '--module',
      'NodeNext',
      '--moduleResolution',
      'NodeNext',
      '--types',
      'node',
      '--skipLibCheck',
      ...files,
    ];
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
  it(
    'the HAProxy recipe in docs/deploy.md runs as pasted: a verified bench through HAProxy, then everything stopped',
    { skip: skipUnless(HAPROXY, 'haproxy', 'haproxy') },
    async (t) => {
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
      while (!(await portsFree([7000, 7001, 7002])) && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 100));
      assert.ok(await portsFree([7000, 7001, 7002]), 'the recipe left something listening');
    },
  );
});

describe('samples in the README match what the commands print', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');

  it('the ping sample has the lines a real ping prints, and its time adds up for 3 pings a second apart', async () => {
    const sample = /```\n\$ npx echoplex ping --port 1234 -c 3\n([\s\S]*?)```/.exec(readme)?.[1];
    assert.ok(sample, 'the ping sample');
    const serve = await startServe(['-q']);
    try {
      const run = await runCli(['ping', '--port', String(serve.port), '-c', '3', '-i', '0.1']);
      assert.equal(run.code, 0, run.stderr);
      for (const line of sample.split('\n').filter((l) => l !== '' && l !== '...')) {
        // The sample's numbers and port are one run's; the words and layout must be the command's.
        const shape = new RegExp(
          `^${line.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&').replace(/\d+(\\\.\d+)?/g, '\\d+(\\.\\d+)?')}$`,
          'm',
        );
        assert.match(run.stdout, shape, `README line: ${line}`);
      }
      const time = Number(/time (\d+) ms/.exec(sample)![1]);
      assert.ok(time >= 2000 && time < 2100, `3 pings 1 s apart take about 2 s, the sample says ${time} ms`);
    } finally {
      await serve.stop();
    }
  });

  it('the JSON log fields it names are the ones logged', async () => {
    const row = readme.split('\n').find((line) => line.startsWith('| `--log-format'));
    assert.ok(row);
    const named = [...row.matchAll(/`([a-zA-Z]+)`/g)]
      .map((m) => m[1]!)
      .filter((name) => !['json', 'text'].includes(name));
    const serve = await startServe(['--log-format', 'json']);
    try {
      const socket = await connectTo(serve.port);
      socket.end('hi');
      await readToEnd(socket);
      await waitUntil(
        () => serve.stdout().includes('"event":"close"') || serve.stderr().includes('"event":"close"'),
        5000,
        'the close event',
      );
      const events = (serve.stdout() + serve.stderr())
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      const logged = new Set(events.flatMap((event) => Object.keys(event)));
      for (const name of named)
        assert.ok(logged.has(name), `README names ${name}, which no event has: ${[...logged].join(', ')}`);
      const close = events.find((event) => event['event'] === 'close')!;
      for (const key of ['bytesReceived', 'bytesSent', 'reason'])
        assert.ok(named.includes(key), `README leaves out ${key}`);
      assert.equal(close['bytesReceived'], 2);
    } finally {
      await serve.stop();
    }
  });

  it('lists every kind of errors_total the server counts', () => {
    const list = /error kinds are ([^)]*)\)/.exec(readme.replace(/\n/g, ' '))?.[1] ?? '';
    for (const kind of Object.keys(emptyStats().errors))
      assert.match(list, new RegExp(`\`${kind}\``), `errors_total{kind="${kind}"} is not in the README`);
  });
});
