// The React hook of the CRM's sprint (`useFollowUpMetrics`), on the gateway's stream: same name
// and `{ data }`, plus where the stream stands, and options for another origin and its tokens.
import { useEffect, useRef, useState } from 'react';

import { type FeedOptions, FigureFeed } from './feed';
import type { Figures, StreamStatus } from './types';

/** Options of {@link useFollowUpMetrics}; all optional (same origin, session cookie). */
export type FollowUpMetricsOptions = FeedOptions;

/** What the hook returns. */
export interface FollowUpMetricsState {
  /** The latest figures; `undefined` until the first frame. */
  data: Figures | undefined;
  status: StreamStatus;
  /** Why the stream is not live (the gateway's `detail`), if it said. */
  detail: string | undefined;
  /** The `id` of the last frame (sent as `Last-Event-ID` on reconnect). */
  lastEventId: string;
  /** How many times the stream was re-authorised with a fresh token. */
  renewals: number;
}

/** Follows the figures of the caller's scope (or `owner`'s) live. */
export function useFollowUpMetrics(options: FollowUpMetricsOptions = {}): FollowUpMetricsState {
  const [state, setState] = useState<FollowUpMetricsState>({
    data: undefined,
    status: 'connecting',
    detail: undefined,
    lastEventId: '',
    renewals: 0,
  });
  // The host may pass a new function each render; the feed always calls the latest.
  const getToken = useRef(options.getToken);
  getToken.current = options.getToken;
  const hasGetToken = options.getToken !== undefined;
  const { baseUrl, path, owner, renewBeforeMs, watchdogMs, fetch } = options;

  useEffect(() => {
    const feed = new FigureFeed(
      {
        baseUrl,
        path,
        owner,
        renewBeforeMs,
        watchdogMs,
        fetch,
        getToken: hasGetToken ? () => getToken.current?.() : undefined,
      },
      {
        figures: (data, lastEventId) => setState((s) => ({ ...s, data, lastEventId })),
        status: (status, detail) => setState((s) => ({ ...s, status, detail })),
        renewed: () => setState((s) => ({ ...s, renewals: s.renewals + 1 })),
      },
    );
    feed.start();
    return () => feed.stop();
  }, [baseUrl, path, owner, renewBeforeMs, watchdogMs, fetch, hasGetToken]);

  return state;
}
