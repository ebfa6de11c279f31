// The figures stream of one scope, kept open for as long as the host is signed in: reconnects
// with `Last-Event-ID`, and re-authorises before the token expires by opening the successor
// stream with a fresh token and closing the old one only once the successor delivered its first
// frame (make before break: no gap, no lost change, no "signed out" in between). The gateway
// ends a stream when its token expires, so a stream that is not renewed ends, as it should.
import { authorised, currentToken, type GatewayOptions, gatewayUrl, refusal, StreamRefused } from './request';
import { readFrames } from './sse';
import { renewalDelay, tokenExpiresAt } from './token';
import type { Figures, StreamStatus } from './types';

export { StreamRefused };

/**
 * Where the figures come from and how the caller is authorised (`getToken` is called at connect
 * and before each expiry).
 */
export interface FeedOptions extends GatewayOptions {
  /** The stream's path: `/api/dashboard/followup-stream` or the CRM's `/metrics/followup/stream`. */
  path?: string;
  /** Open the successor stream this long before the token expires (at most a quarter of its life). */
  renewBeforeMs?: number;
  /** Reconnect when no frame came for this long (the gateway sends one at least every 5 s). */
  watchdogMs?: number;
}

/** What the feed tells its owner. */
export interface FeedListener {
  figures(figures: Figures, lastEventId: string): void;
  status(status: StreamStatus, detail?: string): void;
  /** A successor stream took over with a token valid until `expiresAt` (ms). */
  renewed?(expiresAt: number | null): void;
}

interface Stream {
  controller: AbortController;
  token: string | null;
  expiresAt: number | null;
}

const MAX_BACKOFF_MS = 30_000;
const SIGNED_OUT_RETRY_MS = 30_000;

export class FigureFeed {
  private current: Stream | null = null;
  private successor: Stream | null = null;
  private stopped = false;
  private lastEventId = '';
  private newestAsOf = 0;
  private backoffMs = 1000;
  private live = false;
  private refusedInRow = 0;
  /** The stream whose renewal is scheduled. */
  private renewalFor: Stream | null = null;
  private timers = new Set<ReturnType<typeof setTimeout>>();
  private watchdog: ReturnType<typeof setTimeout> | undefined;
  private readonly fetchImpl: typeof fetch;

  constructor(
    private readonly options: FeedOptions,
    private readonly listener: FeedListener,
  ) {
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  start(): void {
    this.listener.status('connecting');
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    clearTimeout(this.watchdog);
    this.current?.controller.abort();
    this.successor?.controller.abort();
  }

  private later(ms: number, action: () => void): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.stopped) action();
    }, ms);
    this.timers.add(timer);
  }

  private token(): Promise<string | null> {
    return currentToken(this.options.getToken);
  }

  /** A new stream when none is open (start, or the open one ended). */
  private async connect(refusedToken?: string | null): Promise<void> {
    const token = await this.token();
    if (this.stopped) return;
    if (this.options.getToken && (!token || token === refusedToken)) {
      this.listener.status('signed-out', 'no fresh token from the host');
      this.later(SIGNED_OUT_RETRY_MS, () => void this.connect(refusedToken));
      return;
    }
    const stream = this.open(token);
    this.current = stream;
    this.armWatchdog();
  }

  /** Opens the successor of the current stream with a fresher token, if the host has one. */
  private async renew(): Promise<void> {
    const current = this.current;
    if (!current || this.successor) return;
    const token = await this.token();
    if (this.stopped || this.current !== current) return;
    const expiresAt = token ? tokenExpiresAt(token) : null;
    if (!token || (current.expiresAt !== null && expiresAt !== null && expiresAt <= current.expiresAt)) {
      // Not fresher (yet): ask again shortly, until the current token expires.
      const left = (current.expiresAt ?? Date.now()) - Date.now();
      if (left > 500) this.later(Math.min(2000, left / 2), () => void this.renew());
      return;
    }
    this.successor = this.open(token);
  }

  private scheduleRenewal(stream: Stream): void {
    if (!this.options.getToken || stream.expiresAt === null) return;
    const delay = renewalDelay(stream.expiresAt, Date.now(), this.options.renewBeforeMs ?? 30_000);
    this.later(delay, () => {
      if (this.current === stream) void this.renew();
    });
  }

  private url(): string {
    return gatewayUrl(this.options, this.options.path ?? '/api/dashboard/followup-stream');
  }

  private open(token: string | null): Stream {
    const stream: Stream = {
      controller: new AbortController(),
      token,
      expiresAt: token ? tokenExpiresAt(token) : null,
    };
    const headers: Record<string, string> = { Accept: 'text/event-stream' };
    if (this.lastEventId) headers['Last-Event-ID'] = this.lastEventId;
    const run = async () => {
      const response = await this.fetchImpl(this.url(), {
        ...authorised(token, headers),
        signal: stream.controller.signal,
        cache: 'no-store',
      });
      if (!response.ok || !response.body) throw await refusal(response);
      await readFrames(response.body, (frame) => this.onFrame(stream, frame.id, frame.data));
    };
    run().then(
      () => this.onEnd(stream, null),
      (err: unknown) => this.onEnd(stream, err),
    );
    return stream;
  }

  private onFrame(stream: Stream, id: string, data: string): void {
    if (this.stopped) return;
    if (stream === this.successor) {
      // The successor is live: now the old stream may go.
      const old = this.current;
      this.current = stream;
      this.successor = null;
      old?.controller.abort();
      this.listener.renewed?.(stream.expiresAt);
    } else if (stream !== this.current) {
      return;
    }
    if (this.renewalFor !== stream) {
      this.renewalFor = stream;
      this.scheduleRenewal(stream);
    }
    if (!this.live) {
      this.live = true;
      this.backoffMs = 1000;
      this.refusedInRow = 0;
      this.listener.status('live');
    }
    this.armWatchdog();
    if (id) this.lastEventId = id;
    let figures: Figures;
    try {
      figures = JSON.parse(data) as Figures;
    } catch {
      console.warn('followup widget: unreadable frame', data);
      return;
    }
    const at = Date.parse(figures.asOf) || 0;
    if (at < this.newestAsOf) return; // older than what is shown (a late answer)
    this.newestAsOf = at;
    this.listener.figures(figures, this.lastEventId);
  }

  private armWatchdog(): void {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      if (this.stopped) return;
      console.warn('followup widget: no frame in time, reconnecting');
      this.current?.controller.abort();
    }, this.options.watchdogMs ?? 15_000);
  }

  private onEnd(stream: Stream, err: unknown): void {
    if (this.stopped) return;
    if (stream === this.successor) {
      // The renewal failed; the current stream still runs until its token expires.
      this.successor = null;
      if (this.current) this.later(2000, () => void this.renew());
      return;
    }
    if (stream !== this.current) return; // replaced by its successor
    this.current = null;
    this.live = false;
    if (this.successor) return; // the successor takes over on its first frame
    this.reconnectAfter(err, stream.token);
  }

  private reconnectAfter(err: unknown, token: string | null): void {
    if (err instanceof StreamRefused) {
      if (err.status === 401) {
        if (!this.options.getToken) {
          this.listener.status('signed-out', err.detail);
          this.later(SIGNED_OUT_RETRY_MS, () => void this.connect());
        } else {
          // The host may hold a fresher token than the one refused; at once the first time.
          const delay = this.refusedInRow++ === 0 ? 0 : this.nextBackoff();
          this.later(delay, () => void this.connect(token));
        }
        return;
      }
      if (err.status === 403) {
        this.listener.status('forbidden', err.detail);
        return;
      }
      if (err.retryAfterMs !== null) {
        this.listener.status('reconnecting', err.detail);
        this.later(err.retryAfterMs, () => void this.connect());
        return;
      }
    }
    this.listener.status('reconnecting');
    this.later(this.nextBackoff(), () => void this.connect());
  }

  /** 1 s, 2 s, 4 s … 30 s; back to 1 s once a stream is live. */
  private nextBackoff(): number {
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
    return delay;
  }
}
