import { afterEach, describe, expect, it } from 'vitest';

import { type FeedOptions, FigureFeed } from '../src/feed';
import type { Figures, StreamStatus } from '../src/types';
import { FakeGateway, tokenExpiringIn, until } from './fakeGateway';

function startFeed(gateway: FakeGateway, options: Partial<FeedOptions> = {}) {
  const seen = { figures: [] as Figures[], statuses: [] as StreamStatus[], renewals: 0 };
  const feed = new FigureFeed(
    { baseUrl: 'https://gw.example', fetch: gateway.fetch, ...options },
    {
      figures: (f) => seen.figures.push(f),
      status: (s) => seen.statuses.push(s),
      renewed: () => seen.renewals++,
    },
  );
  feed.start();
  feeds.push(feed);
  return { feed, seen };
}

const feeds: FigureFeed[] = [];
afterEach(() => {
  for (const feed of feeds.splice(0)) feed.stop();
});

describe('FigureFeed', () => {
  it('sends the Bearer token from getToken and shows each frame', async () => {
    const gateway = new FakeGateway();
    const token = tokenExpiringIn(300);
    const { seen } = startFeed(gateway, { getToken: async () => token, owner: 'u 1' });
    const stream = await gateway.requested(1);
    expect(stream.url).toBe('https://gw.example/api/dashboard/followup-stream?owner=u%201');
    expect(stream.headers.get('authorization')).toBe(`Bearer ${token}`);
    expect(stream.headers.get('last-event-id')).toBeNull();
    stream.send(1, { pendingT3: 10 });
    stream.send(2, { pendingT3: 11 });
    await until(() => seen.figures.length === 2);
    expect(seen.figures.map((f) => f.pendingT3)).toEqual([10, 11]);
    expect(seen.statuses).toEqual(['connecting', 'live']);
  });

  it('reconnects after the stream ends, with Last-Event-ID', async () => {
    const gateway = new FakeGateway();
    const { seen } = startFeed(gateway);
    const first = await gateway.requested(1);
    first.send(41, {});
    await until(() => seen.figures.length === 1);
    first.end();
    const second = await gateway.requested(2);
    expect(second.headers.get('last-event-id')).toBe('41');
    expect(second.headers.get('authorization')).toBeNull(); // same origin: the session cookie
    expect(seen.statuses).toContain('reconnecting');
  });

  it('re-authorises before expiry: the successor opens with a fresh token, the old one closes after its first frame', async () => {
    const gateway = new FakeGateway();
    const tokens = [tokenExpiringIn(2), tokenExpiringIn(60)];
    let calls = 0;
    const { seen } = startFeed(gateway, { getToken: () => tokens[Math.min(calls++, 1)] });
    const old = await gateway.requested(1);
    old.send(5, { pendingT3: 1 });
    // renewal at 1 s of a 2 s token
    const successor = await gateway.requested(2, 3000);
    expect(successor.headers.get('authorization')).toBe(`Bearer ${tokens[1]}`);
    expect(successor.headers.get('last-event-id')).toBe('5');
    expect(old.aborted).toBe(false); // still showing changes until the successor is live
    old.send(6, { pendingT3: 2 });
    await until(() => seen.figures.length === 2);
    successor.send(7, { pendingT3: 2 });
    await until(() => old.aborted);
    expect(seen.renewals).toBe(1);
    expect(seen.statuses).toEqual(['connecting', 'live']); // never signed out, never reconnecting
    expect(gateway.requests).toHaveLength(2);
  });

  it('keeps the old stream when the host has no fresher token, and says signed out after it ends', async () => {
    const gateway = new FakeGateway();
    const token = tokenExpiringIn(2);
    const { seen } = startFeed(gateway, { getToken: () => token });
    const only = await gateway.requested(1);
    only.send(1, {});
    await new Promise((r) => setTimeout(r, 1500));
    expect(gateway.requests).toHaveLength(1); // no successor with the same token
    gateway.answer = () => ({ status: 401, body: { code: 'unauthorized', detail: 'token expired' } });
    only.end(); // the gateway ends the stream at expiry
    await until(() => seen.statuses.includes('signed-out'));
  });

  it('asks the host again after a 401 and carries on with its fresher token', async () => {
    const gateway = new FakeGateway();
    const tokens = [tokenExpiringIn(60), tokenExpiringIn(120)];
    let calls = 0;
    gateway.answer = (_url, headers) =>
      headers.get('authorization') === `Bearer ${tokens[0]}` ? { status: 401 } : 'stream';
    const { seen } = startFeed(gateway, { getToken: () => tokens[Math.min(calls++, 1)] });
    const stream = await gateway.requested(1);
    stream.send(1, { sentToday: 9 });
    await until(() => seen.figures.length === 1);
    expect(seen.statuses).not.toContain('signed-out');
  });

  it('stops on 403 with the gateway detail, and waits Retry-After on 429', async () => {
    const gateway = new FakeGateway();
    gateway.answer = () => ({ status: 403, body: { code: 'forbidden', detail: 'sales may not pass owner' } });
    const { seen } = startFeed(gateway);
    await until(() => seen.statuses.includes('forbidden'));

    const busy = new FakeGateway();
    let refused = 0;
    busy.answer = () => (refused++ === 0 ? { status: 429, retryAfter: 1 } : 'stream');
    const started = Date.now();
    startFeed(busy);
    await busy.requested(1, 3000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });

  it('ignores frames older than the figures shown', async () => {
    const gateway = new FakeGateway();
    const { seen } = startFeed(gateway);
    const stream = await gateway.requested(1);
    stream.send(2, { pendingT3: 5, asOf: '2026-11-30T10:00:01Z' });
    stream.send(3, { pendingT3: 4, asOf: '2026-11-30T10:00:00Z' });
    stream.send(4, { pendingT3: 6, asOf: '2026-11-30T10:00:02Z' });
    await until(() => seen.figures.length === 2);
    expect(seen.figures.map((f) => f.pendingT3)).toEqual([5, 6]);
  });
});
