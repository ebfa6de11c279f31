// The tiles' lists and the history chart of <FollowUpWidget />, and their hooks, against the
// fake gateway's JSON answers (the real gateway: e2e/tests/it/widget.rs and browser.rs).
import { act, cleanup, fireEvent, render, renderHook, screen } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';

import { FollowUpWidget } from '../src/FollowUpWidget';
import type { HistoryDay, LeadItem } from '../src/types';
import { useFollowUpHistory } from '../src/useFollowUpHistory';
import { useFollowUpLeads } from '../src/useFollowUpLeads';
import { FakeGateway, type JsonRequest, until } from './fakeGateway';

afterEach(cleanup);

function lead(id: number, overrides: Partial<LeadItem> = {}): LeadItem {
  return {
    leadId: id,
    company: `Firma ${id}`,
    owner: 'anna',
    status: 'ACTIVE',
    registeredAt: '2026-11-27T08:00:00Z',
    nextFollowUp: { kind: 't3', dueDate: '2026-11-30', due: 'today' },
    ...overrides,
  };
}

/** Leads 1..total, `limit` a page, the cursor being the last id shown. */
function leadsAnswer(total: number, extra: (id: number) => Partial<LeadItem> = () => ({})) {
  return (request: JsonRequest) => {
    const limit = Number(request.url.searchParams.get('limit'));
    const after = Number(request.url.searchParams.get('after') ?? 0);
    const ids = Array.from({ length: total }, (_, i) => i + 1).filter((id) => id > after).slice(0, limit);
    const last = ids[ids.length - 1];
    return {
      status: 200,
      body: {
        figure: request.url.searchParams.get('figure'),
        scope: 'org',
        items: ids.map((id) => lead(id, extra(id))),
        next: last !== undefined && last < total ? String(last) : undefined,
      },
    };
  };
}

function day(date: string, values: Partial<HistoryDay> = {}): HistoryDay {
  return { date, t3Sent: 0, t7Sent: 0, failed: 0, conversions: 0, pendingT3: 0, pendingT7: 0, ...values };
}

/** `days` days ending 2026-11-30 (today), with `values` on the dates given. */
function historyOf(days: number, values: Record<string, Partial<HistoryDay>>) {
  const out: HistoryDay[] = [];
  for (let i = days - 1; i >= 0; i--) {
    const date = new Date(Date.UTC(2026, 10, 30 - i)).toISOString().slice(0, 10);
    out.push(day(date, values[date]));
  }
  return { scope: 'org', days: out };
}

/** A gateway answering lists from `leads` and history from `history` (both may change). */
function gatewayWith(state: { total: number; history: ReturnType<typeof historyOf> }) {
  const gateway = new FakeGateway();
  gateway.json = (request) => {
    if (request.url.pathname === '/api/followup/leads') {
      return leadsAnswer(state.total, (id) =>
        request.url.searchParams.get('figure') === 'failed'
          ? { status: 'ACTIVE', nextFollowUp: null, failure: { kind: 't7', reason: '550 mailbox unavailable', at: '2026-11-29T09:00:00Z' } }
          : { lastFollowUp: id === 1 ? { kind: 't3', at: '2026-11-29T08:00:00Z' } : null },
      )(request);
    }
    if (request.url.pathname === '/api/followup/history') {
      const days = Number(request.url.searchParams.get('days'));
      return { status: 200, body: { scope: 'org', days: state.history.days.slice(-days) } };
    }
    return { status: 404, body: { code: 'not_found', detail: 'no' } };
  };
  return gateway;
}

const leadRequests = (gateway: FakeGateway) => gateway.jsonRequests.filter((r) => r.url.pathname === '/api/followup/leads');
const historyRequests = (gateway: FakeGateway) =>
  gateway.jsonRequests.filter((r) => r.url.pathname === '/api/followup/history');

describe('a tile opens its list', () => {
  it('pages through the leads with the Bearer token, and Esc gives the focus back to the tile', async () => {
    const gateway = gatewayWith({ total: 5, history: historyOf(30, {}) });
    const view = render(
      <FollowUpWidget fetch={gateway.fetch} getToken={() => 'tok'} baseUrl="https://gw.example" pageSize={2} owner="anna" />,
    );
    const tile = view.container.querySelector<HTMLElement>('[data-tile="pendingT3"]')!;
    expect(tile.getAttribute('role')).toBe('button');
    expect(tile.getAttribute('aria-expanded')).toBe('false');
    tile.focus();
    fireEvent.keyDown(tile, { key: 'Enter' });

    const dialog = await screen.findByRole('dialog');
    expect(dialog.getAttribute('data-list')).toBe('pendingT3');
    await until(() => view.container.querySelectorAll('[data-lead]').length === 2);
    const first = leadRequests(gateway)[0];
    expect(first.url.origin + first.url.pathname).toBe('https://gw.example/api/followup/leads');
    expect(first.url.searchParams.get('figure')).toBe('pendingT3');
    expect(first.url.searchParams.get('limit')).toBe('2');
    expect(first.url.searchParams.get('owner')).toBe('anna');
    expect(first.url.searchParams.has('after')).toBe(false);
    expect(first.headers.get('Authorization')).toBe('Bearer tok');
    expect(first.credentials).toBe('omit');
    expect(tile.getAttribute('aria-expanded')).toBe('true');
    // The focus moved into the panel, onto its heading.
    expect(document.activeElement?.textContent).toBe('T+3 ausstehend');

    // Columns, in German: company, owner, status, due (class and date), last follow-up.
    const row = view.container.querySelector('[data-lead="1"]')!;
    const cells = [...row.querySelectorAll('td')].map((td) => td.textContent);
    expect(cells).toEqual(['Firma 1', 'anna', 'aktiv', 'T+3 heute, 30.11.2026', 'T+3, 29.11.2026, 09:00']);
    expect(view.container.querySelector('[data-list-status]')!.textContent).toBe('2 Leads geladen, weitere vorhanden');

    fireEvent.click(screen.getByText('Mehr laden'));
    await until(() => view.container.querySelectorAll('[data-lead]').length === 4);
    expect(leadRequests(gateway)[1].url.searchParams.get('after')).toBe('2');
    fireEvent.click(screen.getByText('Mehr laden'));
    await until(() => view.container.querySelectorAll('[data-lead]').length === 5);
    expect(leadRequests(gateway)[2].url.searchParams.get('after')).toBe('4');
    expect(screen.queryByText('Mehr laden')).toBeNull(); // the last page
    expect(view.container.querySelector('[data-list-status]')!.getAttribute('aria-live')).toBe('polite');
    expect(view.container.querySelector('[data-list-status]')!.textContent).toBe('5 Leads geladen');

    fireEvent.keyDown(screen.getByRole('dialog'), { key: 'Escape' });
    expect(screen.queryByRole('dialog')).toBeNull();
    expect(document.activeElement).toBe(tile);
    expect(tile.getAttribute('aria-expanded')).toBe('false');
  });

  it('maps every tile to its figure; Space opens, the footer opens the failed ones with reasons', async () => {
    const gateway = gatewayWith({ total: 1, history: historyOf(30, {}) });
    const view = render(<FollowUpWidget fetch={gateway.fetch} />);
    const want = { pendingT3: 'pendingT3', pendingT7: 'pendingT7', sentToday: 'sentToday', conversionRate: 'converted' };
    for (const [tile, figure] of Object.entries(want)) {
      const element = view.container.querySelector<HTMLElement>(`[data-tile="${tile}"]`)!;
      fireEvent.keyDown(element, { key: ' ' });
      await until(() => screen.queryByRole('dialog')?.getAttribute('data-list') === figure);
      await until(() => leadRequests(gateway).at(-1)?.url.searchParams.get('figure') === figure);
      fireEvent.keyDown(screen.getByRole('dialog'), { key: 'Escape' });
    }
    // Without getToken: the session cookie, no Authorization header.
    expect(leadRequests(gateway)[0].headers.has('Authorization')).toBe(false);
    expect(leadRequests(gateway)[0].credentials).toBe('same-origin');

    fireEvent.click(screen.getByText('Fehlgeschlagen'));
    await until(() => view.container.querySelector('[data-col="reason"]') !== null);
    expect(screen.getByRole('columnheader', { name: 'Fehlergrund' })).toBeTruthy();
    expect(view.container.querySelector('[data-col="reason"]')!.textContent).toBe('T+7: 550 mailbox unavailable');
    expect(view.container.querySelector('[data-col="due"]')!.textContent).toBe('–');
  });

  it('says why a list could not be loaded', async () => {
    const gateway = new FakeGateway();
    gateway.json = () => ({ status: 403, body: { code: 'forbidden', detail: 'sales may not pass owner' } });
    const view = render(<FollowUpWidget fetch={gateway.fetch} locale="en" owner="someone" />);
    fireEvent.click(view.container.querySelector('[data-tile="sentToday"]')!);
    await until(() => view.container.querySelector('[data-list-status="error"]') !== null);
    expect(view.container.querySelector('[data-list-status]')!.textContent).toBe(
      'Could not be loaded: sales may not pass owner',
    );
  });
});

describe('the history chart', () => {
  it('draws sent per kind and conversions per day, with a hidden table, in German', async () => {
    const gateway = gatewayWith({
      total: 0,
      history: historyOf(30, {
        '2026-11-28': { t3Sent: 4, t7Sent: 2, conversions: 1 },
        '2026-11-30': { t3Sent: 1, failed: 1 },
      }),
    });
    const view = render(<FollowUpWidget fetch={gateway.fetch} />);
    await until(() => view.container.querySelector('[data-chart]') !== null);
    expect(historyRequests(gateway)[0].url.searchParams.get('days')).toBe('30');
    const bars = [...view.container.querySelectorAll('rect[data-series]')].map(
      (r) => `${r.getAttribute('data-date')} ${r.getAttribute('data-series')} ${r.getAttribute('data-value')}`,
    );
    expect(bars).toEqual([
      '2026-11-28 t3Sent 4',
      '2026-11-28 t7Sent 2',
      '2026-11-28 conversions 1',
      '2026-11-30 t3Sent 1',
    ]);
    // Not colour alone: T+3 solid, T+7 and conversions by pattern; a legend with words.
    const fill = (series: string) => view.container.querySelector(`rect[data-series="${series}"]`)!.getAttribute('fill')!;
    expect(fill('t3Sent')).toMatch(/^#/);
    expect(fill('t7Sent')).toMatch(/^url\(#/);
    expect(fill('conversions')).toMatch(/^url\(#/);
    expect(fill('t7Sent')).not.toBe(fill('conversions'));
    expect(screen.getByText('Letzte 30 Tage')).toBeTruthy();
    const svg = view.container.querySelector('svg[role="img"]')!;
    expect(svg.querySelector('desc')!.textContent).toBe(
      'In den letzten 30 Tagen 5 T+3 und 2 T+7 Follow-ups versendet, 1 Konversionen.',
    );
    const table = view.container.querySelector('[data-chart-table]')!;
    expect(table.querySelectorAll('tbody tr')).toHaveLength(30);
    const row28 = [...table.querySelectorAll('tbody tr')].find((r) => r.querySelector('th')!.textContent === '28.11.2026')!;
    expect([...row28.querySelectorAll('td')].map((td) => td.textContent)).toEqual(['4', '2', '1', '0']);
  });

  it('reloads today when a frame brings changed figures, debounced', async () => {
    const state = { total: 0, history: historyOf(30, { '2026-11-30': { t3Sent: 1 } }) };
    const gateway = gatewayWith(state);
    const view = render(<FollowUpWidget fetch={gateway.fetch} />);
    const stream = await gateway.requested(1);
    await until(() => view.container.querySelector('rect[data-date="2026-11-30"]') !== null);
    state.history = historyOf(30, { '2026-11-30': { t3Sent: 1, t7Sent: 3 } });
    const asOf = new Date().toISOString();
    await act(async () => {
      stream.send(1, { sentToday: 1, asOf });
      stream.send(2, { sentToday: 4, asOf });
    });
    await until(() => view.container.querySelector('rect[data-date="2026-11-30"][data-series="t7Sent"]') !== null, 4000);
    expect(
      view.container.querySelector('rect[data-date="2026-11-30"][data-series="t7Sent"]')!.getAttribute('data-value'),
    ).toBe('3');
    // One full load, then one reload of today for the burst.
    expect(historyRequests(gateway).map((r) => r.url.searchParams.get('days'))).toEqual(['30', '1']);
    expect(view.container.querySelectorAll('[data-chart-table] tbody tr')).toHaveLength(30);
  });
});

describe('the hooks', () => {
  it('useFollowUpLeads loads nothing without a figure, then a page and the next', async () => {
    const gateway = gatewayWith({ total: 3, history: historyOf(1, {}) });
    const { result, rerender } = renderHook((figure: 'pendingT7' | null) =>
      useFollowUpLeads({ figure, pageSize: 2, fetch: gateway.fetch, getToken: async () => 't' }),
      { initialProps: null as 'pendingT7' | null },
    );
    expect(result.current.status).toBe('idle');
    expect(gateway.jsonRequests).toHaveLength(0);
    rerender('pendingT7');
    await until(() => result.current.status === 'ready');
    expect(result.current.items.map((i) => i.leadId)).toEqual([1, 2]);
    expect(result.current.hasMore).toBe(true);
    act(() => result.current.loadMore());
    await until(() => result.current.items.length === 3);
    expect(result.current.hasMore).toBe(false);
    expect(gateway.jsonRequests.every((r) => r.headers.get('Authorization') === 'Bearer t')).toBe(true);
  });

  it('useFollowUpHistory reloads the whole range when the day has turned', async () => {
    const state = { total: 0, history: historyOf(3, {}) };
    const gateway = gatewayWith(state);
    const { result, rerender } = renderHook((key: number) =>
      useFollowUpHistory({ days: 3, refreshOn: key, debounceMs: 10, fetch: gateway.fetch }),
      { initialProps: 0 },
    );
    await until(() => result.current.status === 'ready');
    expect(result.current.days!.map((d) => d.date)).toEqual(['2026-11-28', '2026-11-29', '2026-11-30']);
    // Midnight: the gateway's today is the 1st of December.
    state.history = { scope: 'org', days: [day('2026-11-29'), day('2026-11-30'), day('2026-12-01', { t3Sent: 2 })] };
    rerender(1);
    await until(() => result.current.days!.at(-1)!.date === '2026-12-01');
    expect(result.current.days!.map((d) => d.date)).toEqual(['2026-11-29', '2026-11-30', '2026-12-01']);
    expect(historyRequests(gateway).map((r) => r.url.searchParams.get('days'))).toEqual(['3', '1', '3']);
  });
});
