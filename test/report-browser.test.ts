// The bench's HTML report, rendered by a real headless Chromium (Debian's package) when present.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { runBench } from '../src/bench/loadgen.js';
import { renderHtmlReport } from '../src/bench/html.js';
import { CHROMIUM, OFFLINE_FLAGS } from './helpers/browser.js';
import { skipUnless, suite } from './helpers/peers.js';
import { startServer } from './helpers/sockets.js';


suite('bench HTML report in Chromium', skipUnless(CHROMIUM, 'chromium', 'chromium'), () => {
  it('renders both charts and the verdict from a real run, with no network', async () => {
    const running = await startServer();
    const dir = mkdtempSync(join(tmpdir(), 'echoplex-report-'));
    try {
      const result = await runBench({ port: running.port, connections: 4, durationSeconds: 2, warmupSeconds: 0 });
      const file = join(dir, 'report.html');
      writeFileSync(file, renderHtmlReport(result));
      const rendered = spawnSync(
        CHROMIUM!,
        ['--headless', ...OFFLINE_FLAGS, `--user-data-dir=${join(dir, 'profile')}`, '--dump-dom', `file://${file}`],
        { timeout: 60_000, encoding: 'utf8' },
      );
      assert.equal(rendered.status, 0, rendered.stderr);
      const dom = rendered.stdout;
      assert.equal((dom.match(/<svg/g) ?? []).length, 2, 'two charts rendered');
      assert.match(dom, /<polyline class="series" points="[\d.,\s]+"/);
      assert.match(dom, /PASS: every byte verified/);
      assert.equal((dom.match(/<circle/g) ?? []).length >= result.timeline.length, true);
    } finally {
      await running.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
