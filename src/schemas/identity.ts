import { z } from 'zod';
import { IDENTITY_NAMES } from '../identity/names';

/** `identity-resolve` settings as flows store them (the editor's defaults mirror these). */
export const IDENTITY_MODES = ['learn', 'resolve', 'both'] as const;
export type IdentityMode = (typeof IDENTITY_MODES)[number];

export const IdentityResolveSettings = z.object({
  name: z.string().default(''),
  /** learn: link and pass on; resolve: look up only; both: link, then add the profile. */
  mode: z.enum(IDENTITY_MODES).default('both'),
  /** The identity used as Mixpanel `$distinct_id` (mParticle's "External Identity Type"); falls back in order. */
  distinctIdFrom: z.enum(IDENTITY_NAMES).default('customer_id'),
});
export type IdentityResolveSettings = z.infer<typeof IdentityResolveSettings>;

/** `msg.identity` of a resolved user. */
export const ResolvedIdentity = z.object({
  /** Position in the input array (0 for a single object). */
  index: z.number().int(),
  key: z.string(),
  mpid: z.string().optional(),
  identities: z.record(z.string(), z.string()),
  distinctId: z.string(),
  /** Which identity the distinct ID came from (`distinctIdFrom` or a fallback). */
  distinctIdFrom: z.string(),
  /** The identity of the input that found the profile (resolve mode); absent when it was learnt. */
  matchedBy: z.string().optional(),
});
export type ResolvedIdentity = z.infer<typeof ResolvedIdentity>;

export const UNRESOLVED_REASONS = ['no-identity', 'not-found'] as const;
/** `msg.unresolved` of a user that went to output 2. */
export const UnresolvedIdentity = z.object({
  index: z.number().int(),
  reason: z.enum(UNRESOLVED_REASONS),
  message: z.string(),
});
export type UnresolvedIdentity = z.infer<typeof UnresolvedIdentity>;
