import { describe, expect, it } from 'vitest';

import { renewalDelay, tokenExpiresAt } from '../src/token';
import { tokenExpiringIn } from './fakeGateway';

describe('tokens', () => {
  it('reads exp in milliseconds, null when absent or unreadable', () => {
    const token = tokenExpiringIn(20);
    const exp = tokenExpiresAt(token)!;
    expect(Math.abs(exp - (Date.now() + 20_000))).toBeLessThan(1500);
    expect(tokenExpiresAt('not-a-jwt')).toBeNull();
    expect(tokenExpiresAt('a.!!!.c')).toBeNull();
    expect(tokenExpiresAt(`a.${btoa('{"sub":"x"}')}.c`)).toBeNull();
  });

  it('renews a quarter of the lifetime early, at most renewBeforeMs, at least 1 s', () => {
    const now = 1_000_000;
    expect(renewalDelay(now + 20_000, now, 30_000)).toBe(15_000); // 20 s token: at 15 s
    expect(renewalDelay(now + 300_000, now, 30_000)).toBe(270_000); // 5 min: 30 s early
    expect(renewalDelay(now + 2_000, now, 30_000)).toBe(1_000); // at least 1 s early
    expect(renewalDelay(now - 5_000, now, 30_000)).toBe(0); // already expired: now
  });
});
