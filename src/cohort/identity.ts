import { DEVICE_IDENTITY_NAMES, USER_IDENTITY_NAMES, normalizeIdentityName, normalizeMpid } from '../identity/names';
import type { IdentityMap, IdentityMatch, IdentityProfile } from '../identity/types';
import { normalizeIdentityValue } from '../identity/values';
import type { CohortMember } from '../schemas/cohort-webhook';
import type { CohortMemberRef } from '../store/cohort-store';
import type { ProtectionLevel } from './settings';

/**
 * Who a cohort member is on the mParticle side. Mixpanel's own mParticle export matches on `$mparticle_user_id`
 * (a profile property) first, then on `$distinct_id` (reference/mixpanel-api.md §6.8). How exported properties sit
 * in a member object is not documented, so the MPID is looked for flat and one level down
 * (`properties`, `customProperties`, or any other nested object). Which keys name the MPID is the identity module's
 * table (`normalizeIdentityName`: `$mparticle_user_id`, `mparticle_user_id`, `mparticle_id`, `mpid`), the same one
 * `identity-resolve` and `mixpanel-audience-out` use.
 */
function mpidIn(obj: Record<string, unknown>): string | undefined {
  for (const k of Object.keys(obj)) {
    if (normalizeIdentityName(k) !== 'mpid') continue;
    const v = normalizeMpid(obj[k]);
    if (v) return v;
  }
  return undefined;
}

export function memberMpid(member: Record<string, unknown>): string | undefined {
  const flat = mpidIn(member);
  if (flat) return flat;
  for (const nested of Object.values(member)) {
    if (!nested || typeof nested !== 'object' || Array.isArray(nested)) continue;
    const v = mpidIn(nested as Record<string, unknown>);
    if (v) return v;
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

/** Events API `user_identities` (mparticle-side.md §2.2), canonical names. */
export type UserIdentities = Partial<Record<(typeof USER_IDENTITY_NAMES)[number], string>>;
/** Events API `device_info` identity keys (§2.3), canonical names. */
export type DeviceInfo = Partial<Record<(typeof DEVICE_IDENTITY_NAMES)[number], string>>;

export type Resolution =
  | { matched: true; mpid?: string; userIdentities: UserIdentities; deviceInfo?: DeviceInfo; via: 'member' | 'store' | 'created' }
  | { matched: false };

/** `IdentityStore.resolve`: whole arrays, one round trip. */
export type IdentityLookup = (lookups: IdentityMap[]) => Promise<Array<IdentityMatch | undefined>>;

/** What the identity store is asked about a member: its MPID, distinct ID and e-mail, normalised by the same rules. */
export function memberLookup(ref: CohortMemberRef): IdentityMap {
  const map: IdentityMap = {};
  if (ref.mpid) map.mpid = ref.mpid;
  for (const [name, raw] of [['distinct_id', ref.distinctId], ['email', ref.email]] as const) {
    const v = normalizeIdentityValue(name, raw);
    if ('value' in v) map[name] = v.value;
  }
  return map;
}

const USER_NAMES = new Set<string>(USER_IDENTITY_NAMES);
const DEVICE_NAMES = new Set<string>(DEVICE_IDENTITY_NAMES);

function split(profile: IdentityProfile): { user: UserIdentities; device: DeviceInfo } {
  const user: Record<string, string> = {};
  const device: Record<string, string> = {};
  for (const [name, v] of Object.entries(profile.identities)) {
    if (v === undefined) continue;
    if (USER_NAMES.has(name)) user[name] = v;
    else if (DEVICE_NAMES.has(name)) device[name] = v;
  }
  return { user, device };
}

const isEmpty = (o: object) => Object.keys(o).length === 0;

/**
 * Decides where each member goes, for a list of members at once (a page, or a chunk of the removals a completing page
 * found): one `lookup` call (one identity-store round trip) for all of them, never one per member.
 * - MPID first: the member's own `$mparticle_user_id`, else the MPID of the profile the identity store finds for its
 *   distinct ID or e-mail (what `identity-resolve` learnt). The batch gets `mpid` and the profile's known user
 *   identities. When the member's MPID and the profile disagree, the member's MPID wins and the other profile's
 *   identities are not used (they belong to somebody else as far as mParticle knows).
 * - a known profile without an MPID: its user identities (or, when it has none, its device IDs as `device_info`).
 * - otherwise `update-only` → unmatched (output 2): never create a profile;
 * - otherwise `create-and-update` → `{customer_id: distinct_id, email}`: the distinct ID is the user's ID in Mixpanel,
 *   which is the customer ID when the app calls `identify(customer_id)`. Anonymous `$device:` IDs are not customer
 *   IDs and are left out; a member with neither is unmatched. Values are normalised (e-mail lower-cased, trimmed).
 */
export async function resolveMembers(
  refs: CohortMemberRef[],
  protection: ProtectionLevel,
  lookup?: IdentityLookup,
): Promise<Resolution[]> {
  const lookups = refs.map(memberLookup);
  const found = lookup && refs.length > 0 ? await lookup(lookups) : [];
  if (lookup && found.length !== refs.length) throw new Error(`identity lookup answered ${found.length} of ${refs.length} members`);
  return refs.map((r, i): Resolution => {
    const profile = found[i]?.profile;
    const usable = profile && (!r.mpid || profile.mpid === undefined || profile.mpid === r.mpid) ? profile : undefined;
    const mpid = r.mpid ?? usable?.mpid;
    const known = usable ? split(usable) : { user: {}, device: {} };
    if (mpid) {
      // A profile without an MPID that the member's MPID does not confirm could still be somebody else's device.
      const ids = usable?.mpid === mpid || !r.mpid ? known.user : {};
      return { matched: true, mpid, userIdentities: ids, via: r.mpid ? 'member' : 'store' };
    }
    if (usable && !isEmpty(known.user)) return { matched: true, userIdentities: known.user, via: 'store' };
    if (usable && !isEmpty(known.device)) return { matched: true, userIdentities: {}, deviceInfo: known.device, via: 'store' };
    if (protection === 'update-only') return { matched: false };
    const ids: UserIdentities = {};
    if (lookups[i].distinct_id && !lookups[i].distinct_id!.startsWith('$device:')) ids.customer_id = lookups[i].distinct_id;
    if (lookups[i].email) ids.email = lookups[i].email;
    return isEmpty(ids) ? { matched: false } : { matched: true, userIdentities: ids, via: 'created' };
  });
}
