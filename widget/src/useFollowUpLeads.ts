// The leads behind a figure (`GET /api/followup/leads`), a page at a time: the first page when
// `figure` is set, the next one on `loadMore()` (the gateway's keyset cursor `next`).
import { useCallback, useEffect, useRef, useState } from 'react';

import { type GatewayOptions, getJson, StreamRefused } from './request';
import type { LeadFigure, LeadItem, LeadPage } from './types';

/** Options of {@link useFollowUpLeads}: the figure (none: nothing is loaded) and the gateway. */
export interface FollowUpLeadsOptions extends GatewayOptions {
  figure: LeadFigure | null | undefined;
  /** Leads per page (1 to 200; default 25). */
  pageSize?: number;
}

/** Where a list (or the history) stands. */
export type LoadStatus = 'idle' | 'loading' | 'ready' | 'error';

/** What {@link useFollowUpLeads} returns. */
export interface FollowUpLeadsState {
  /** Every lead loaded so far, in the gateway's order. */
  items: LeadItem[];
  status: LoadStatus;
  /** Why the last request failed (the gateway's `detail`). */
  error: string | undefined;
  /** Whether the gateway has another page. */
  hasMore: boolean;
  /** Loads the next page (no-op while loading or on the last page). */
  loadMore: () => void;
}

/** Why a request failed, as the gateway said it. */
export function failureText(err: unknown): string {
  if (err instanceof StreamRefused) return err.detail;
  return err instanceof Error ? err.message : String(err);
}

export function useFollowUpLeads(options: FollowUpLeadsOptions): FollowUpLeadsState {
  const { figure, pageSize = 25, baseUrl, owner, fetch } = options;
  const getToken = useRef(options.getToken);
  getToken.current = options.getToken;
  const hasGetToken = options.getToken !== undefined;
  const [state, setState] = useState<Omit<FollowUpLeadsState, 'loadMore'>>({
    items: [],
    status: 'idle',
    error: undefined,
    hasMore: false,
  });
  const next = useRef<string | null | undefined>(undefined);
  const loading = useRef<AbortController | null>(null);

  const load = useCallback(
    (after: string | undefined, replace: boolean) => {
      if (!figure) return;
      const controller = new AbortController();
      loading.current = controller;
      setState((s) => ({ ...s, items: replace ? [] : s.items, status: 'loading', error: undefined }));
      const gateway: GatewayOptions = {
        baseUrl,
        owner,
        fetch,
        getToken: hasGetToken ? () => getToken.current?.() : undefined,
      };
      getJson<LeadPage>(gateway, '/api/followup/leads', { figure, limit: pageSize, after }, controller.signal).then(
        (page) => {
          if (loading.current !== controller) return;
          loading.current = null;
          next.current = page.next;
          setState((s) => ({
            items: replace ? page.items : [...s.items, ...page.items],
            status: 'ready',
            error: undefined,
            hasMore: Boolean(page.next),
          }));
        },
        (err: unknown) => {
          if (loading.current !== controller) return;
          loading.current = null;
          setState((s) => ({ ...s, status: 'error', error: failureText(err) }));
        },
      );
    },
    [figure, pageSize, baseUrl, owner, fetch, hasGetToken],
  );

  useEffect(() => {
    next.current = undefined;
    if (figure) load(undefined, true);
    else setState({ items: [], status: 'idle', error: undefined, hasMore: false });
    return () => {
      loading.current?.abort();
      loading.current = null;
    };
  }, [figure, load]);

  const loadMore = useCallback(() => {
    if (loading.current || !next.current) return;
    load(next.current, false);
  }, [load]);

  return { ...state, loadMore };
}
