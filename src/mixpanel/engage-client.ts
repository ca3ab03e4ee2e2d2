import http from 'node:http';
import https from 'node:https';
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

/** A reply larger than this is cut off: `/engage` answers a few bytes, so anything bigger is not Mixpanel. */
const MAX_REPLY_BYTES = 64 * 1024;

/**
 * One keep-alive HTTP client per Mixpanel host, on Node's own `http`/`https`. The whole request (connect, send, reply)
 * must finish within 10 s, as Segment and RudderStack use; no redirects are followed and no proxy variables are read.
 *
 * Why not an HTTP library: a `/engage` call is one POST of a ready JSON string and a reply of a few bytes. axios, used
 * until now, kept ~2 MB of heap alive for as long as Node-RED runs (which V8 multiplies by up to 4 in the heap it lets
 * grow between major collections), and a POST loop through it cost 0.36 CPU s per 100k updates in `npm run bench`
 * against 0.14 through this client.
 */
export function createEngagePost(apiHost: string, opts: { timeoutMs?: number; now?: () => number } = {}): { post: EngagePost; close(): void } {
  let url: URL;
  try {
    url = new URL(engageUrl(apiHost));
  } catch (err) {
    // The config node checks the host's shape; anything it lets through that is still no URL is retried, as a
    // network error would be, instead of throwing where the node starts.
    const reason = `network error: invalid API host ${JSON.stringify(apiHost)}: ${(err as Error).message}`;
    return { post: async () => ({ kind: 'retry', reason }), close() {} };
  }
  const secure = url.protocol === 'https:';
  const agent = secure ? new https.Agent({ keepAlive: true, maxSockets: 16 }) : new http.Agent({ keepAlive: true, maxSockets: 16 });
  const request = secure ? https.request : http.request;
  const timeoutMs = opts.timeoutMs ?? 10000;
  const now = opts.now ?? Date.now;
  return {
    post(body) {
      return new Promise<EngageOutcome>((resolve) => {
        let settled = false;
        const finish = (outcome: EngageOutcome) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve(outcome);
        };
        const req = request(url, {
          method: 'POST',
          agent,
          headers: {
            'Content-Type': 'application/json',
            'Content-Length': Buffer.byteLength(body),
            Accept: 'application/json',
          },
        }, (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            if (size < MAX_REPLY_BYTES) chunks.push(chunk);
            size += chunk.length;
          });
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const retryAfter = res.headers['retry-after'];
            finish(classifyReply(res.statusCode ?? 0, text, Array.isArray(retryAfter) ? retryAfter[0] : retryAfter, now()));
          });
          res.on('error', (err) => finish(networkError(err)));
          // Closed before its end (the connection dropped mid-reply): settled here if nothing else did.
          res.on('close', () => finish(networkError(Object.assign(new Error('the reply was cut off'), { code: 'ECONNRESET' }))));
        });
        // Destroying the request ends in its 'error' event, which settles the promise.
        const timer = setTimeout(() => req.destroy(Object.assign(new Error(`no reply within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })), timeoutMs);
        req.on('error', (err) => finish(networkError(err)));
        req.end(body);
      });
    },
    close() {
      agent.destroy();
    },
  };
}

function networkError(err: Error & { code?: string }): EngageOutcome {
  return { kind: 'retry', reason: `network error: ${err.code ?? ''} ${err.message}`.trim() };
}
