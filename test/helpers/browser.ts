// Debian's Chromium for the browser tests: found once, started kept off the (closed) network.

import { chromium, type Browser } from 'playwright-core';
import { findProgram } from './peers.js';

export const CHROMIUM = findProgram(['/usr/bin/chromium', '/usr/bin/chromium-browser']);

/** Flags for a fresh profile on a machine without a network: no sync, updates or background fetches. */
export const OFFLINE_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Headless Chromium through playwright-core (which makes the fresh profile); only where CHROMIUM was found. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM!, timeout: 30_000, args: OFFLINE_FLAGS });
}
