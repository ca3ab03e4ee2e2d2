import { z } from 'zod';

/**
 * The three input shapes of `mixpanel-audience-out` (DESIGN.md). Users are validated one at a time by the parser so
 * that one bad user in a batch message rejects that user only; these schemas describe one user / one envelope.
 */

/** Audience IDs arrive as numbers (Firehose `int`) or strings; we keep them as strings (they become quoted text). */
export const AudienceId = z.union([
  z.string().trim().min(1, 'must not be empty').regex(/^[^',]+$/, "must not contain ' or ,"),
  z.number().int('must be a whole number'),
]).transform(String);

const AudienceName = z.string().trim().max(255, 'must be at most 255 characters');

// ---- mParticle Firehose -------------------------------------------------------------------------------------------
export const FirehoseIdentity = z.object({
  type: z.string().min(1),
  encoding: z.string().optional(),
  value: z.string().min(1, 'must not be empty'),
});

export const FirehoseAudience = z.object({
  audience_id: AudienceId,
  audience_name: AudienceName.optional(),
  action: z.enum(['add', 'delete', 'attribute_update']),
});

export const FirehoseUserProfile = z.object({
  mpid: z.unknown().optional(),
  user_identities: z.array(FirehoseIdentity).optional(),
  device_identities: z.array(FirehoseIdentity).optional(),
  audiences: z.array(FirehoseAudience),
});
export type FirehoseUserProfile = z.infer<typeof FirehoseUserProfile>;

const FirehoseEnvelope = {
  id: z.string().optional(),
  timestamp_ms: z.number().optional(),
  firehose_version: z.string().optional(),
  account: z.object({ account_id: z.number().optional(), account_settings: z.record(z.string(), z.unknown()).optional() }).optional(),
};

export const MembershipChangeRequest = z.object({
  type: z.literal('audience_membership_change_request'),
  ...FirehoseEnvelope,
  /** Absent (or empty) in keep-alive requests. */
  user_profiles: z.array(z.unknown()).optional(),
});
export type MembershipChangeRequest = z.infer<typeof MembershipChangeRequest>;

export const SubscriptionRequest = z.object({
  type: z.literal('audience_subscription_request'),
  ...FirehoseEnvelope,
  audience_id: AudienceId,
  audience_name: AudienceName.optional(),
  action: z.enum(['add', 'update', 'remove']),
});
export type SubscriptionRequest = z.infer<typeof SubscriptionRequest>;

// ---- the plain form for low-code flows -----------------------------------------------------------------------------
export const PlainAudienceChange = z.object({
  id: AudienceId,
  name: AudienceName.optional(),
  action: z.enum(['add', 'remove']),
});

export const PlainMembership = z.object({ id: AudienceId, name: AudienceName.optional() });

/** `user` holds identities by name (any accepted spelling); checked by the parser, which knows the names. */
export const PlainUser = z.record(z.string(), z.unknown());

export const PlainChange = z.object({
  user: PlainUser,
  audiences: z.array(PlainAudienceChange).optional(),
  memberships: z.array(PlainMembership).optional(),
}).refine((v) => (v.audiences === undefined) !== (v.memberships === undefined), {
  message: 'give either audiences (changes) or memberships (a full snapshot)',
  path: ['audiences'],
});

// ---- fast path ---------------------------------------------------------------------------------------------------
/**
 * FirehoseUserProfile for the common, well-formed profile without running zod, which was about a tenth of the CPU
 * of a 1000-user request. Returns undefined as soon as anything is unusual (a wrong type, an empty or odd value, a
 * null); the caller then runs the schema, which stays the single source of truth and of every error message. So this
 * must accept nothing the schema rejects, and return the same values for what it accepts (ids and names trimmed,
 * numeric ids as strings). Only the fields the parser reads are returned.
 */
export function fastFirehoseProfile(raw: unknown): FirehoseUserProfile | undefined {
  if (!isPlainObject(raw)) return undefined;
  const userIds = fastIdentities(raw.user_identities);
  const deviceIds = fastIdentities(raw.device_identities);
  if (userIds === null || deviceIds === null || !Array.isArray(raw.audiences)) return undefined;
  const list: unknown[] = raw.audiences;
  const audiences: FirehoseUserProfile['audiences'] = new Array(list.length);
  for (let i = 0; i < list.length; i++) {
    const a = list[i];
    if (!isPlainObject(a)) return undefined;
    let id = a.audience_id;
    if (typeof id === 'number') {
      if (!Number.isSafeInteger(id)) return undefined; // z.number().int(): whole and within the safe range
      id = String(id);
    } else if (typeof id === 'string') {
      id = id.trim();
      if ((id as string).length === 0 || (id as string).includes("'") || (id as string).includes(',')) return undefined;
    } else return undefined;
    let name = a.audience_name;
    if (typeof name === 'string') {
      name = name.trim();
      if ((name as string).length > 255) return undefined;
    } else if (name !== undefined) return undefined;
    const action = a.action;
    if (action !== 'add' && action !== 'delete' && action !== 'attribute_update') return undefined;
    audiences[i] = { audience_id: id as string, audience_name: name as string | undefined, action };
  }
  return { mpid: raw.mpid, user_identities: userIds, device_identities: deviceIds, audiences };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** FirehoseIdentity[] as the schema returns it; undefined when absent, null when the schema must decide. */
function fastIdentities(v: unknown): Array<z.infer<typeof FirehoseIdentity>> | undefined | null {
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) return null;
  const out: Array<z.infer<typeof FirehoseIdentity>> = new Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const id: unknown = v[i];
    if (!isPlainObject(id)) return null;
    const { type, value, encoding } = id;
    if (typeof type !== 'string' || type.length === 0 || typeof value !== 'string' || value.length === 0) return null;
    if (encoding !== undefined && typeof encoding !== 'string') return null;
    out[i] = { type, encoding, value };
  }
  return out;
}
