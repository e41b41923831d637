// Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by playwright-core
// (no browser download), plus screenshots into docs/screenshots/.

import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { REPO } from "./server.mjs";

export const CHROMIUM = process.env.NIGHTMARKET_TEST_CHROMIUM || "/usr/bin/chromium";
export const SHOTS = join(REPO, "docs", "screenshots");
export const PHONE = { width: 360, height: 780 };
export const DESKTOP = { width: 1280, height: 900 };

export async function launch() {
  let chromium;
  try {
    ({ chromium } = await import("playwright-core"));
  } catch {
    throw new Error("playwright-core is missing: run `npm ci` in web/");
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/**
 * A fresh browser context (its own cookies: one person) with one page. Page errors and
 * failed assertions in the page are collected in `errors`.
 * @param {import("playwright-core").Browser} browser @param {{width: number, height: number}} viewport
 */
export async function person(browser, viewport) {
  const context = await browser.newContext({ viewport, locale: "vi-VN", timezoneId: "Asia/Ho_Chi_Minh", acceptDownloads: true });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  return { context, page, errors };
}

/** Saves a screenshot of the whole page as docs/screenshots/<name>.png. */
export async function shot(page, name) {
  await mkdir(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** The page is no wider than its viewport (nothing to scroll sideways at 360 px). */
export async function fitsWidth(page) {
  return page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1);
}
