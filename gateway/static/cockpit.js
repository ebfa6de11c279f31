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
      lists: {
        pendingT3: 'T+3 ausstehend', pendingT7: 'T+7 ausstehend', sentToday: 'Heute versendet',
        converted: 'Konvertiert nach Follow-up', failed: 'Fehlgeschlagen',
      },
      due: { overdue: 'überfällig', today: 'heute', tomorrow: 'morgen', later: 'später' },
      statuses: {
        REGISTERED: 'registriert', ACTIVE: 'aktiv', REMINDER: 'Erinnerung', GRACE_PERIOD: 'Schonfrist',
        QUALIFIED: 'qualifiziert', CONVERTED: 'konvertiert', LOST: 'verloren', EXPIRED: 'abgelaufen', EXTENDED: 'verlängert',
      },
      loading: 'lade …', empty: 'Keine Leads.', loaded: (n, more) => `${n} Leads geladen${more ? ', weitere vorhanden' : ''}`,
      failedToLoad: 'Konnte nicht geladen werden: ',
      t3Sent: 'T+3 versendet', t7Sent: 'T+7 versendet', conversions: 'Konversionen',
      summary: (t3, t7, c, days) => `In den letzten ${days} Tagen ${t3} T+3 und ${t7} T+7 Follow-ups versendet, ${c} Konversionen.`,
    },
    en: {
      live: 'live', reconnecting: 'reconnecting …', 'signed-out': 'signed out', forbidden: 'no access',
      up: 'up since midnight', down: 'down since midnight', flat: 'unchanged since midnight',
      org: 'Organisation', user: 'User ', asOf: 'as of ', refused: 'The token was refused: ',
      noAnswer: 'no answer', again: ' — open the cockpit link with #token=… again.', notAllowed: 'not allowed',
      lists: {
        pendingT3: 'T+3 pending', pendingT7: 'T+7 pending', sentToday: 'Sent today',
        converted: 'Converted after follow-up', failed: 'Failed',
      },
      due: { overdue: 'overdue', today: 'today', tomorrow: 'tomorrow', later: 'later' },
      statuses: {
        REGISTERED: 'registered', ACTIVE: 'active', REMINDER: 'reminder', GRACE_PERIOD: 'grace period',
        QUALIFIED: 'qualified', CONVERTED: 'converted', LOST: 'lost', EXPIRED: 'expired', EXTENDED: 'extended',
      },
      loading: 'loading …', empty: 'No leads.', loaded: (n, more) => `${n} leads loaded${more ? ', more available' : ''}`,
      failedToLoad: 'Could not be loaded: ',
      t3Sent: 'T+3 sent', t7Sent: 'T+7 sent', conversions: 'Conversions',
      summary: (t3, t7, c, days) => `In the last ${days} days ${t3} T+3 and ${t7} T+7 follow-ups sent, ${c} conversions.`,
    },
  }[lang];

  const params = new URLSearchParams(location.search);
  const owner = params.get('owner');
  const query = owner ? '?owner=' + encodeURIComponent(owner) : '';
  // Leads per page of a tile's list (?pageSize=, 1 to 200).
  const pageSize = Math.min(200, Math.max(1, Number(params.get('pageSize')) || 25));
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
    historyFollows(figures);
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
    loadHistory(); // with the session cookie, set by now
  }

  // --- the leads behind a tile ---
  const DAYS = 30;
  const date = new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeZone: 'UTC' });
  const dayShort = new Intl.DateTimeFormat(locale, { day: 'numeric', month: 'short', timeZone: 'UTC' });
  const dateTime = new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short', timeZone });
  /** A local day `YYYY-MM-DD` (formatted in UTC, its midnight stays that day). */
  const day = (d, format) => format.format(Date.parse(d + 'T00:00:00Z'));
  const kind = (k) => (k === 't3' ? 'T+3' : k === 't7' ? 'T+7' : k);
  const withOwner = (path, extra) => {
    const q = new URLSearchParams(extra);
    if (owner) q.set('owner', owner);
    return path + '?' + q.toString();
  };

  async function getJson(url) {
    const answer = await fetch(url, { credentials: 'same-origin', cache: 'no-store' });
    if (!answer.ok) {
      const body = await answer.json().catch(() => ({}));
      throw new Error(body.detail || answer.statusText || String(answer.status));
    }
    return answer.json();
  }

  const list = { figure: null, next: null, count: 0, loading: false, opener: null };

  function listStatus(text, state) {
    const el = $('#list-status');
    el.textContent = text;
    el.dataset.state = state;
  }

  function addRow(item) {
    const row = document.createElement('tr');
    row.dataset.lead = item.leadId;
    const next = item.nextFollowUp;
    const last = item.lastFollowUp;
    const cells = [
      ['company', item.company],
      ['owner', item.owner || '–'],
      ['status', WORDS.statuses[item.status] || item.status],
      ['due', next ? `${kind(next.kind)} ${WORDS.due[next.due]}, ${day(next.dueDate, date)}` : '–'],
      ['last', last ? `${kind(last.kind)}, ${dateTime.format(Date.parse(last.at))}` : '–'],
    ];
    if (list.figure === 'failed') {
      cells.push(['reason', item.failure ? `${kind(item.failure.kind)}: ${item.failure.reason || '–'}` : '–']);
    }
    for (const [col, text] of cells) {
      const cell = document.createElement('td');
      cell.dataset.col = col;
      cell.textContent = text;
      if (col === 'due' && next) cell.dataset.due = next.due;
      row.append(cell);
    }
    $('#list-rows').append(row);
  }

  async function loadPage() {
    if (list.loading || !list.figure) return;
    const figure = list.figure;
    list.loading = true;
    listStatus(WORDS.loading, 'loading');
    const extra = { figure, limit: pageSize };
    if (list.next) extra.after = list.next;
    try {
      const page = await getJson(withOwner('/api/followup/leads', extra));
      if (list.figure !== figure) return; // another list was opened meanwhile
      for (const item of page.items) addRow(item);
      list.count += page.items.length;
      list.next = page.next || null;
      const more = $('#list-more');
      const hadFocus = document.activeElement === more;
      more.hidden = !list.next;
      if (hadFocus && more.hidden) $('#list-title').focus(); // the button went: keep the focus inside
      listStatus(list.count ? WORDS.loaded(integer.format(list.count), Boolean(list.next)) : WORDS.empty, 'ready');
    } catch (err) {
      if (list.figure === figure) listStatus(WORDS.failedToLoad + err.message, 'error');
    } finally {
      if (list.figure === figure) list.loading = false;
    }
  }

  function openList(figure, opener) {
    if (list.figure === figure) return closeList();
    list.figure = figure;
    list.next = null;
    list.count = 0;
    list.loading = false;
    list.opener = opener;
    for (const el of document.querySelectorAll('[data-list][aria-expanded]')) {
      el.setAttribute('aria-expanded', String(el.dataset.list === figure));
    }
    const panel = $('#list');
    panel.dataset.list = figure;
    panel.classList.toggle('with-reason', figure === 'failed');
    $('#list-title').textContent = WORDS.lists[figure];
    $('#list-rows').textContent = '';
    $('#list-more').hidden = true;
    panel.hidden = false;
    $('#list-title').focus();
    loadPage();
  }

  function closeList() {
    list.figure = null;
    $('#list').hidden = true;
    for (const el of document.querySelectorAll('[data-list][aria-expanded]')) el.setAttribute('aria-expanded', 'false');
    if (list.opener) list.opener.focus();
  }

  for (const el of document.querySelectorAll('[data-list][aria-haspopup]')) {
    el.addEventListener('click', () => openList(el.dataset.list, el));
    el.addEventListener('keydown', (event) => {
      if (el.tagName !== 'BUTTON' && (event.key === 'Enter' || event.key === ' ')) {
        event.preventDefault();
        openList(el.dataset.list, el);
      }
    });
  }
  $('#list-more').addEventListener('click', loadPage);
  $('#list-close').addEventListener('click', closeList);
  $('#list').addEventListener('keydown', (event) => {
    if (event.key === 'Escape') closeList();
  });

  // --- the last 30 days ---
  const SVG = 'http://www.w3.org/2000/svg';
  let historyDays = null;
  let historyKey = '';
  let historyTimer = 0;
  let historyGeneration = 0;

  function svg(name, attributes, parent) {
    const el = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, String(value));
    if (parent) parent.append(el);
    return el;
  }

  function drawChart(days) {
    $('#chart').hidden = false; // shown first: its width is measured
    // One unit a CSS pixel (the labels keep their size on a phone and on a desktop).
    const W = Math.max(280, Math.min(1000, $('#chart-plot').clientWidth || 480));
    const H = 200, LEFT = 30, BOTTOM = 22, TOP = 14;
    const top = Math.max(0, ...days.map((d) => Math.max(d.t3Sent + d.t7Sent, d.conversions)));
    let max = 4;
    if (top > 4) {
      const power = 10 ** Math.floor(Math.log10(top));
      max = [1, 2, 5, 10].map((s) => s * power).find((v) => v >= top);
    }
    const plotH = H - TOP - BOTTOM;
    const slot = (W - LEFT - 4) / Math.max(1, days.length);
    const y = (v) => TOP + plotH - (v / max) * plotH;
    const sum = (key) => days.reduce((n, d) => n + d[key], 0);
    const summary = WORDS.summary(integer.format(sum('t3Sent')), integer.format(sum('t7Sent')),
      integer.format(sum('conversions')), days.length);

    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'chart-title', 'aria-describedby': 'chart-desc' });
    svg('desc', { id: 'chart-desc' }, root).textContent = summary;
    const defs = svg('defs', {}, root);
    const hatch = svg('pattern', { id: 'pattern-t7', width: 4, height: 4, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' }, defs);
    svg('rect', { width: 4, height: 4, class: 'hatch-bg' }, hatch);
    svg('line', { x1: 0, y1: 0, x2: 0, y2: 4, class: 'hatch-line' }, hatch);
    const dots = svg('pattern', { id: 'pattern-conv', width: 4, height: 4, patternUnits: 'userSpaceOnUse' }, defs);
    svg('rect', { width: 4, height: 4, class: 'dots-bg' }, dots);
    svg('circle', { cx: 2, cy: 2, r: 1.2, class: 'dots-dot' }, dots);
    for (const v of [0, max / 2, max]) {
      svg('line', { x1: LEFT, x2: W - 4, y1: y(v), y2: y(v), class: v ? 'grid' : 'axis' }, root);
      svg('text', { x: LEFT - 4, y: y(v) + 3, class: 'tick end', 'aria-hidden': 'true' }, root).textContent = integer.format(v);
    }
    const every = Math.max(1, Math.ceil(days.length / 6));
    days.forEach((d, i) => {
      const x = LEFT + i * slot;
      const barW = slot * 0.5;
      const sent = d.t3Sent + d.t7Sent;
      const label = day(d.date, dayShort);
      const group = svg('g', { 'data-day': d.date }, root);
      const bar = (series, value, bx, base, width, word) => {
        if (value <= 0) return;
        const rect = svg('rect', {
          x: bx, y: y(base + value), width, height: (value / max) * plotH, class: 'bar bar-' + series,
          'data-date': d.date, 'data-series': series, 'data-value': value,
        }, group);
        svg('title', {}, rect).textContent = `${label}: ${word} ${integer.format(value)}`;
      };
      bar('t3Sent', d.t3Sent, x + 1, 0, barW, WORDS.t3Sent);
      bar('t7Sent', d.t7Sent, x + 1, d.t3Sent, barW, WORDS.t7Sent);
      bar('conversions', d.conversions, x + 1 + barW, 0, slot * 0.3, WORDS.conversions);
      if (sent > 0) {
        svg('text', { x: x + 1 + barW / 2, y: y(sent) - 2, class: 'total', 'aria-hidden': 'true' }, group).textContent = integer.format(sent);
      }
      // A date every few days, and today's at the right edge (ending there, not cut off).
      const last = i === days.length - 1;
      if (last) {
        svg('text', { x: x + slot, y: H - 5, class: 'tick end', 'aria-hidden': 'true' }, group).textContent = label;
      } else if (i % every === 0 && days.length - 1 - i > every / 2) {
        svg('text', { x: x + slot / 2, y: H - 5, class: 'tick', 'aria-hidden': 'true' }, group).textContent = label;
      }
    });
    $('#chart-plot').replaceChildren(root);

    $('#chart-summary').textContent = summary;
    const rows = days.map((d) => {
      const row = document.createElement('tr');
      const head = document.createElement('th');
      head.scope = 'row';
      head.textContent = day(d.date, date);
      row.append(head);
      for (const key of ['t3Sent', 't7Sent', 'conversions', 'failed']) {
        const cell = document.createElement('td');
        cell.textContent = integer.format(d[key]);
        row.append(cell);
      }
      return row;
    });
    $('#chart-rows').replaceChildren(...rows);
    $('#chart').dataset.days = days.length;
  }

  async function loadHistory() {
    const mine = ++historyGeneration;
    try {
      const history = await getJson(withOwner('/api/followup/history', { days: DAYS }));
      if (mine !== historyGeneration) return;
      historyDays = history.days;
      drawChart(historyDays);
    } catch (err) {
      console.warn('history not loaded:', err.message);
    }
  }

  let resizeTimer = 0;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => historyDays && drawChart(historyDays), 200);
  });

  /** Today's bucket again (?days=1); the whole range when the day has turned. */
  async function refreshToday() {
    if (!historyDays || !historyDays.length) return loadHistory();
    const mine = ++historyGeneration;
    try {
      const history = await getJson(withOwner('/api/followup/history', { days: 1 }));
      if (mine !== historyGeneration) return;
      const today = history.days[history.days.length - 1];
      if (!today) return;
      if (today.date !== historyDays[historyDays.length - 1].date) return loadHistory();
      historyDays = historyDays.slice(0, -1).concat([today]);
      drawChart(historyDays);
    } catch (err) {
      console.warn('history not refreshed:', err.message);
    }
  }

  /**
   * Called with every figures frame (the chart itself is loaded once the session exists):
   * changed figures, or a minute gone by, reload today's bucket a second later.
   */
  function historyFollows(figures) {
    const minute = Math.floor((Date.parse(figures.asOf) || 0) / 60000);
    const key = [figures.pendingT3, figures.pendingT7, figures.sentToday, figures.conversionRate, minute].join('/');
    if (key === historyKey) return;
    const first = !historyKey;
    historyKey = key;
    clearTimeout(historyTimer);
    if (first) return;
    historyTimer = setTimeout(refreshToday, 1000);
  }

  start();
})();
