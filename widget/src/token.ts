// What the widget reads from an access token: only its expiry, to renew before it. The token is
// verified by the gateway, never here.

/** The `exp` claim of a JWT in milliseconds since the epoch, or `null` if it has none. */
export function tokenExpiresAt(token: string): number | null {
  const payload = token.split('.')[1];
  if (!payload) return null;
  try {
    const base64 = payload.replace(/-/g, '+').replace(/_/g, '/');
    const json = atob(base64.padEnd(base64.length + ((4 - (base64.length % 4)) % 4), '='));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : null;
  } catch {
    return null;
  }
}

/**
 * When to open the successor stream of one authorised by a token expiring at `expiresAt`: a
 * quarter of the remaining lifetime early, at most `renewBeforeMs`, at least one second early.
 */
export function renewalDelay(expiresAt: number, now: number, renewBeforeMs: number): number {
  const remaining = expiresAt - now;
  const lead = Math.max(1000, Math.min(renewBeforeMs, remaining / 4));
  return Math.max(0, remaining - lead);
}
