import { SyncError, formatPath, type ErrorCode } from '../errors';
import { COHORT_ACTIONS, parseCohortWebhookBody, type CohortAction, type CohortWebhookReply } from '../schemas/cohort-webhook';
import type { CohortMemberRef, CohortStore } from '../store/cohort-store';
import { checkAuth, type AuthSecrets } from './auth';
import { memberRef, resolveMembers, type IdentityLookup, type Resolution } from './identity';
import { MESSAGE_CHUNK, buildMessages, type CohortInfo, type OutMessage } from './messages';
import { UnsafeJsonError, parseJsonSafely, sanitizeJson } from './safe-json';
import type { CohortInSettings } from './settings';

/**
 * Mixpanel's cohort-sync webhook protocol as a pure function of (request, settings, store): no Node-RED, no HTTP
 * server. The node wrapper reads the request, calls this, writes `status`/`headers`/`reply`, and sends `updates`
 * (output 1) and `unmatched` (output 2).
 *
 * Status policy (reference/reliability-perf-anchors.md §3.3): Mixpanel pauses a sync on 400/401/403/404 and
 * retries 5xx/429, so 400 is only for input that is really malformed, 401 for bad credentials, and anything that
 * fails on our side is 503 so the page comes again.
 */
export type Outcome = 'applied' | 'duplicate' | 'unauthorized' | 'invalid' | 'too-large' | 'store-down';

export interface WebhookResult {
  status: number;
  headers: Record<string, string>;
  reply: CohortWebhookReply;
  outcome: Outcome;
  updates: OutMessage[];
  unmatched: OutMessage[];
  cohort?: CohortInfo;
  /** Set for every non-2xx outcome: what went wrong, with a stable code. */
  error?: SyncError;
  /** Counts for the status line. */
  counts?: { members: number; added: number; removed: number; unmatched: number; complete: boolean; received?: number };
}

export interface WebhookRequest {
  headers: Record<string, string | string[] | undefined>;
  /** Raw body text (our own reader) … */
  rawBody?: string;
  /** … or a body some parser already turned into a value (Node-RED's admin/http-in body parser). */
  parsedBody?: unknown;
  /** The path segment after the configured path (token mode). */
  pathToken?: string;
}

export interface WebhookContext {
  settings: CohortInSettings;
  secrets: AuthSecrets;
  store: CohortStore;
  now?: number;
  /** The identity store's `resolve` (the graph `identity-resolve` learns); called once per page. */
  lookup?: IdentityLookup;
}

function actionOf(body: unknown): string {
  const a = body && typeof body === 'object' ? (body as Record<string, unknown>).action : undefined;
  return typeof a === 'string' && (COHORT_ACTIONS as readonly string[]).includes(a) ? a : 'unknown';
}

export function failure(action: string, status: number, code: ErrorCode, message: string, cause?: unknown): WebhookResult {
  const headers: Record<string, string> = {};
  if (status === 401) headers['WWW-Authenticate'] = 'Basic realm="mixpanel-cohort-in", charset="UTF-8"';
  const outcome: Outcome = status === 401 ? 'unauthorized' : status === 413 ? 'too-large' : status === 400 ? 'invalid' : 'store-down';
  return {
    status, headers, outcome, updates: [], unmatched: [],
    reply: { action, status: 'failure', error: { message, code: status } },
    error: new SyncError(code, message, { status, cause }),
  };
}

export function tooLarge(maxBytes: number): WebhookResult {
  return failure('unknown', 413, 'WEBHOOK_TOO_LARGE', `request body is larger than ${maxBytes} bytes`);
}

/** Step 1, before the body is read: bad or missing credentials end here (no store access, nothing emitted). */
export function authenticate(req: WebhookRequest, settings: CohortInSettings, secrets: AuthSecrets): WebhookResult | undefined {
  const outcome = checkAuth(settings.auth, secrets, req.headers, req.pathToken);
  if (outcome === 'ok') return undefined;
  const message = outcome === 'missing' ? 'authentication required' : 'invalid credentials';
  return failure('unknown', 401, 'WEBHOOK_AUTH', message);
}

/**
 * Step 1b, before the body is read: Mixpanel posts `application/json`. A body declared as anything else (a form, plain
 * text, a file upload) is not a cohort page, whatever it contains: 400, nothing read, nothing stored. A request
 * without a Content-Type is let through (the JSON parser decides), and so is any `application/…+json`.
 */
export function checkContentType(headers: WebhookRequest['headers']): WebhookResult | undefined {
  const raw = headers['content-type'];
  const value = (Array.isArray(raw) ? raw[0] : raw)?.split(';')[0].trim().toLowerCase();
  if (!value || value === 'application/json' || /^application\/[a-z0-9.+-]*\+json$/.test(value)) return undefined;
  return failure('unknown', 400, 'WEBHOOK_INVALID', `Content-Type must be application/json, not ${value.slice(0, 100)}`);
}

/** The first zod issue as users read it: `parameters.mixpanel_cohort_id is required`. */
function describeIssue(body: unknown, issue: { path: PropertyKey[]; message: string }): string {
  const field = formatPath(issue.path);
  let v: unknown = body;
  for (const p of issue.path) v = v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[p] : undefined;
  return v === undefined ? `${field} is required` : `${field}: ${issue.message}`;
}

type Parsed = { ok: true; value: unknown } | { ok: false; result: WebhookResult };

function parseBody(req: WebhookRequest): Parsed {
  try {
    if (req.rawBody !== undefined) {
      if (req.rawBody.trim() === '') return { ok: false, result: failure('unknown', 400, 'WEBHOOK_INVALID', 'the request body is empty') };
      return { ok: true, value: parseJsonSafely(req.rawBody) };
    }
    return { ok: true, value: sanitizeJson(req.parsedBody) };
  } catch (err) {
    const why = err instanceof UnsafeJsonError ? err.message : `the request body is not valid JSON (${(err as Error).message})`;
    return { ok: false, result: failure('unknown', 400, 'WEBHOOK_INVALID', why) };
  }
}

/** Step 2: parse, validate, apply to the store, build the messages. Never throws. */
export async function handleWebhook(req: WebhookRequest, ctx: WebhookContext): Promise<WebhookResult> {
  const wrongType = checkContentType(req.headers);
  if (wrongType) return wrongType;
  const parsed = parseBody(req);
  if (!parsed.ok) return parsed.result;
  const raw = parsed.value;
  const action = actionOf(raw);
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    return failure(action, 400, 'WEBHOOK_INVALID', 'the request body must be a JSON object with action and parameters');
  }
  const checked = parseCohortWebhookBody(raw);
  if (!checked.success) {
    return failure(action, 400, 'WEBHOOK_INVALID', describeIssue(raw, checked.error.issues[0]));
  }
  const body = checked.data;
  const p = body.parameters;
  const page = p.page_info?.page_count ?? 1;
  const totalPages = p.page_info?.total_pages ?? 1;
  const sessionId = p.mixpanel_session_id;
  if (body.action === 'members' && totalPages > 1 && sessionId === undefined) {
    return failure(action, 400, 'WEBHOOK_INVALID', 'parameters.mixpanel_session_id is required for a members export of several pages');
  }

  const info: CohortInfo = {
    id: p.mixpanel_cohort_id,
    name: p.mixpanel_cohort_name ?? `Mixpanel cohort ${p.mixpanel_cohort_id}`,
    action: body.action,
    page, totalPages, change: body.action === 'remove_members' ? 'remove' : 'add', complete: false,
  };
  if (p.mixpanel_project_id !== undefined) info.projectId = p.mixpanel_project_id;
  if (sessionId !== undefined) info.sessionId = sessionId;
  const cohortKey = `${p.mixpanel_project_id ?? ''}/${p.mixpanel_cohort_id}`;
  const refs = p.members.map(memberRef);
  const now = ctx.now ?? Date.now();

  let changed: Array<{ refs: CohortMemberRef[]; value: boolean; info: CohortInfo }>;
  let duplicate: boolean;
  let complete = false;
  let received: number | undefined;
  try {
    if (body.action === 'members') {
      // A single-page export without a session id cannot be recognised again; it still replaces as a whole.
      const session = sessionId ?? `single:${now}:${Math.random().toString(36).slice(2)}`;
      const r = await ctx.store.stageMembersPage(cohortKey, session, page, totalPages, refs, now);
      duplicate = r.duplicate;
      complete = r.complete;
      received = r.received;
      info.complete = r.complete;
      changed = [
        { refs: r.added, value: true, info },
        { refs: r.removed, value: false, info: { ...info, change: 'remove' } },
      ];
    } else {
      const r = await ctx.store.applyDiffPage(cohortKey, body.action, sessionId, page, refs, now);
      duplicate = r.duplicate;
      // Diff pages pass on what Mixpanel says (it computed the diff), whatever our store held before.
      changed = [{ refs, value: body.action === 'add_members', info }];
    }
  } catch (err) {
    return { ...failure(action, 503, 'STORE_UNAVAILABLE', 'store unavailable, please retry', err), cohort: info };
  }

  const success: CohortWebhookReply = { action: body.action, status: 'success' };
  if (duplicate) {
    return { status: 200, headers: {}, reply: success, outcome: 'duplicate', updates: [], unmatched: [], cohort: info,
      counts: { members: refs.length, added: 0, removed: 0, unmatched: 0, complete: false, received } };
  }

  const opts = {
    environment: ctx.settings.environment,
    attribute: `${ctx.settings.attributePrefix}${info.name}`,
    splitMembers: ctx.settings.splitMembers,
  };
  const updates: OutMessage[] = [];
  const unmatched: OutMessage[] = [];
  let unmatchedCount = 0;
  // One identity lookup per MESSAGE_CHUNK members (a page's additions and the removals it completed, together): one
  // store round trip for an ordinary page. The page that completes an export can also carry every member the export
  // no longer lists (20,000 of a 1M cohort in the benchmark): resolved at once, they held the event loop ~120 ms on
  // top of the sweep, so those go in chunks with a turn of the event loop between them.
  const all = changed.flatMap((c) => c.refs);
  const resolutions: Resolution[] = [];
  let lookupError: SyncError | undefined;
  for (let from = 0; from < all.length; from += MESSAGE_CHUNK) {
    if (from > 0) await nextTurn();
    const part = all.slice(from, from + MESSAGE_CHUNK);
    try {
      resolutions.push(...await resolveMembers(part, ctx.settings.protection, ctx.lookup));
    } catch (err) {
      // The page is already stored, so a retry would be a duplicate and emit nothing: answer success and lose
      // nothing. Members carrying an MPID still go out; every other one goes to output 2 (whatever the protection
      // level: without the identity store we cannot tell who they are, and must not create profiles on a guess),
      // and the error reaches a Catch node.
      resolutions.push(...await resolveMembers(part, 'update-only'));
      lookupError ??= new SyncError('STORE_UNAVAILABLE', `identity lookup failed: ${(err as Error).message}`, { cause: err });
    }
  }
  let at = 0;
  for (const c of changed) {
    const mine = resolutions.slice(at, at + c.refs.length);
    at += c.refs.length;
    if (c.refs.length === 0) continue;
    const built = buildMessages(c.refs, mine, c.value, c.info, opts);
    updates.push(...built.updates);
    unmatched.push(...built.unmatched);
    for (const m of built.unmatched) unmatchedCount += (m.payload as { count: number }).count;
  }
  const added = body.action === 'remove_members' ? 0 : changed[0].refs.length;
  const removed = body.action === 'remove_members' ? refs.length : changed[1]?.refs.length ?? 0;
  return {
    status: 200, headers: {}, reply: success, outcome: 'applied', updates, unmatched, cohort: info,
    counts: { members: refs.length, added, removed, unmatched: unmatchedCount, complete, received },
    ...(lookupError ? { error: lookupError } : {}),
  };
}

/** Both steps, for callers that have the whole request at hand (the `http in` input mode, tests). */
export async function processWebhook(req: WebhookRequest, ctx: WebhookContext): Promise<WebhookResult> {
  return authenticate(req, ctx.settings, ctx.secrets) ?? handleWebhook(req, ctx);
}

/** Lets timers, I/O and other requests run before going on. */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export type { CohortAction };
