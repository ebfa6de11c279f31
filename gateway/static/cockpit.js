'use strict';
// The follow-up widget: takes the token from the URL fragment (#token=…), removes it from the
// URL, trades it for an HttpOnly session cookie and follows the figures over SSE.
(() => {
  const STREAM = '/api/dashboard/followup-stream';
  const METRICS = '/api/followup/metrics';
  const WATCHDOG_MS = 15000; // the server sends a frame at least every 5 s
  const MAX_BACKOFF_MS = 30000;

  const owner = new URLSearchParams(location.search).get('owner');
  const query = owner ? '?owner=' + encodeURIComponent(owner) : '';
  const token = new URLSearchParams(location.hash.replace(/^#/, '')).get('token');
  if (location.hash) {
    // The token must not stay in the address bar, the history or a bookmark.
    history.replaceState(null, '', location.pathname + location.search);
  }

  const integer = new Intl.NumberFormat(undefined);
  const percent = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const ARROWS = { up: ['▲', 'up since midnight'], down: ['▼', 'down since midnight'], flat: ['►', 'unchanged since midnight'] };
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
      const [arrow, label] = ARROWS[figures[key]] || ['', ''];
      el.textContent = arrow;
      el.dataset.dir = figures[key];
      el.title = label;
      el.setAttribute('aria-label', label);
    }
    $('#scope').textContent = figures.scope === 'org' ? 'Organisation' : String(figures.scope).replace(/^user:/, 'User ');
    $('#as-of').textContent = 'as of ' + new Date(at).toLocaleTimeString();
    if (!shown) {
      shown = true;
      performance.mark('followup:first-figures');
      document.body.dataset.ready = 'true';
    }
  }

  function status(state, text) {
    const el = $('#status');
    el.dataset.state = state;
    el.textContent = text;
  }

  function message(text) {
    $('#message').textContent = text;
  }

  let source = null;
  let watchdog = 0;
  let backoff = 1000;

  function armWatchdog() {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => {
      status('reconnecting', 'reconnecting…');
      connect();
    }, WATCHDOG_MS);
  }

  function connect() {
    if (source) source.close();
    source = new EventSource(STREAM + query);
    source.addEventListener('open', () => {
      status('live', 'live');
      message('');
      backoff = 1000;
    });
    // Frames carry no event name: they arrive as the default `message` event.
    source.addEventListener('message', (event) => {
      armWatchdog();
      try {
        render(JSON.parse(event.data));
      } catch (err) {
        console.warn('unreadable frame', err);
      }
    });
    source.addEventListener('error', () => {
      if (source.readyState === EventSource.CLOSED) {
        // The server refused the stream (401, 403, 503): ask why, then decide.
        source.close();
        source = null;
        clearTimeout(watchdog);
        diagnose();
      } else {
        status('reconnecting', 'reconnecting…'); // EventSource retries by itself
      }
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
      status(answer.status === 401 ? 'signed-out' : 'forbidden', answer.status === 401 ? 'signed out' : 'no access');
      message((body.detail || 'not allowed') + (answer.status === 401 ? ' — open the cockpit link with #token=… again.' : ''));
      return;
    }
    if (answer && answer.ok) render(await answer.json());
    status('reconnecting', 'reconnecting…');
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
  }

  async function start() {
    if (token) {
      // First figures straight away (early.js started the request in <head>), while the
      // cookie is being set.
      const early = window.followupEarly ||
        fetch(METRICS + query, { headers: { Authorization: 'Bearer ' + token }, cache: 'no-store' })
          .then((r) => (r.ok ? r.json() : null))
          .catch(() => null);
      early.then((figures) => figures && render(figures));
      let answer = null;
      try {
        answer = await fetch('/api/session', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ token }),
          credentials: 'same-origin',
        });
      } catch (err) {
        answer = null;
      }
      if (!answer || !answer.ok) {
        const body = answer ? await answer.json().catch(() => ({})) : {};
        status('signed-out', 'signed out');
        message('The token was refused: ' + (body.detail || 'no answer'));
        return;
      }
    }
    connect();
  }

  start();
})();
