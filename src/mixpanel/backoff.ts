/**
 * Mixpanel's documented retry policy (reference/mixpanel-api.md §0.4): start at 2 s, double up to 60 s, add 1–5 s of
 * jitter; a `Retry-After` the server sends wins when it is longer (capped so a bogus value cannot park us forever).
 * Pure and injectable so tests run it on a scaled-down clock.
 */
export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
  jitterMinMs: number;
  jitterMaxMs: number;
  retryAfterCapMs: number;
}

export const MIXPANEL_BACKOFF: BackoffPolicy = {
  baseMs: 2000,
  maxMs: 60000,
  jitterMinMs: 1000,
  jitterMaxMs: 5000,
  retryAfterCapMs: 10 * 60000,
};

/** Delay before retry number `attempt` (0 for the first retry). */
export function backoffDelay(policy: BackoffPolicy, attempt: number, retryAfterMs?: number, random = Math.random): number {
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(attempt, 30));
  const jitter = policy.jitterMinMs + random() * (policy.jitterMaxMs - policy.jitterMinMs);
  const computed = exp + jitter;
  if (retryAfterMs === undefined) return computed;
  return Math.max(computed, Math.min(retryAfterMs, policy.retryAfterCapMs));
}

/** `Retry-After` as seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
