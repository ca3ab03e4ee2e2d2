import http from 'node:http';
import https from 'node:https';
import axios, { type AxiosInstance } from 'axios';
import { parseRetryAfter } from './backoff';

/**
 * What one `/engage` request came to. `/engage` answers 200 even for bad data, so the body decides: with
 * `verbose=1` it is `{status: 1|0, error}` and `status: 0` is a rejection.
 */
export type EngageOutcome =
  | { kind: 'ok' }
  | { kind: 'rejected'; status: number; reason: string } // 400, other 4xx, 501, 200 with status 0: never retried
  | { kind: 'auth'; status: number; reason: string } // 401/403: pause until the token is fixed
  | { kind: 'too-large'; status: number; reason: string } // 413: split the batch
  | { kind: 'retry'; status?: number; reason: string; retryAfterMs?: number }; // 429, 408, 5xx, network

export type EngagePost = (body: string) => Promise<EngageOutcome>;

/** The profile-update URL: JSON array body, verbose replies, no IP geolocation from our server's address. */
export function engageUrl(apiHost: string): string {
  return `${apiHost}/engage?verbose=1&ip=0`;
}

/** Keeps at most this much of a reply in error messages. */
function excerpt(text: string): string {
  const t = text.replace(/\s+/g, ' ').trim();
  return t.length > 300 ? `${t.slice(0, 300)}…` : t;
}

export function classifyReply(status: number, body: string, retryAfter: string | undefined, now: number): EngageOutcome {
  if (status >= 200 && status < 300) {
    const trimmed = body.trim();
    if (trimmed === '1') return { kind: 'ok' };
    if (trimmed === '0') return { kind: 'rejected', status, reason: 'Mixpanel answered 0: no update in the batch was valid' };
    try {
      const parsed = JSON.parse(trimmed) as { status?: unknown; error?: unknown };
      if (parsed.status === 1 || parsed.status === '1') return { kind: 'ok' };
      const err = typeof parsed.error === 'string' && parsed.error ? parsed.error : 'status 0 without a message';
      return { kind: 'rejected', status, reason: `Mixpanel rejected the batch: ${err}` };
    } catch {
      return { kind: 'retry', status, reason: `unreadable reply from /engage: ${excerpt(body)}` };
    }
  }
  const text = `HTTP ${status}${body ? `: ${excerpt(body)}` : ''}`;
  if (status === 401 || status === 403) return { kind: 'auth', status, reason: `Mixpanel refused the token (${text})` };
  if (status === 413) return { kind: 'too-large', status, reason: `batch too large (${text})` };
  if (status === 429 || status === 408 || (status >= 500 && status !== 501)) {
    return { kind: 'retry', status, reason: text, retryAfterMs: parseRetryAfter(retryAfter, now) };
  }
  return { kind: 'rejected', status, reason: `Mixpanel rejected the batch (${text})` };
}

/** One keep-alive HTTP client per Mixpanel host; the request timeout is 10 s as Segment and RudderStack use. */
export function createEngagePost(apiHost: string, opts: { timeoutMs?: number; now?: () => number } = {}): { post: EngagePost; close(): void } {
  const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 16 });
  const client: AxiosInstance = axios.create({
    httpAgent,
    httpsAgent,
    timeout: opts.timeoutMs ?? 10000,
    maxRedirects: 0,
    proxy: false,
    responseType: 'text',
    transformResponse: (x: unknown) => x,
    // The body is already a JSON string: axios's default transform would JSON.parse all of it again just to check it.
    transformRequest: (x: unknown) => x,
    validateStatus: () => true,
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
  });
  const url = engageUrl(apiHost);
  const now = opts.now ?? Date.now;
  return {
    async post(body) {
      try {
        const res = await client.post<string>(url, body);
        const retryAfter = res.headers['retry-after'] as string | undefined;
        return classifyReply(res.status, typeof res.data === 'string' ? res.data : String(res.data ?? ''), retryAfter, now());
      } catch (err) {
        const e = err as { code?: string; message?: string };
        return { kind: 'retry', reason: `network error: ${e.code ?? ''} ${e.message ?? String(err)}`.trim() };
      }
    },
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}
