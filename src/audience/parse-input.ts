import type { z } from 'zod';
import { formatPath, type Issue } from '../errors';
import { normalizeIdentityName, normalizeMpid, type IdentityName } from '../identity/names';
import {
  FirehoseUserProfile, MembershipChangeRequest, PlainChange, SubscriptionRequest, fastFirehoseProfile,
} from '../schemas/audience-input';

/** One user's change, whatever shape it came in. Identities are canonical names; the MPID is a string. */
export interface UserChange {
  /** Where the user sits in the input, for errors and results, e.g. `user_profiles[3]` or `[2]`. */
  at: string;
  identities: Map<IdentityName, string>;
  /** Membership changes in order; `snapshot` replaces the whole set instead. */
  changes?: Array<{ id: string; name?: string; action: 'add' | 'remove' }>;
  snapshot?: Array<{ id: string; name?: string }>;
}

export type ParsedInput =
  | { kind: 'changes'; source: 'mparticle' | 'plain'; request?: MembershipChangeRequest; users: UserChange[]; issues: Issue[] }
  | { kind: 'keepalive'; request: MembershipChangeRequest }
  | { kind: 'subscription'; request: SubscriptionRequest }
  | { kind: 'invalid'; issues: Issue[] };

function zodIssues(err: z.ZodError, prefix: string): Issue[] {
  return err.issues.map((i) => ({ field: formatPath([prefix, ...i.path].filter((p) => p !== '')), message: i.message }));
}

function join(prefix: string, field: string): string {
  if (!prefix) return field;
  return field.startsWith('[') ? `${prefix}${field}` : `${prefix}.${field}`;
}

/** Adds an identity, checking the value; the MPID must be a 64-bit integer given as a string. */
function addIdentity(out: Map<IdentityName, string>, issues: Issue[], field: string, name: IdentityName, raw: unknown): void {
  if (raw === undefined || raw === null || raw === '') return;
  if (name === 'mpid') {
    const mpid = normalizeMpid(raw);
    if (mpid === undefined) {
      const why = typeof raw === 'number' ? 'must be a string (MPIDs are 64-bit; a JSON number loses digits)' : 'must be a signed 64-bit integer as a string';
      issues.push({ field, message: why });
      return;
    }
    out.set('mpid', mpid);
    return;
  }
  if (typeof raw === 'number' && Number.isFinite(raw)) raw = String(raw);
  if (typeof raw !== 'string' || raw.trim() === '') {
    issues.push({ field, message: 'must be a non-empty string' });
    return;
  }
  if (!out.has(name)) out.set(name, raw.trim());
}

function parseFirehoseProfile(raw: unknown, at: string, issues: Issue[]): UserChange | undefined {
  let p = fastFirehoseProfile(raw); // the well-formed case without zod; anything else goes through the schema
  if (!p) {
    const parsed = FirehoseUserProfile.safeParse(raw);
    if (!parsed.success) {
      issues.push(...zodIssues(parsed.error, at));
      return undefined;
    }
    p = parsed.data;
  }
  const before = issues.length;
  const identities = new Map<IdentityName, string>();
  addIdentity(identities, issues, `${at}.mpid`, 'mpid', p.mpid);
  for (const [list, key] of [[p.user_identities, 'user_identities'], [p.device_identities, 'device_identities']] as const) {
    (list ?? []).forEach((id, i) => {
      const name = normalizeIdentityName(id.type);
      // Unknown types (partner identities, future ones) are not ours to reject: they are simply not targets.
      if (name) addIdentity(identities, issues, `${at}.${key}[${i}].value`, name, id.value);
    });
  }
  if (issues.length > before) return undefined;
  const changes = p.audiences
    .filter((a) => a.action !== 'attribute_update') // attribute updates do not change membership
    .map((a) => ({ id: a.audience_id, name: a.audience_name || undefined, action: a.action === 'add' ? 'add' as const : 'remove' as const }));
  return { at, identities, changes };
}

function parsePlain(raw: unknown, at: string, issues: Issue[]): UserChange | undefined {
  const parsed = PlainChange.safeParse(raw);
  if (!parsed.success) {
    issues.push(...zodIssues(parsed.error, at));
    return undefined;
  }
  const before = issues.length;
  const identities = new Map<IdentityName, string>();
  for (const [key, value] of Object.entries(parsed.data.user)) {
    const name = normalizeIdentityName(key);
    if (!name) {
      issues.push({ field: join(at, `user.${key}`), message: 'is not a known identity (use customer_id, email, mpid, ios_advertising_id, ios_idfv, android_uuid, …)' });
      continue;
    }
    addIdentity(identities, issues, join(at, `user.${key}`), name, value);
  }
  if (issues.length > before) return undefined;
  const { audiences, memberships } = parsed.data;
  if (memberships) return { at, identities, snapshot: memberships.map((m) => ({ id: m.id, name: m.name || undefined })) };
  return { at, identities, changes: (audiences ?? []).map((a) => ({ id: a.id, name: a.name || undefined, action: a.action })) };
}

/**
 * A message's shape, with its users still unparsed: `parseUser(k, issues)` parses user k when it is needed (or adds
 * its issues and returns undefined), so a 1000-user message need not hold 1000 parsed users at once.
 */
export type InputShape =
  | {
    kind: 'users';
    source: 'mparticle' | 'plain';
    request?: MembershipChangeRequest;
    count: number;
    parseUser(k: number, issues: Issue[]): UserChange | undefined;
  }
  | Exclude<ParsedInput, { kind: 'changes' }>;

/** Recognises the shape of `msg.payload` and returns every valid user change plus an issue per bad one. */
export function parseAudienceInput(payload: unknown): ParsedInput {
  const shape = readAudienceInput(payload);
  if (shape.kind !== 'users') return shape;
  const issues: Issue[] = [];
  const users: UserChange[] = [];
  for (let k = 0; k < shape.count; k++) {
    const u = shape.parseUser(k, issues);
    if (u) users.push(u);
  }
  return { kind: 'changes', source: shape.source, request: shape.request, users, issues };
}

/** Recognises the shape of `msg.payload`; the users are parsed one by one afterwards (see InputShape). */
export function readAudienceInput(payload: unknown): InputShape {
  if (payload === null || typeof payload !== 'object') {
    return { kind: 'invalid', issues: [{ field: 'payload', message: 'must be an object or an array (see the node help for the accepted shapes)' }] };
  }
  const type = (payload as { type?: unknown }).type;
  if (type === 'audience_subscription_request') {
    const parsed = SubscriptionRequest.safeParse(payload);
    if (!parsed.success) return { kind: 'invalid', issues: zodIssues(parsed.error, 'payload') };
    return { kind: 'subscription', request: parsed.data };
  }
  if (type === 'audience_membership_change_request') {
    const parsed = MembershipChangeRequest.safeParse(payload);
    if (!parsed.success) return { kind: 'invalid', issues: zodIssues(parsed.error, 'payload') };
    const request = parsed.data;
    const profiles = request.user_profiles;
    if (!profiles || profiles.length === 0) return { kind: 'keepalive', request };
    return {
      kind: 'users', source: 'mparticle', request, count: profiles.length,
      parseUser: (k, issues) => parseFirehoseProfile(profiles[k], `payload.user_profiles[${k}]`, issues),
    };
  }
  if (type !== undefined) {
    return { kind: 'invalid', issues: [{ field: 'payload.type', message: `"${String(type)}" is not a message type this node handles (audience_membership_change_request, audience_subscription_request)` }] };
  }
  if (!Array.isArray(payload) && !('user' in payload)) {
    return { kind: 'invalid', issues: [{ field: 'payload.user', message: 'is required (or send an mParticle audience_membership_change_request)' }] };
  }
  if (!Array.isArray(payload)) return { kind: 'users', source: 'plain', count: 1, parseUser: (_k, issues) => parsePlain(payload, 'payload', issues) };
  const items: unknown[] = payload;
  return { kind: 'users', source: 'plain', count: items.length, parseUser: (k, issues) => parsePlain(items[k], `payload[${k}]`, issues) };
}
