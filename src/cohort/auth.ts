import crypto from 'node:crypto';
import type { CohortAuth } from './settings';

/**
 * Webhook authentication. Mixpanel's webhook form offers only HTTP Basic; a secret path segment is our alternative.
 * Comparisons hash both sides first (SHA-256) and compare the digests with `timingSafeEqual`: equal lengths always
 * (no RangeError, no length leak), and both username and password are compared before the result is looked at.
 */
export interface AuthSecrets {
  username?: string;
  password?: string;
  token?: string;
}

export type AuthOutcome = 'ok' | 'missing' | 'wrong';

const digest = (s: string) => crypto.createHash('sha256').update(s, 'utf8').digest();

export function safeEqual(given: string, expected: string): boolean {
  return crypto.timingSafeEqual(digest(given), digest(expected));
}

/** The configuration problem that keeps the endpoint closed, or undefined when the secrets fit the mode. */
export function authConfigProblem(mode: CohortAuth, secrets: AuthSecrets): 'no-credentials' | 'no-token' | undefined {
  if (mode === 'basic' && (!secrets.username || !secrets.password)) return 'no-credentials';
  if (mode === 'token' && !secrets.token) return 'no-token';
  return undefined;
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Splits `Authorization: Basic base64(user:pass)`; undefined when absent or not Basic. */
export function parseBasic(value: string | undefined): { username: string; password: string } | undefined {
  if (!value) return undefined;
  const m = /^\s*basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(value);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/**
 * Checks a request. `pathToken` is the last path segment after the configured path (token mode).
 * Callers must have rejected a mode whose secrets are missing (authConfigProblem) before serving requests.
 */
export function checkAuth(
  mode: CohortAuth,
  secrets: AuthSecrets,
  headers: Record<string, string | string[] | undefined>,
  pathToken: string | undefined,
): AuthOutcome {
  if (mode === 'none') return 'ok';
  if (mode === 'token') {
    if (!pathToken) return 'missing';
    return safeEqual(pathToken, secrets.token ?? '') && !!secrets.token ? 'ok' : 'wrong';
  }
  const given = parseBasic(header(headers, 'authorization'));
  if (!given) return 'missing';
  const userOk = safeEqual(given.username, secrets.username ?? '');
  const passOk = safeEqual(given.password, secrets.password ?? '');
  return userOk && passOk && !!secrets.username && !!secrets.password ? 'ok' : 'wrong';
}
