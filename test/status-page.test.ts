// The status page on the metrics port, in a real headless Chromium driven by playwright-core:
// its numbers move while a bench runs against the server.

import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { Page } from 'playwright-core';
import { runBench } from '../src/bench/index.js';
import { serverMetricsSource, startMetricsServer } from '../src/ops/metrics.js';
import { CHROMIUM, launchChromium } from './helpers/browser.js';
import { skipUnless, suite } from './helpers/peers.js';
import { startServer } from './helpers/sockets.js';
import { withTimeout } from './helpers/timeout.js';

/** Waits until the element's text matches (the page updates it from the event stream). */
async function waitForText(page: Page, selector: string, pattern: RegExp): Promise<void> {
  await page.locator(selector, { hasText: pattern }).waitFor({ timeout: 10_000 });
}

const SCREENSHOT = process.env['ECHOPLEX_SCREENSHOT'];

suite('status page in Chromium', skipUnless(CHROMIUM, 'chromium', 'chromium'), () => {
  it('shows connections, throughput and errors that change while a bench runs', async () => {
    const running = await startServer();
    const metrics = await startMetricsServer(serverMetricsSource(running.server), { port: 0 });
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const external: string[] = [];
      page.on('request', (request) => {
        if (!request.url().startsWith(metrics.url)) external.push(request.url());
      });
      await page.goto(`${metrics.url}/`);
      await waitForText(page, '#state', /^live$/);
      const idle = await page.textContent('#connections');
      assert.equal(idle, '0');
      // Nothing has gone wrong: the errors chart's top says 0, not the scale's 1.
      await waitForText(page, '#max-errors', /top: 0\.0\/s/);
      assert.equal(await page.textContent('#resets'), '0');
      // Labels say what is counted: raw TCP has bytes, not messages, and the span is the charts'.
      assert.equal(await page.textContent('#messages-label'), 'messages /s');
      assert.match((await page.getAttribute('#messages', 'title')) ?? '', /WebSocket messages/);
      assert.match(
        (await page.textContent('.sub')) ?? '',
        /each chart shows the last minute, growing to the last five/,
      );

      const bench = runBench({ port: running.port, connections: 7, durationSeconds: 4, warmupSeconds: 0 });
      await waitForText(page, '#connections', /^7$/);
      await waitForText(page, '#throughput', /\d+(\.\d)? (KB|MB|GB)/);
      // Two rates make a line: the throughput chart draws once two seconds of load are in.
      await page.waitForSelector('#chart-throughput polyline', { timeout: 10_000 });
      const messagesShown = await page.textContent('#throughput');
      assert.equal(await page.locator('#chart-connections polyline').count(), 1, 'the connections chart has a line');
      if (SCREENSHOT) await page.screenshot({ path: SCREENSHOT, fullPage: true });
      const result = await withTimeout(bench, 15_000, 'the bench');
      assert.equal(result.errors, 0);
      assert.ok(messagesShown);
      await waitForText(page, '#connections', /^0$/);
      assert.deepEqual(external, [], 'the page loads nothing from elsewhere');
    } finally {
      await browser.close();
      await metrics.close();
      await running.close();
    }
  });
});
