import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A local HTTP server that answers `/engage` the way Mixpanel documents it (reference/mixpanel-api.md §1.6):
 * 200 + `{status:1,error:null}` with `verbose=1` when every update is well-formed, 200 + `{status:0,error}` when
 * not (Mixpanel never says 400 for bad data without verbose=2), and whatever a test scripts: 401/403 JSON errors,
 * 413, 429 with or without Retry-After, 5xx, dropped connections. It applies accepted `$set`s to its own profiles,
 * so tests assert on what Mixpanel would finally hold.
 */
export interface ScriptedReply {
  status: number;
  body?: string;
  headers?: Record<string, string>;
}
/** 'drop' resets the connection; 'hang' never answers; `delayMs` answers normally after a pause. */
export type Step = ScriptedReply | 'drop' | 'hang' | { delayMs: number };

export interface EngageRequest {
  url: string;
  query: URLSearchParams;
  contentType: string | undefined;
  body: string;
  updates: Array<Record<string, unknown>>;
  reply: number;
  /** When the request had arrived in full (Date.now()). */
  at: number;
}

export class FakeMixpanel {
  readonly requests: EngageRequest[] = [];
  /** distinct_id → properties as Mixpanel would hold them after every accepted `$set`. */
  readonly profiles = new Map<string, Record<string, unknown>>();
  /** Replies used, in order, before the normal behaviour resumes. */
  script: Step[] = [];
  /** A batch containing any of these distinct IDs is answered `{status:0}` as a whole (Mixpanel judges batches). */
  readonly poison = new Set<string>();
  /** Bodies above this many bytes get 413. */
  maxBytes = Infinity;
  /** Tokens Mixpanel knows; others get 401 (when set). */
  validTokens: Set<string> | undefined;
  private server: http.Server | undefined;

  /** Answers every request this long after it arrived (a slow Mixpanel), unless a scripted step says otherwise. */
  delayMs = 0;

  async start(port = 0): Promise<string> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    return this.url;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = undefined;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** Every update Mixpanel accepted, in order. */
  get acceptedUpdates(): Array<Record<string, unknown>> {
    return this.requests.filter((r) => r.reply === 200 && isOk(r)).flatMap((r) => r.updates);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const url = new URL(req.url ?? '/', 'http://x');
      const record: EngageRequest = {
        url: req.url ?? '', query: url.searchParams, contentType: req.headers['content-type'], body, updates: [], reply: 0, at: Date.now(),
      };
      try {
        const parsed: unknown = JSON.parse(body);
        if (Array.isArray(parsed)) record.updates = parsed as Array<Record<string, unknown>>;
      } catch { /* recorded as is */ }
      this.requests.push(record);

      const step = this.script.shift();
      if (step === 'drop') {
        req.socket.destroy();
        return;
      }
      if (step === 'hang') return;
      const delay = step && 'delayMs' in step ? step.delayMs : this.delayMs;
      if (delay > 0) {
        setTimeout(() => this.answer(req, res, record, url, body, undefined), delay);
        return;
      }
      this.answer(req, res, record, url, body, step as ScriptedReply | undefined);
    });
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse, record: EngageRequest, url: URL, body: string, step: ScriptedReply | undefined): void {
    {
      if (res.destroyed) return;
      if (step) return this.reply(res, record, step.status, step.body ?? '', step.headers);
      if (req.method !== 'POST' || url.pathname !== '/engage') return this.reply(res, record, 404, '{"error":"not found","status":0}');
      if (Buffer.byteLength(body) > this.maxBytes) {
        return this.reply(res, record, 413, JSON.stringify({ code: 413, error: `request exceeds max limit of ${this.maxBytes} bytes`, status: 'Request Entity Too Large' }));
      }
      const verbose = url.searchParams.get('verbose') === '1';
      const problem = this.validate(record);
      if (problem === 'auth') return this.reply(res, record, 401, JSON.stringify({ error: 'Invalid token', status: 'error' }));
      if (problem) return this.reply(res, record, 200, verbose ? JSON.stringify({ status: 0, error: problem }) : '0');
      for (const u of record.updates) {
        const id = String(u.$distinct_id);
        this.profiles.set(id, { ...(this.profiles.get(id) ?? {}), ...(u.$set as Record<string, unknown>) });
      }
      return this.reply(res, record, 200, verbose ? JSON.stringify({ status: 1, error: null }) : '1');
    }
  }

  private validate(r: EngageRequest): string | 'auth' | undefined {
    if (r.contentType !== 'application/json') return 'Content-Type must be application/json';
    if (r.updates.length === 0) return 'body must be a non-empty JSON array';
    if (r.updates.length > 2000) return 'too many updates in one request (max 2000)';
    for (const u of r.updates) {
      if (typeof u.$token !== 'string' || !u.$token) return 'Engage API error: $token, missing or empty';
      if (this.validTokens && !this.validTokens.has(u.$token)) return 'auth';
      if (typeof u.$distinct_id !== 'string' || !u.$distinct_id) return 'Engage API error: $distinct_id, missing or empty';
      if (!u.$set || typeof u.$set !== 'object') return 'Engage API error: no operation';
      if (this.poison.has(u.$distinct_id)) return `Engage API error: invalid update for ${u.$distinct_id}`;
    }
    return undefined;
  }

  private reply(res: http.ServerResponse, r: EngageRequest, status: number, body: string, headers: Record<string, string> = {}): void {
    r.reply = status;
    (r as EngageRequest & { replyBody: string }).replyBody = body;
    res.writeHead(status, { 'Content-Type': body.startsWith('{') ? 'application/json' : 'text/plain', ...headers });
    res.end(body);
  }
}

function isOk(r: EngageRequest): boolean {
  const body = (r as EngageRequest & { replyBody?: string }).replyBody ?? '';
  return body === '1' || body.includes('"status":1');
}
