// How every request of the widget is authorised, in one place: the host's token as
// `Authorization: Bearer` (no cookie then), or, without `getToken`, the gateway's same-origin
// session cookie. The figures stream (`feed.ts`) and the JSON reads (lists, history) share it.

/** Where the gateway is and how the caller is authorised; the options every hook takes. */
export interface GatewayOptions {
  /** Origin of the gateway, e.g. `https://followup.example.com`; empty for the page's own. */
  baseUrl?: string;
  /** A manager's view of one sales user (`?owner=`). */
  owner?: string;
  /**
   * The host's current access token (from its identity provider session), called for each
   * request. Without it the widget relies on the gateway's same-origin session cookie.
   */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** For tests and unusual hosts. */
  fetch?: typeof fetch;
}

/** A refused request: HTTP status, the gateway's `detail`, its `Retry-After`. */
export class StreamRefused extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly retryAfterMs: number | null,
  ) {
    super(`stream refused (${status}): ${detail}`);
  }
}

/** The host's token, or `null` (no `getToken`, none given, or it threw). */
export async function currentToken(getToken: GatewayOptions['getToken']): Promise<string | null> {
  if (!getToken) return null;
  try {
    return (await getToken()) || null;
  } catch (err) {
    console.warn('followup widget: getToken failed', err);
    return null;
  }
}

/** Headers and credentials of a request authorised by `token` (or by the cookie without one). */
export function authorised(
  token: string | null,
  headers: Record<string, string>,
): { headers: Record<string, string>; credentials: RequestCredentials } {
  const all = { ...headers };
  if (token) all.Authorization = `Bearer ${token}`;
  // A Bearer request needs no cookie; without a token the session cookie is the credential.
  return { headers: all, credentials: token ? 'omit' : 'same-origin' };
}

/** `baseUrl + path`, with the defined `params` (and `owner`) as the query. */
export function gatewayUrl(
  options: GatewayOptions,
  path: string,
  params: Record<string, string | number | undefined> = {},
): string {
  const search = Object.entries({ ...params, owner: options.owner })
    .filter(([, value]) => value !== undefined && value !== '')
    .map(([name, value]) => `${name}=${encodeURIComponent(String(value))}`)
    .join('&');
  return `${options.baseUrl ?? ''}${path}${search ? `?${search}` : ''}`;
}

/** GET a JSON document of the gateway; a refusal throws {@link StreamRefused}. */
export async function getJson<T>(
  options: GatewayOptions,
  path: string,
  params: Record<string, string | number | undefined>,
  signal?: AbortSignal,
): Promise<T> {
  const fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  const token = await currentToken(options.getToken);
  const response = await fetchImpl(gatewayUrl(options, path, params), {
    ...authorised(token, { Accept: 'application/json' }),
    signal,
    cache: 'no-store',
  });
  if (!response.ok) throw await refusal(response);
  return (await response.json()) as T;
}

/** The error of a refused request, with the gateway's `detail` when it sent its JSON body. */
export async function refusal(response: Response): Promise<StreamRefused> {
  let detail = response.statusText || `HTTP ${response.status}`;
  try {
    const body = (await response.json()) as { detail?: string };
    if (body.detail) detail = body.detail;
  } catch {
    // not our JSON error body (a proxy's page): keep the status text
  }
  const retryAfter = Number(response.headers.get('Retry-After'));
  return new StreamRefused(
    response.status,
    detail,
    Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : null,
  );
}
