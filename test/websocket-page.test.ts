// The echo page a --ws port serves, in a real headless Chromium driven by playwright-core:
// a person's check by hand, typing text and binary messages and seeing the echoes.

import assert from 'node:assert/strict';
import { it } from 'node:test';
import { CHROMIUM, launchChromium } from './helpers/browser.js';
import { skipUnless, suite } from './helpers/peers.js';
import { startServer } from './helpers/sockets.js';
import { waitUntil } from './helpers/timeout.js';

suite('WebSocket echo page in Chromium', skipUnless(CHROMIUM, 'chromium', 'chromium'), () => {
  it('connects back, sends text and binary messages, and shows each echo', async () => {
    const running = await startServer({ websocket: true, transform: 'upper' });
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const origin = `http://127.0.0.1:${running.port}`;
      const external: string[] = [];
      page.on('request', (request) => {
        if (!request.url().startsWith(origin)) external.push(request.url());
      });
      const consoleErrors: string[] = [];
      page.on('console', (message) => {
        if (message.type() === 'error') consoleErrors.push(message.text());
      });
      await page.goto(`${origin}/room`);
      await page.locator('#status', { hasText: /^open$/ }).waitFor({ timeout: 10_000 });
      assert.equal(await page.textContent('#url'), `ws://127.0.0.1:${running.port}/room`);

      await page.fill('#message', 'hello from chromium');
      await page.click('#send');
      await page.locator('#log .echo', { hasText: 'text: HELLO FROM CHROMIUM' }).waitFor({ timeout: 10_000 });

      await page.check('#binary');
      await page.fill('#message', 'bytes');
      await page.press('#message', 'Enter');
      await page.locator('#log .echo', { hasText: 'binary (5 bytes): BYTES' }).waitFor({ timeout: 10_000 });
      // Sent and echoed lines are told apart in words, and a long line stays in the box.
      const marker = (kind: string) =>
        page.evaluate<string>(`getComputedStyle(document.querySelector('#log .${kind}'), '::before').content`);
      assert.match(await marker('sent'), /sent:/);
      assert.match(await marker('echo'), /echoed:/);
      await page.uncheck('#binary');
      await page.fill('#message', 'x'.repeat(600));
      await page.click('#send');
      await page.locator('#log .echo', { hasText: 'X'.repeat(600) }).waitFor({ timeout: 10_000 });
      const overflow = await page.evaluate<number>(
        `(() => { const log = document.getElementById('log'); return log.scrollWidth - log.clientWidth; })()`,
      );
      assert.ok(overflow <= 0, `a long line runs ${overflow}px out of the log`);

      assert.equal(running.server.stats().messages.ws, 3);
      assert.deepEqual(external, [], 'the page loads nothing from elsewhere');
      assert.deepEqual(consoleErrors, [], 'no errors (a CSP violation would be one)');
      await page.close();
      await waitUntil(() => running.server.stats().connectionsActive === 0, 5000, 'the browser connections to close');
    } finally {
      await browser.close();
      await running.close();
    }
  });
});
