import { normalizeMpid } from '../identity/names';
import type { CohortMember } from '../schemas/cohort-webhook';
import type { CohortMemberRef } from '../store/cohort-store';
import type { ProtectionLevel } from './settings';

/**
 * Who a cohort member is on the mParticle side. Mixpanel's own mParticle export matches on `$mparticle_user_id`
 * (a profile property) first, then on `$distinct_id` (reference/mixpanel-api.md §6.8). How exported properties sit
 * in a member object is not documented, so the MPID is looked for flat and one level down
 * (`properties`, `customProperties`, or any other nested object).
 */
const MPID_KEYS = ['$mparticle_user_id', 'mparticle_user_id'];

export function memberMpid(member: Record<string, unknown>): string | undefined {
  for (const k of MPID_KEYS) {
    const v = normalizeMpid(member[k]);
    if (v) return v;
  }
  for (const nested of Object.values(member)) {
    if (!nested || typeof nested !== 'object' || Array.isArray(nested)) continue;
    for (const k of MPID_KEYS) {
      const v = normalizeMpid((nested as Record<string, unknown>)[k]);
      if (v) return v;
    }
  }
  return undefined;
}

/** The store's view of a member: its key and what is needed to address it again when it leaves the cohort. */
export function memberRef(member: CohortMember): CohortMemberRef {
  const ref: CohortMemberRef = { distinctId: member.mixpanel_distinct_id };
  const mpid = memberMpid(member as Record<string, unknown>);
  if (mpid) ref.mpid = mpid;
  if (member.email) ref.email = member.email;
  return ref;
}

export type UserIdentities = { customer_id?: string; email?: string };

export type Resolution =
  | { matched: true; mpid?: string; userIdentities: UserIdentities }
  | { matched: false };

/**
 * Looks distinct IDs up in the identity store (the `identity-resolve` work): returns the MPID of each ID it knows.
 * Until that store exists, no lookup is passed and only members carrying an MPID are known.
 */
export type DistinctIdLookup = (distinctIds: string[]) => Promise<Map<string, string>>;

/**
 * Decides where each member goes, in one batch call (one lookup per page, never per member):
 * - an MPID (from the member, else from the lookup) → `{mpid}`, with no user identities (the MPID alone addresses
 *   the profile; adding an e-mail could raise an identity conflict on an existing profile);
 * - no MPID, `create-and-update` → `{customer_id: distinct_id, email}`: the distinct ID is the user's ID in
 *   Mixpanel, which is the customer ID when the app calls `identify(customer_id)`. Anonymous `$device:` IDs are
 *   not customer IDs and are left out; a member with neither ID nor e-mail is unmatched;
 * - no MPID, `update-only` → unmatched (output 2): never create a profile.
 */
export async function resolveMembers(
  refs: CohortMemberRef[],
  protection: ProtectionLevel,
  lookup?: DistinctIdLookup,
): Promise<Resolution[]> {
  const unknown = refs.filter((r) => !r.mpid).map((r) => r.distinctId);
  const found = lookup && unknown.length > 0 ? await lookup(unknown) : new Map<string, string>();
  return refs.map((r): Resolution => {
    const mpid = r.mpid ?? found.get(r.distinctId);
    if (mpid) return { matched: true, mpid, userIdentities: {} };
    if (protection === 'update-only') return { matched: false };
    const ids: UserIdentities = {};
    if (!r.distinctId.startsWith('$device:')) ids.customer_id = r.distinctId;
    if (r.email) ids.email = r.email;
    return ids.customer_id || ids.email ? { matched: true, userIdentities: ids } : { matched: false };
  });
}
