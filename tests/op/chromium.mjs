#!/usr/bin/env node
// The end user in a real browser, once: headless Chromium (Debian's `chromium`, driven by
// playwright-core) opens the authorization URL, completes node-oidc-provider's login and
// consent forms, lands on the gateway's callback page and saves a screenshot of it.
//
//   node tests/op/chromium.mjs <url> <screenshot.png> [--callback-prefix URL]
//
// Prints one JSON line: {url, title, text} of the page it landed on.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [url, shot] = process.argv.slice(2);
if (!url || !shot) {
  process.stderr.write('usage: node chromium.mjs <url> <screenshot.png>\n');
  process.exit(2);
}
const profile = mkdtempSync(join(tmpdir(), 'bridge-chromium-'));
// A fresh profile directory (playwright passes it as --user-data-dir).
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  viewport: { width: 640, height: 480 },
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(20000);
  const opOrigin = new URL(url).origin;
  await page.goto(url);
  // The OP's login form, then its consent form (same layout, one button).
  await page.fill('input[name="login"]', 'alice');
  await page.fill('input[name="password"]', 'any');
  await page.click('button[type="submit"]');
  await page.waitForURL((u) => u.origin !== opOrigin || u.pathname.startsWith('/interaction/'));
  if (new URL(page.url()).origin === opOrigin) {
    await page.click('button[type="submit"]');
    await page.waitForURL((u) => u.origin !== opOrigin);
  }
  await page.waitForLoadState('load');
  await page.screenshot({ path: shot });
  const title = await page.title();
  const text = await page.innerText('main');
  process.stdout.write(`${JSON.stringify({ url: page.url(), title, text })}\n`);
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
