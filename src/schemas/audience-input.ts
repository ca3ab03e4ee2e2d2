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
