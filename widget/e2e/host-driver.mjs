// The widget package in Debian's Chromium, embedded by a React host app on another origin,
// against the real gateway. Launched by the Rust test `widget::host_app_keeps_the_widget_live_*`
// (e2e/tests/it/widget.rs), which owns the database and the gateway. Protocol, one line each:
//   driver → test: HOST {origin}                 the host app's origin (for CORS_ORIGINS)
//   test → driver: GATEWAY {url}                 the gateway is up
//   driver → test: READY {pendingT3, status}     the widget shows its first figures
//   test → driver: EXPECT {"pendingT3": "N"}     after a change in the database
//   driver → test: SHOWN {pendingT3, ms}         the widget shows it
//   test → driver: FINISH
//   driver → test: REPORT {...}                  what the user saw, the streams, the tokens, a
//                                                tile's list and the chart
//   driver → test: CRM_READY {data}              the sprint's own hook received a frame
//   test → driver: EXPECT_CRM {"pendingT3": N}
//   driver → test: DONE {...}
//   driver → test: FAIL <message>
// Environment: SECRET (the gateway's HS256 JWT_SECRET), TOKEN_TTL_SECS (default 20),
// SCREENSHOT_DIR, CHROMIUM (default /usr/bin/chromium).
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

import * as esbuild from 'esbuild';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const secret = process.env.SECRET;
const ttl = Number(process.env.TOKEN_TTL_SECS || 20);
const screenshots = process.env.SCREENSHOT_DIR;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const lines = readline.createInterface({ input: process.stdin });
const queue = [];
const waiters = [];
lines.on('line', (line) => (waiters.length ? waiters.shift()(line) : queue.push(line)));
const nextLine = () => new Promise((resolve) => (queue.length ? resolve(queue.shift()) : waiters.push(resolve)));
const say = (tag, value) => console.log(`${tag} ${JSON.stringify(value)}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function mintToken(user, roles) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ preferred_username: user, roles, iat: now, exp: now + ttl })}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

// A CRM page that frames the gateway's own cockpit page and answers its token requests with
// fresh tokens of its session (postMessage, the page's renewal protocol).
const FRAME_HTML = `<!doctype html><html lang="de"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>CRM with the framed cockpit page</title></head><body style="margin:0">
<iframe id="cockpit" title="Follow-up" style="width:100%;height:460px;border:0"></iframe>
<script>
const gateway = new URLSearchParams(location.search).get('gateway');
window.tokenRequests = 0;
const token = () => fetch('/token', { cache: 'no-store' }).then((r) => r.json()).then((b) => b.token);
window.addEventListener('message', async (event) => {
  if (event.origin !== gateway || !event.data || event.data.type !== 'followup:token-request') return;
  window.tokenRequests++;
  event.source.postMessage({ type: 'followup:token', token: await token() }, gateway);
});
token().then((t) => { document.getElementById('cockpit').src = gateway + '/#token=' + t; });
</script></body></html>`;

async function bundle(entry) {
  const result = await esbuild.build({
    entryPoints: [path.join(here, 'host', entry)],
    bundle: true,
    write: false,
    format: 'iife',
    jsx: 'automatic',
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'silent',
  });
  return result.outputFiles[0].text;
}

/** The host app's server: its page, its bundle, and its session's short-lived tokens. */
async function startHost() {
  const appJs = await bundle('app.tsx');
  const indexHtml = readFileSync(path.join(here, 'host', 'index.html'));
  let minted = 0;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://host');
    if (url.pathname === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(indexHtml);
    } else if (url.pathname === '/app.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(appJs);
    } else if (url.pathname === '/frame') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(FRAME_HTML);
    } else if (url.pathname === '/token') {
      minted++;
      res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
      res.end(JSON.stringify({ token: mintToken('boss', ['admin']) }));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, origin: `http://127.0.0.1:${server.address().port}`, minted: () => minted };
}

async function waitFor(page, fn, arg, timeoutMs, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout: timeoutMs, polling: 50 });
  } catch {
    throw new Error(`${what}: not within ${timeoutMs} ms`);
  }
}

/** Stream requests as the browser made them: when each opened and ended. */
function watchStreams(page, gateway) {
  const streams = [];
  const isStream = (req) => req.url().startsWith(gateway) && req.url().includes('/followup-stream');
  page.on('request', (req) => isStream(req) && streams.push({ req, start: Date.now(), end: null, auth: !!req.headers().authorization }));
  const ended = (req) => {
    const s = streams.find((x) => x.req === req);
    if (s) s.end = Date.now();
  };
  page.on('requestfinished', ended);
  page.on('requestfailed', ended);
  return streams;
}

function streamReport(streams, until) {
  const spans = streams.map((s) => [s.start, s.end ?? until]);
  let maxOpen = 0;
  for (const [t] of spans) maxOpen = Math.max(maxOpen, spans.filter(([a, b]) => a <= t && t < b).length);
  // Make before break: each successor opened before its predecessor ended.
  const handovers = spans.slice(1).map(([start], i) => spans[i][1] - start);
  return {
    count: streams.length,
    allBearer: streams.every((s) => s.auth),
    maxOpen,
    minOverlapMs: handovers.length ? Math.min(...handovers) : null,
  };
}

/** Records, inside `target` (a page or a frame), each change of what the user sees. */
async function installRecorder(target) {
  await target.evaluate(() => {
    window.seen = [];
    const text = (selector) => (document.querySelector(selector) || {}).textContent || '';
    const record = () => {
      const now = {
        pendingT3: text('[data-figure="pendingT3"]'),
        status: (document.querySelector('[data-state]') || { dataset: {} }).dataset.state || '',
        asOf: text('[data-as-of], #as-of'),
      };
      const last = window.seen[window.seen.length - 1];
      if (!last || last.pendingT3 !== now.pendingT3 || last.status !== now.status || last.asOf !== now.asOf) {
        window.seen.push({ at: Date.now(), ...now });
      }
    };
    record();
    new MutationObserver(record).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
  });
}

const firstFiguresShown = () =>
  document.querySelector('[data-state="live"]') && document.querySelector('[data-figure="pendingT3"]').textContent !== '–';

/** What the recorder saw after the first "live", and the streams the browser opened. */
async function seenReport(target, streams) {
  const seen = await target.evaluate(() => window.seen);
  const afterLive = seen.slice(Math.max(0, seen.findIndex((s) => s.status === 'live')));
  const asOfChanges = afterLive.filter((s, i) => i === 0 || s.asOf !== afterLive[i - 1].asOf).map((s) => s.at);
  const gaps = asOfChanges.slice(1).map((t, i) => t - asOfChanges[i]);
  return {
    statusesAfterLive: [...new Set(afterLive.map((s) => s.status))],
    pendingT3Shown: afterLive.map((s) => s.pendingT3).filter((v, i, a) => i === 0 || v !== a[i - 1]),
    maxFrameGapMs: Math.max(...gaps),
    frames: asOfChanges.length,
    streams: streamReport(streams, Date.now()),
  };
}

async function widgetSession(browser, host, gateway) {
  const context = await browser.newContext({ viewport: { width: 640, height: 480 }, deviceScaleFactor: 2, locale: 'de-DE' });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(String(e)));
  const streams = watchStreams(page, gateway);
  await page.goto(`${host.origin}/?gateway=${encodeURIComponent(gateway)}`);
  await waitFor(page, firstFiguresShown, null, 30000, 'first figures');
  await installRecorder(page);

  // The gateway's own page, framed by the CRM on another origin, renewed by postMessage.
  const framing = await context.newPage();
  framing.on('pageerror', (e) => errors.push(String(e)));
  const frameStreams = watchStreams(framing, gateway);
  await framing.goto(`${host.origin}/frame?gateway=${encodeURIComponent(gateway)}`);
  let frame = null;
  for (let i = 0; i < 100 && !frame; i++) {
    frame = framing.frames().find((f) => f.url().startsWith(gateway));
    if (!frame) await sleep(100);
  }
  if (!frame) throw new Error('the cockpit page did not load in the frame');
  await waitFor(frame, firstFiguresShown, null, 30000, 'first figures in the framed page');
  await installRecorder(frame);

  const first = await page.evaluate(() => ({
    pendingT3: document.querySelector('[data-figure="pendingT3"]').textContent,
    status: document.querySelector('[data-state]').dataset.state,
  }));
  say('READY', first);
  const shownAt = [];
  for (;;) {
    const line = await nextLine();
    if (line === 'FINISH') break;
    const expected = JSON.parse(line.replace(/^EXPECT /, ''));
    const asked = Date.now();
    const shows = (v) => document.querySelector('[data-figure="pendingT3"]').textContent === v;
    await waitFor(page, shows, expected.pendingT3, 20000, `widget pendingT3 = ${expected.pendingT3}`);
    await waitFor(frame, shows, expected.pendingT3, 20000, `framed page pendingT3 = ${expected.pendingT3}`);
    shownAt.push(Date.now() - asked);
    say('SHOWN', { pendingT3: expected.pendingT3, ms: Date.now() - asked });
  }
  await page.locator('section').screenshot({ path: path.join(screenshots, 'widget-de.png') });
  const report = {
    widget: await seenReport(page, streams),
    page: {
      ...(await seenReport(frame, frameStreams)),
      tokenRequests: await framing.evaluate(() => window.tokenRequests),
      lang: await frame.evaluate(() => document.documentElement.lang),
      label: await frame.evaluate(() => document.querySelector('[data-tile="pendingT3"] h2').textContent),
    },
    tokensFetched: await page.evaluate(() => window.tokensFetched),
    tokensMinted: host.minted(),
    maxShowMs: Math.max(...shownAt),
    consoleErrors: errors,
  };
  // A tile opens its list (Bearer, across origins), and the chart of 30 days is under the tiles.
  await page.click('[data-tile="pendingT3"]');
  await waitFor(page, () => document.querySelector('[data-list-status="ready"]'), null, 20000, 'the T+3 list');
  report.widgetList = await page.evaluate(() => ({
    title: document.querySelector('[role="dialog"] h3').textContent,
    rows: document.querySelectorAll('[role="dialog"] [data-lead]').length,
    focus: document.activeElement.textContent,
  }));
  await page.keyboard.press('Escape');
  report.widgetList.focusAfterEsc = await page.evaluate(() => document.activeElement.dataset.tile || document.activeElement.tagName);
  report.widgetChart = await page.evaluate(() => ({
    days: Number(document.querySelector('[data-chart]')?.dataset.days ?? 0),
    tableRows: document.querySelectorAll('[data-chart-table] tbody tr').length,
  }));
  // English, by the host's choice, for the README's screenshot.
  const en = await context.newPage();
  await en.goto(`${host.origin}/?gateway=${encodeURIComponent(gateway)}&lang=en`);
  await waitFor(en, firstFiguresShown, null, 30000, 'English widget');
  report.english = await en.evaluate(() => ({ title: document.querySelector('h2').textContent, label: document.querySelector('[data-tile="pendingT3"] h3').textContent, lang: document.querySelector('section').lang }));
  await en.locator('section').screenshot({ path: path.join(screenshots, 'widget-en.png') });
  await context.close();
  return report;
}

async function crmHookSession(browser, gateway) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const hookJs = await bundle('crm-hook.tsx');
  // A page of the gateway's origin (as the CRM behind the same reverse proxy); only this page
  // and its script are served by the test, every other request goes to the real gateway.
  await page.route(`${gateway}/crm-host`, (route) =>
    route.fulfill({ contentType: 'text/html', body: '<!doctype html><div id="root"></div><script src="/crm-host.js"></script>' }));
  await page.route(`${gateway}/crm-host.js`, (route) => route.fulfill({ contentType: 'text/javascript', body: hookJs }));
  await page.goto(`${gateway}/crm-host#token=${mintToken('boss', ['admin'])}`);
  await waitFor(page, () => document.getElementById('crm')?.textContent, null, 30000, 'a frame through the CRM hook');
  say('CRM_READY', { session: await page.evaluate(() => document.body.dataset.session), data: JSON.parse(await page.textContent('#crm')) });
  const expected = JSON.parse((await nextLine()).replace(/^EXPECT_CRM /, ''));
  await waitFor(page, (v) => JSON.parse(document.getElementById('crm').textContent).pendingT3 === v, expected.pendingT3, 20000, `CRM hook pendingT3 = ${expected.pendingT3}`);
  const data = JSON.parse(await page.textContent('#crm'));
  await context.close();
  return data;
}

async function main() {
  const host = await startHost();
  say('HOST', host.origin);
  const gateway = JSON.parse((await nextLine()).replace(/^GATEWAY /, ''));
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    say('REPORT', await widgetSession(browser, host, gateway));
    say('DONE', { crm: await crmHookSession(browser, gateway) });
  } finally {
    await browser.close();
    host.server.close();
  }
}

main().catch((err) => {
  console.log(`FAIL ${err && err.stack ? err.stack.replace(/\n/g, ' | ') : err}`);
  process.exit(1);
});
