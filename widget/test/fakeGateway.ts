// A stand-in for the gateway's HTTP side in unit tests: records each stream request (URL,
// headers) and lets the test write frames into it, end it, or answer with an error. The real
// gateway is exercised by the browser test (e2e/tests/it/widget.rs).
import type { Figures } from '../src/types';

export interface StreamRequest {
  url: string;
  headers: Headers;
  aborted: boolean;
  send(id: number, figures: Partial<Figures>): void;
  end(): void;
}

type Answer = { status: number; body?: unknown; retryAfter?: number } | 'stream';

/** A JSON request (lists, history): what was asked, and how it was authorised. */
export interface JsonRequest {
  url: URL;
  headers: Headers;
  credentials: RequestCredentials | undefined;
}

export function figures(overrides: Partial<Figures> = {}): Figures {
  return {
    pendingT3: 1,
    pendingT7: 2,
    sentToday: 3,
    conversionRate: 12.5,
    t3Trend: 'up',
    t7Trend: 'flat',
    scope: 'org',
    asOf: new Date().toISOString(),
    ...overrides,
  };
}

export class FakeGateway {
  readonly requests: StreamRequest[] = [];
  /** How the next requests are answered (default: an open stream). */
  answer: (url: string, headers: Headers) => Answer = () => 'stream';
  /** JSON requests (every path but the streams), in order. */
  readonly jsonRequests: JsonRequest[] = [];
  /** How JSON requests are answered (default: 404). */
  json: (request: JsonRequest) => { status: number; body: unknown } = () => ({
    status: 404,
    body: { code: 'not_found', detail: 'no such route' },
  });

  readonly fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = String(input);
    const headers = new Headers(init?.headers);
    if (!url.includes('stream')) {
      const request = { url: new URL(url, 'http://page.example'), headers, credentials: init?.credentials };
      this.jsonRequests.push(request);
      const { status, body } = this.json(request);
      return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
    }
    const answer = this.answer(url, headers);
    if (answer !== 'stream') {
      const extra: Record<string, string> = answer.retryAfter ? { 'Retry-After': String(answer.retryAfter) } : {};
      return new Response(JSON.stringify(answer.body ?? { code: 'x', detail: `status ${answer.status}` }), {
        status: answer.status,
        headers: { 'Content-Type': 'application/json', ...extra },
      });
    }
    const encoder = new TextEncoder();
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
    const request: StreamRequest = {
      url,
      headers,
      aborted: false,
      send: (id, f) => controller.enqueue(encoder.encode(`id: ${id}\ndata: ${JSON.stringify(figures(f))}\n\n`)),
      end: () => controller.close(),
    };
    init?.signal?.addEventListener('abort', () => {
      request.aborted = true;
      try {
        controller.error(new DOMException('aborted', 'AbortError'));
      } catch {
        // already closed
      }
    });
    this.requests.push(request);
    return new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } });
  };

  /** Waits until `n` stream requests were made. */
  async requested(n: number, timeoutMs = 5000): Promise<StreamRequest> {
    const start = Date.now();
    while (this.requests.length < n) {
      if (Date.now() - start > timeoutMs) throw new Error(`only ${this.requests.length} of ${n} requests`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return this.requests[n - 1];
  }
}

/** An unsigned JWT-shaped token expiring `seconds` from now (the widget reads `exp` only). */
export function tokenExpiringIn(seconds: number, user = 'u1'): string {
  const part = (v: object) => btoa(JSON.stringify(v)).replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
  return `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sub: user, exp: Math.floor(Date.now() / 1000) + seconds, n: Math.random() })}.sig`;
}

export async function until(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
