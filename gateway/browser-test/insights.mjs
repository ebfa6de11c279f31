// Drives Debian's Chromium (headless) through the cockpit page's lists and chart, in German.
//
// Launched by the Rust test `browser_insights::cockpit_lists_and_chart_in_chromium`, which owns
// the database. Protocol over stdio, one line each:
//   script → test: CHART {bars, days, ...}      the 30-day chart as drawn (bars' data attributes)
//   script → test: LIST {pages, rows, ...}      a tile opened by keyboard, paged to the end
//   script → test: CLOSED {focus}               Esc closed it; where the focus went
//   test → script: EXPECT {"series": "conversions", "date": "…", "value": 2}
//   script → test: DONE {...}                   the chart shows it, no reload
//   script → test: FAIL <message>               anything went wrong (exit code 1)
//
// Environment: GATEWAY_URL, TOKEN, PAGE_SIZE, LIST_SHOT, CHART_SHOT (PNG paths), CHROMIUM.

import { launchChromium, nextLine, run } from './launch.mjs';

const url = process.env.GATEWAY_URL;
const token = process.env.TOKEN;
const pageSize = process.env.PAGE_SIZE || '3';

const bars = (page) => page.$$eval('#chart rect[data-series]', (rects) => rects.map((r) => ({
  date: r.dataset.date, series: r.dataset.series, value: Number(r.dataset.value),
})));

async function main() {
  const browser = await launchChromium();
  try {
    const context = await browser.newContext({
      viewport: { width: 1100, height: 900 },
      locale: 'de-DE',
      timezoneId: 'Europe/Berlin',
    });
    const page = await context.newPage();
    const consoleErrors = [];
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    const requests = [];
    page.on('request', (r) => {
      const u = new URL(r.url());
      if (u.pathname.startsWith('/api/followup/')) requests.push(u.pathname + u.search);
    });
    let navigations = 0;
    page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations += 1; });

    await page.goto(`${url}/?pageSize=${pageSize}#token=${token}`, { waitUntil: 'commit' });
    await page.waitForFunction(() => document.querySelector('#status').dataset.state === 'live', null, { timeout: 15000 });
    await page.waitForSelector('#chart:not([hidden]) svg', { timeout: 15000 });
    await page.evaluate(() => { window.__sameDocument = 'yes'; });
    navigations = 0;

    const chart = await page.evaluate(() => ({
      lang: document.documentElement.lang,
      days: Number(document.querySelector('#chart').dataset.days),
      caption: document.querySelector('#chart-title').textContent,
      summary: document.querySelector('#chart-desc').textContent,
      svgRole: document.querySelector('#chart svg').getAttribute('role'),
      legend: [...document.querySelectorAll('#chart .legend li')].map((li) => li.textContent),
      tableRows: document.querySelectorAll('#chart-rows tr').length,
      lastRow: [...document.querySelectorAll('#chart-rows tr:last-child > *')].map((c) => c.textContent),
      fills: Object.fromEntries([...document.querySelectorAll('#chart rect[data-series]')].map(
        (r) => [r.dataset.series, getComputedStyle(r).fill])),
    }));
    chart.bars = await bars(page);
    console.log('CHART ' + JSON.stringify(chart));

    // The keyboard: Tab-reachable tile, Enter opens its list, the focus moves into the panel.
    const tile = page.locator('[data-tile="pendingT3"]');
    await tile.focus();
    await page.keyboard.press('Enter');
    await page.waitForSelector('#list:not([hidden])');
    const focusAfterOpen = await page.evaluate(() => document.activeElement.id);
    const pages = [];
    const settled = () => page.waitForFunction(() => document.querySelector('#list-status').dataset.state === 'ready', null, { timeout: 10000 });
    await settled();
    pages.push(await page.locator('#list-rows tr').count());
    for (let i = 0; i < 20 && await page.isVisible('#list-more'); i++) {
      await page.click('#list-more');
      await page.waitForFunction((n) => document.querySelectorAll('#list-rows tr').length > n, pages[pages.length - 1], { timeout: 10000 });
      await settled();
      pages.push(await page.locator('#list-rows tr').count());
    }
    const list = await page.evaluate(() => ({
      title: document.querySelector('#list-title').textContent,
      role: document.querySelector('#list').getAttribute('role'),
      expanded: document.querySelector('[data-tile="pendingT3"]').getAttribute('aria-expanded'),
      headers: [...document.querySelectorAll('#list thead th')].filter((th) => getComputedStyle(th).display !== 'none').map((th) => th.textContent),
      rows: [...document.querySelectorAll('#list-rows tr')].map((tr) => ({
        leadId: Number(tr.dataset.lead),
        cells: Object.fromEntries([...tr.children].map((td) => [td.dataset.col, td.textContent])),
      })),
      status: document.querySelector('#list-status').textContent,
      statusLive: document.querySelector('#list-status').getAttribute('aria-live'),
      moreHidden: document.querySelector('#list-more').hidden,
    }));
    list.pages = pages;
    list.focusAfterOpen = focusAfterOpen;
    list.requests = requests.filter((r) => r.startsWith('/api/followup/leads'));
    await page.screenshot({ path: process.env.LIST_SHOT, fullPage: true });
    console.log('LIST ' + JSON.stringify(list));

    await page.keyboard.press('Escape');
    await page.waitForSelector('#list', { state: 'hidden' });
    const closed = await page.evaluate(() => ({
      focus: document.activeElement.dataset.tile || document.activeElement.id || document.activeElement.tagName,
      expanded: document.querySelector('[data-tile="pendingT3"]').getAttribute('aria-expanded'),
    }));
    // The failed ones, from the footer: the reason column appears.
    await page.click('.foot [data-list="failed"]');
    await settled();
    closed.failedTitle = await page.textContent('#list-title');
    closed.failedHeaders = await page.$$eval('#list thead th', (ths) => ths.filter((th) => getComputedStyle(th).display !== 'none').map((th) => th.textContent));
    await page.click('#list-close');
    await page.waitForSelector('#list', { state: 'hidden' });
    await page.locator('main').screenshot({ path: process.env.CHART_SHOT });
    console.log('CLOSED ' + JSON.stringify(closed));

    // The CRM changes data: today's bucket follows the stream's frames, without a reload.
    const expect = JSON.parse((await nextLine()).replace(/^EXPECT /, ''));
    await page.waitForFunction((want) => {
      const rect = document.querySelector(`#chart rect[data-series="${want.series}"][data-date="${want.date}"]`);
      return rect && Number(rect.dataset.value) === want.value;
    }, expect, { timeout: 20000 });
    console.log('DONE ' + JSON.stringify({
      bars: await bars(page),
      sameDocument: await page.evaluate(() => window.__sameDocument === 'yes'),
      navigations,
      historyRequests: requests.filter((r) => r.startsWith('/api/followup/history')),
      consoleErrors,
    }));
  } finally {
    await browser.close();
  }
}

run(main);
