// Drives Debian's Chromium (headless) against a running gateway with Playwright.
//
// Launched by the Rust test `browser::cockpit_updates_live_in_chromium` (and the benchmark),
// which owns the database. Protocol over stdio, one line each:
//   script → test: READY {figures, firstFiguresMs, ...}   the page shows its first figures
//   test → script: EXPECT {"pendingT3": "2", ...}         after the test changed the database
//   script → test: DONE {figures, ...}                    the page shows them, no reload
//   script → test: FAIL <message>                         anything went wrong (exit code 1)
// Mode BENCH_RUNS=n: n fresh navigations, prints BENCH {samples:[ms…]} and exits.
//
// Environment: GATEWAY_URL, TOKEN, SCREENSHOT (PNG path), CHROMIUM (default /usr/bin/chromium).

import { launchChromium, nextLine, run } from './launch.mjs';

const url = process.env.GATEWAY_URL;
const token = process.env.TOKEN;
const screenshot = process.env.SCREENSHOT;
const benchRuns = Number(process.env.BENCH_RUNS || 0);
const FIGURES = ['pendingT3', 'pendingT7', 'sentToday', 'conversionRate'];

async function figuresOf(page) {
  return page.evaluate((names) => {
    const out = {};
    for (const n of names) out[n] = document.querySelector(`[data-figure="${n}"]`).textContent;
    for (const t of ['t3Trend', 't7Trend']) out[t] = document.querySelector(`[data-trend="${t}"]`).dataset.dir || '';
    out.status = document.querySelector('#status').dataset.state;
    return out;
  }, FIGURES);
}

async function firstFiguresMs(page) {
  return page.evaluate(() => {
    const mark = performance.getEntriesByName('followup:first-figures')[0];
    return mark ? mark.startTime : null; // ms after navigation start
  });
}

async function main() {
  const browser = await launchChromium();
  try {
    // A phone: the widget must be readable there.
    const context = await browser.newContext({
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
      locale: 'en-US',
    });
    const page = await context.newPage();
    const consoleErrors = [];
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('pageerror', (e) => consoleErrors.push(String(e)));

    if (benchRuns > 0) {
      // A desktop browser; between runs the page goes to about:blank, so every run is a full
      // document load (a second goto to the same URL would only change the fragment).
      await page.close();
      await context.close();
      const desktop = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US' });
      const samples = [];
      const breakdown = [];
      const p = await desktop.newPage();
      for (let i = 0; i < benchRuns; i++) {
        await p.goto('about:blank');
        await p.goto(`${url}/#token=${token}`, { waitUntil: 'commit' });
        await p.waitForSelector('body[data-ready="true"]', { timeout: 10000 });
        samples.push(await firstFiguresMs(p));
        breakdown.push(await p.evaluate(() => {
          const nav = performance.getEntriesByType('navigation')[0];
          const res = performance.getEntriesByType('resource').map((r) => [r.name.replace(location.origin, ''), Math.round(r.startTime), Math.round(r.responseEnd)]);
          const paint = Object.fromEntries(performance.getEntriesByType('paint').map((e) => [e.name, Math.round(e.startTime)]));
          return { responseEnd: Math.round(nav.responseEnd), domInteractive: Math.round(nav.domInteractive), domContentLoaded: Math.round(nav.domContentLoadedEventEnd), paint, resources: res };
        }));
      }
      console.log('BENCH ' + JSON.stringify({ samples, breakdown }));
      return;
    }

    let navigations = 0;
    page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations += 1; });
    await page.goto(`${url}/#token=${token}`, { waitUntil: 'commit' });
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15000 });
    await page.waitForFunction(() => document.querySelector('#status').dataset.state === 'live', null, { timeout: 15000 });
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'followup_session');
    const ready = {
      figures: await figuresOf(page),
      firstFiguresMs: await firstFiguresMs(page),
      urlAfterLoad: page.url(),
      lang: await page.evaluate(() => document.documentElement.lang),
      label: await page.textContent('[data-tile="pendingT3"] h2'),
      tileLabel: await page.getAttribute('[data-tile="pendingT3"]', 'aria-label'),
      scriptSeesCookie: await page.evaluate(() => document.cookie.includes('followup_session')),
      cookie: session ? { httpOnly: session.httpOnly, sameSite: session.sameSite, path: session.path } : null,
    };
    await page.evaluate(() => { window.__sameDocument = 'yes'; });
    console.log('READY ' + JSON.stringify(ready));
    navigations = 0; // from here on, any navigation would be a reload

    const expect = JSON.parse((await nextLine()).replace(/^EXPECT /, ''));
    const started = Date.now();
    await page.waitForFunction((want) => Object.entries(want).every(
      ([name, text]) => document.querySelector(`[data-figure="${name}"]`).textContent === text), expect, { timeout: 20000 });
    const updateMs = Date.now() - started;
    const sameDocument = await page.evaluate(() => window.__sameDocument === 'yes');
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log('DONE ' + JSON.stringify({
      figures: await figuresOf(page), updateMs, sameDocument, navigations, consoleErrors,
    }));
  } finally {
    await browser.close();
  }
}

run(main);
