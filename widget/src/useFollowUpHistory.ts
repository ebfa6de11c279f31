// How the figures moved (`GET /api/followup/history?days=N`): N local days, oldest first, the
// last one today. Today's bucket changes as follow-ups go out, so it is reloaded (`?days=1`,
// debounced) whenever `refreshOn` changes — the widget passes a key of the latest figures frame,
// so the chart follows the stream without a frame type of its own. When the day has turned
// meanwhile, the whole range is reloaded.
import { useCallback, useEffect, useRef, useState } from 'react';

import { type GatewayOptions, getJson } from './request';
import type { History, HistoryDay } from './types';
import { failureText, type LoadStatus } from './useFollowUpLeads';

/** Options of {@link useFollowUpHistory}. */
export interface FollowUpHistoryOptions extends GatewayOptions {
  /** Days to show, 1 to 365 (default 30). */
  days?: number;
  /** Any value: when it changes, today's bucket is reloaded (after `debounceMs`). */
  refreshOn?: unknown;
  /** Default 1000 ms: a burst of changes costs one request. */
  debounceMs?: number;
}

/** What {@link useFollowUpHistory} returns. */
export interface FollowUpHistoryState {
  /** The days, oldest first; `undefined` until loaded. */
  days: HistoryDay[] | undefined;
  scope: string | undefined;
  status: LoadStatus;
  error: string | undefined;
  /** Reloads today's bucket now. */
  refresh: () => void;
}

export function useFollowUpHistory(options: FollowUpHistoryOptions = {}): FollowUpHistoryState {
  const { days = 30, refreshOn, debounceMs = 1000, baseUrl, owner, fetch } = options;
  const getToken = useRef(options.getToken);
  getToken.current = options.getToken;
  const hasGetToken = options.getToken !== undefined;
  const [state, setState] = useState<Omit<FollowUpHistoryState, 'refresh'>>({
    days: undefined,
    scope: undefined,
    status: 'idle',
    error: undefined,
  });
  const shown = useRef<HistoryDay[] | undefined>(undefined);
  const generation = useRef(0);

  const gateway = useCallback(
    (): GatewayOptions => ({ baseUrl, owner, fetch, getToken: hasGetToken ? () => getToken.current?.() : undefined }),
    [baseUrl, owner, fetch, hasGetToken],
  );

  const loadAll = useCallback(() => {
    const mine = ++generation.current;
    setState((s) => ({ ...s, status: s.days ? s.status : 'loading' }));
    getJson<History>(gateway(), '/api/followup/history', { days }).then(
      (history) => {
        if (mine !== generation.current) return;
        shown.current = history.days;
        setState({ days: history.days, scope: history.scope, status: 'ready', error: undefined });
      },
      (err: unknown) => {
        if (mine !== generation.current) return;
        setState((s) => ({ ...s, status: 'error', error: failureText(err) }));
      },
    );
  }, [gateway, days]);

  const refresh = useCallback(() => {
    const current = shown.current;
    if (!current || current.length === 0) return loadAll();
    const mine = ++generation.current;
    getJson<History>(gateway(), '/api/followup/history', { days: 1 }).then(
      (history) => {
        if (mine !== generation.current) return;
        const today = history.days[history.days.length - 1];
        const last = current[current.length - 1];
        if (!today) return;
        if (today.date !== last.date) return loadAll(); // a new day began: shift the range
        const updated = [...current.slice(0, -1), today];
        shown.current = updated;
        setState({ days: updated, scope: history.scope, status: 'ready', error: undefined });
      },
      (err: unknown) => {
        if (mine !== generation.current) return;
        setState((s) => ({ ...s, status: 'error', error: failureText(err) }));
      },
    );
  }, [gateway, loadAll]);

  useEffect(() => {
    shown.current = undefined;
    loadAll();
    return () => {
      generation.current++;
    };
  }, [loadAll]);

  // Today's bucket follows `refreshOn` (not on the first render: the full load covers it).
  const previous = useRef(refreshOn);
  useEffect(() => {
    if (Object.is(previous.current, refreshOn)) return;
    previous.current = refreshOn;
    const timer = setTimeout(refresh, debounceMs);
    return () => clearTimeout(timer);
  }, [refreshOn, refresh, debounceMs]);

  return { ...state, refresh };
}
