import { act, cleanup, render, screen } from '@testing-library/react';
import { afterEach, describe, expect, it } from 'vitest';

import { FollowUpWidget } from '../src/FollowUpWidget';
import { FakeGateway, until } from './fakeGateway';

afterEach(cleanup);

async function renderWith(props: Parameters<typeof FollowUpWidget>[0] = {}) {
  const gateway = new FakeGateway();
  const view = render(<FollowUpWidget fetch={gateway.fetch} {...props} />);
  const stream = await gateway.requested(1);
  return { gateway, stream, view };
}

describe('FollowUpWidget', () => {
  // The CRM sprint's own test, against our frames.
  it('should display real-time metrics', async () => {
    const { stream } = await renderWith();
    await act(async () => {
      stream.send(1, { pendingT3: 10, pendingT7: 5, sentToday: 15, conversionRate: 35 });
    });
    await until(() => screen.queryByText('10') !== null);
    expect(screen.getByText('10')).toBeTruthy();
    expect(screen.getByText('35,0 %')).toBeTruthy(); // German: decimal comma, spaced percent
  });

  it('speaks German by default: title, labels, trend, status, time in the zone given', async () => {
    const { stream, view } = await renderWith({ timeZone: 'Europe/Berlin' });
    await act(async () => {
      stream.send(1, { pendingT3: 1234, t3Trend: 'up', asOf: '2026-11-30T09:15:07Z', scope: 'user:anna' });
    });
    await until(() => screen.queryByText('1.234') !== null);
    expect(screen.getByRole('heading', { level: 2 }).textContent).toBe('Follow-up Automation');
    expect(screen.getByText('T+3 ausstehend')).toBeTruthy();
    expect(screen.getByRole('status').textContent).toBe('live');
    expect(view.container.querySelector('[data-as-of]')!.textContent).toBe('Stand 10:15:07');
    expect(view.container.querySelector('[data-scope]')!.textContent).toBe('Benutzer anna');
    const tile = view.container.querySelector('[data-tile="pendingT3"]')!;
    expect(tile.getAttribute('aria-label')).toBe('T+3 ausstehend: 1.234, gestiegen seit Mitternacht');
  });

  it('speaks English when the host asks, with English number formats', async () => {
    const { stream, view } = await renderWith({ locale: 'en-GB', timeZone: 'Europe/London' });
    await act(async () => {
      stream.send(1, { pendingT3: 1234, conversionRate: 12.5, asOf: '2026-11-30T09:15:07Z' });
    });
    await until(() => screen.queryByText('1,234') !== null);
    expect(screen.getByText('T+3 pending')).toBeTruthy();
    expect(screen.getByText('12.5%')).toBeTruthy();
    expect(view.container.querySelector('[data-as-of]')!.textContent).toBe('as of 09:15:07');
    expect(view.container.querySelector('section')!.getAttribute('lang')).toBe('en');
  });

  it('announces changes politely and every tile is reachable by keyboard', async () => {
    const { view } = await renderWith();
    const live = view.container.querySelector('[aria-live]')!;
    expect(live.getAttribute('aria-live')).toBe('polite');
    const tiles = view.container.querySelectorAll('[data-tile]');
    expect(tiles).toHaveLength(4);
    for (const tile of tiles) expect((tile as HTMLElement).tabIndex).toBe(0);
  });

  it('shows "abgemeldet" when the gateway refuses the session', async () => {
    const gateway = new FakeGateway();
    gateway.answer = () => ({ status: 401, body: { code: 'unauthorized', detail: 'token expired' } });
    const view = render(<FollowUpWidget fetch={gateway.fetch} />);
    await until(() => view.container.querySelector('[data-state="signed-out"]') !== null);
    expect(screen.getByRole('status').textContent).toBe('abgemeldet');
    expect(screen.getByRole('status').getAttribute('title')).toBe('token expired');
  });
});
