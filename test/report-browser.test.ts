// The bench's HTML report, rendered by a real headless Chromium (Debian's package) when present, and looked at.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { runBench } from '../src/bench/loadgen.js';
import { renderHtmlReport } from '../src/bench/html.js';
import type { BenchResult } from '../src/bench/settings.js';
import { CHROMIUM, launchChromium } from './helpers/browser.js';
import { skipUnless, suite } from './helpers/peers.js';
import { startServer } from './helpers/sockets.js';
import { withTimeout } from './helpers/timeout.js';

/** Opens the report offline; returns the charts drawn, the page's errors, and whether each canvas has ink on it. */
async function look(
  result: BenchResult,
  dir: string,
): Promise<{ charts: number; errors: string[]; inked: boolean[]; text: string; screenshot: Buffer }> {
  const file = join(dir, 'report.html');
  writeFileSync(file, renderHtmlReport(result));
  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('console', (message) => {
      if (message.type() === 'error') errors.push(message.text());
    });
    // Nothing may be fetched: the file carries everything it shows.
    await page.route(/^(?!file:)/, (route) => {
      errors.push(`fetched ${route.request().url()}`);
      return route.abort();
    });
    await page.goto(`file://${file}`);
    // Page-side code as text: the tests are compiled without the DOM's types.
    await page.waitForFunction('document.body.dataset.charts !== undefined', undefined, { timeout: 10_000 });
    const charts = Number(await page.evaluate<string>('document.body.dataset.charts'));
    // A drawn chart has pixels of its series' colours (blue, amber, red), not only grey and white.
    const inked = await page.evaluate<boolean[]>(`[...document.querySelectorAll('.uplot canvas')].map((c) => {
      const pixels = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let coloured = 0;
      for (let i = 0; i < pixels.length; i += 4) if (pixels[i + 3] > 0 && Math.abs(pixels[i] - pixels[i + 2]) > 60) coloured++;
      return coloured > 50;
    })`);
    const text = await page.evaluate<string>('document.body.innerText');
    const screenshot = await page.screenshot({ fullPage: true });
    return { charts, errors, inked, text, screenshot };
  } finally {
    await browser.close();
  }
}

suite('bench HTML report in Chromium', skipUnless(CHROMIUM, 'chromium', 'chromium'), () => {
  it('draws throughput, errors and latency over time and by percentile from a real run, with no network', async () => {
    const running = await startServer();
    const dir = mkdtempSync(join(tmpdir(), 'echoplex-report-'));
    try {
      const result = await withTimeout(
        runBench({
          port: running.port,
          connections: 4,
          durationSeconds: 2,
          warmupSeconds: 0,
          thresholds: ['p99<10s', 'rate>=1000000000'],
        }),
        30_000,
        'bench',
      );
      const seen = await withTimeout(look(result, dir), 60_000, 'Chromium');
      assert.deepEqual(seen.errors, []);
      assert.equal(seen.charts, 3, 'throughput, latency over time, latency by percentile');
      assert.ok(
        seen.inked.length >= 3 && seen.inked.every(Boolean),
        `every chart drawn: ${JSON.stringify(seen.inked)}`,
      );
      assert.match(seen.text, /PASS: every reply verified/);
      assert.match(seen.text, /p99<10s\s+held/);
      assert.match(seen.text, /rate>=1000000000\s+BROKEN: measured [\d.]+ msg\/s/);
      assert.match(seen.text, /messages \/ s/, 'a legend below the chart');
      assert.ok(seen.screenshot.length > 10_000, 'a screenshot of a page with charts');
      writeFileSync(join(tmpdir(), 'echoplex-report-test.png'), seen.screenshot);
    } finally {
      await running.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('draws the steps of a rate search on a logarithmic rate axis, with their table', async () => {
    const running = await startServer();
    const dir = mkdtempSync(join(tmpdir(), 'echoplex-report-'));
    try {
      const { runRamp } = await import('../src/bench/capacity.js');
      const result = await withTimeout(
        runRamp(
          { port: running.port, connections: 4, durationSeconds: 0.5, warmupSeconds: 0 },
          { from: 200, to: 20000, steps: 3 },
          (options) => runBench(options),
        ),
        60_000,
        'ramp',
      );
      const seen = await withTimeout(look(result, dir), 60_000, 'Chromium');
      assert.deepEqual(seen.errors, []);
      assert.equal(seen.charts, 4);
      assert.ok(seen.inked.every(Boolean), JSON.stringify(seen.inked));
      assert.match(seen.text, /offered msg\/s/, "the rate chart's legend");
      for (const rate of ['200', '10,100', '20,000'])
        assert.match(seen.text, new RegExp(`^${rate}\\s`, 'm'), `a row for ${rate}`);
    } finally {
      await running.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
