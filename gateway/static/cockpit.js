'use strict';
// The follow-up widget: takes the token from the URL fragment (#token=…), removes it from the
// URL, trades it for an HttpOnly session cookie and follows the figures over SSE. German or
// English as the server rendered the page (<html lang>); numbers for the locale, times in the
// gateway's FOLLOWUP_TZ (<meta name="followup-tz">).
//
// Tokens that expire: a CRM that frames this page (or opened it) is asked for a fresh token by
// postMessage({type: 'followup:token-request'}) a while before the session expires, and answers
// with postMessage({type: 'followup:token', token}). Only the page's own origin and the CRM
// origins the gateway lists (<meta name="followup-hosts">, from CORS_ORIGINS) are heard. The
// fresh token becomes a fresh cookie, a successor stream is opened with it, and the old stream
// is closed once the successor delivered its first frame: no gap, no "signed out". Without a
// fresh token the stream ends when the session does, as the gateway ends it.
(() => {
  const STREAM = '/api/dashboard/followup-stream';
  const METRICS = '/api/followup/metrics';
  const WATCHDOG_MS = 15000; // the server sends a frame at least every 5 s
  const MAX_BACKOFF_MS = 30000;
  const RENEW_BEFORE_MS = 30000;

  const meta = (name) => (document.querySelector(`meta[name="${name}"]`) || {}).content || '';
  const lang = document.documentElement.lang === 'en' ? 'en' : 'de';
  const locale = (navigator.languages || []).find((l) => l.toLowerCase().startsWith(lang)) || (lang === 'de' ? 'de-DE' : 'en-GB');
  const timeZone = meta('followup-tz') || undefined;
  const hosts = meta('followup-hosts').split(/\s+/).filter(Boolean);
  const WORDS = {
    de: {
      live: 'live', reconnecting: 'verbinde neu …', 'signed-out': 'abgemeldet', forbidden: 'kein Zugriff',
      up: 'gestiegen seit Mitternacht', down: 'gesunken seit Mitternacht', flat: 'unverändert seit Mitternacht',
      org: 'Organisation', user: 'Benutzer ', asOf: 'Stand ', refused: 'Das Token wurde abgelehnt: ',
      noAnswer: 'keine Antwort', again: ' — den Cockpit-Link mit #token=… erneut öffnen.', notAllowed: 'nicht erlaubt',
    },
    en: {
      live: 'live', reconnecting: 'reconnecting …', 'signed-out': 'signed out', forbidden: 'no access',
      up: 'up since midnight', down: 'down since midnight', flat: 'unchanged since midnight',
      org: 'Organisation', user: 'User ', asOf: 'as of ', refused: 'The token was refused: ',
      noAnswer: 'no answer', again: ' — open the cockpit link with #token=… again.', notAllowed: 'not allowed',
    },
  }[lang];

  const owner = new URLSearchParams(location.search).get('owner');
  const query = owner ? '?owner=' + encodeURIComponent(owner) : '';
  const token = new URLSearchParams(location.hash.replace(/^#/, '')).get('token');
  if (location.hash) {
    // The token must not stay in the address bar, the history or a bookmark.
    history.replaceState(null, '', location.pathname + location.search);
  }

  const integer = new Intl.NumberFormat(locale);
  const percent = new Intl.NumberFormat(locale, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const time = new Intl.DateTimeFormat(locale, { timeStyle: 'medium', timeZone });
  const ARROWS = { up: '▲', down: '▼', flat: '►' };
  const $ = (selector) => document.querySelector(selector);

  let newest = 0;
  let shown = false;

  function render(figures) {
    const at = Date.parse(figures.asOf) || 0;
    if (at < newest) return; // an older answer that arrived late
    newest = at;
    for (const key of ['pendingT3', 'pendingT7', 'sentToday']) {
      $(`[data-figure="${key}"]`).textContent = integer.format(figures[key]);
    }
    $('[data-figure="conversionRate"]').textContent = percent.format(figures.conversionRate);
    for (const key of ['t3Trend', 't7Trend']) {
      const el = $(`[data-trend="${key}"]`);
      el.textContent = ARROWS[figures[key]] || '';
      el.dataset.dir = figures[key];
      el.title = WORDS[figures[key]] || '';
      el.setAttribute('aria-hidden', 'true');
    }
    // Each tile reads as one sentence to a screen reader, the trend included.
    for (const tile of document.querySelectorAll('[data-tile]')) {
      const trend = tile.querySelector('[data-trend]');
      const value = tile.querySelector('[data-figure]').textContent + (tile.querySelector('.unit') ? ' %' : '');
      tile.setAttribute('aria-label', `${tile.querySelector('h2').textContent}: ${value}` + (trend ? `, ${trend.title}` : ''));
    }
    $('#scope').textContent = figures.scope === 'org' ? WORDS.org : WORDS.user + String(figures.scope).replace(/^user:/, '');
    $('#as-of').textContent = WORDS.asOf + time.format(at);
    if (!shown) {
      shown = true;
      performance.mark('followup:first-figures');
      document.body.dataset.ready = 'true';
    }
  }

  function status(state) {
    const el = $('#status');
    el.dataset.state = state;
    el.textContent = WORDS[state] || state;
  }

  function message(text) {
    $('#message').textContent = text;
  }

  let source = null;
  let successor = null;
  let watchdog = 0;
  let backoff = 1000;

  function armWatchdog() {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => {
      status('reconnecting');
      connect();
    }, WATCHDOG_MS);
  }

  function open(onFirst) {
    const stream = new EventSource(STREAM + query);
    let first = true;
    // Frames carry no event name: they arrive as the default `message` event.
    stream.addEventListener('message', (event) => {
      if (first) {
        first = false;
        onFirst(stream);
      }
      if (stream !== source) return;
      armWatchdog();
      try {
        render(JSON.parse(event.data));
      } catch (err) {
        console.warn('unreadable frame', err);
      }
    });
    stream.addEventListener('error', () => {
      if (stream === successor) {
        successor = null; // the renewal failed; the current stream runs on until expiry
        stream.close();
        return;
      }
      if (stream !== source) return;
      if (stream.readyState === EventSource.CLOSED) {
        // The server refused the stream (401, 403, 503): ask why, then decide.
        stream.close();
        source = null;
        clearTimeout(watchdog);
        diagnose();
      } else {
        status('reconnecting'); // EventSource retries by itself
      }
    });
    return stream;
  }

  function connect() {
    if (source) source.close();
    source = open(() => {
      status('live');
      message('');
      backoff = 1000;
    });
    armWatchdog();
  }

  async function diagnose() {
    let answer = null;
    try {
      answer = await fetch(METRICS + query, { credentials: 'same-origin', cache: 'no-store' });
    } catch (err) {
      answer = null;
    }
    if (answer && (answer.status === 401 || answer.status === 403)) {
      const body = await answer.json().catch(() => ({}));
      status(answer.status === 401 ? 'signed-out' : 'forbidden');
      message((body.detail || WORDS.notAllowed) + (answer.status === 401 ? WORDS.again : ''));
      return;
    }
    if (answer && answer.ok) render(await answer.json());
    status('reconnecting');
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
  }

  /** POST /api/session: the cookie for `jwt`; the session (expiresAt) or null with a reason. */
  async function createSession(jwt) {
    try {
      const answer = await fetch('/api/session', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ token: jwt }),
        credentials: 'same-origin',
      });
      if (answer.ok) return { session: await answer.json() };
      const body = await answer.json().catch(() => ({}));
      return { refused: body.detail || WORDS.noAnswer };
    } catch (err) {
      return { refused: WORDS.noAnswer };
    }
  }

  // --- renewal by the host ---
  let renewTimer = 0;
  let expiresAt = 0;
  const trusted = (origin) => origin === location.origin || hosts.includes(origin);

  function askHostForToken() {
    for (const target of [window.parent !== window ? window.parent : null, window.opener]) {
      if (!target) continue;
      for (const origin of [location.origin, ...hosts]) {
        // Delivered only where the target's origin matches: never to a stranger.
        target.postMessage({ type: 'followup:token-request', expiresAt }, origin);
      }
    }
    // Ask again until a fresh token came or the session is over.
    if (Date.now() < expiresAt * 1000) renewTimer = setTimeout(askHostForToken, 2000);
  }

  function scheduleRenewal(session) {
    clearTimeout(renewTimer);
    expiresAt = session.expiresAt;
    const remaining = expiresAt * 1000 - Date.now();
    const lead = Math.max(1000, Math.min(RENEW_BEFORE_MS, remaining / 4));
    renewTimer = setTimeout(askHostForToken, Math.max(0, remaining - lead));
  }

  async function renew(jwt) {
    const { session } = await createSession(jwt);
    if (!session || session.expiresAt <= expiresAt) return; // refused, or not fresher
    scheduleRenewal(session);
    if (!source) {
      connect(); // signed out meanwhile: start again
      return;
    }
    if (successor) successor.close();
    // Make before break: the successor carries the new cookie; the old stream closes on its
    // first frame.
    successor = open((stream) => {
      if (stream !== successor) return;
      const old = source;
      source = stream;
      successor = null;
      if (old) old.close();
      status('live');
    });
  }

  window.addEventListener('message', (event) => {
    const data = event.data;
    if (!trusted(event.origin) || !data || data.type !== 'followup:token' || typeof data.token !== 'string') return;
    renew(data.token);
  });

  async function start() {
    if (token) {
      // First figures straight away (early.js started the request in <head>), while the
      // cookie is being set.
      const early = window.followupEarly ||
        fetch(METRICS + query, { headers: { Authorization: 'Bearer ' + token }, cache: 'no-store' })
          .then((r) => (r.ok ? r.json() : null))
          .catch(() => null);
      early.then((figures) => figures && render(figures));
      const { session, refused } = await createSession(token);
      if (!session) {
        status('signed-out');
        message(WORDS.refused + refused);
        return;
      }
      scheduleRenewal(session);
    }
    connect();
  }

  start();
})();
