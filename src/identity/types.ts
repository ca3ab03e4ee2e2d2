import type { IdentityName } from './names';

/** One user's identities by canonical name (`mpid` included), each a normalised string. */
export type IdentityMap = Partial<Record<IdentityName, string>>;

/**
 * A profile as the store keeps it. `key` is the MPID when the profile has one, otherwise `anon:<uuid>` (identities
 * seen together before any MPID was known); `links` lists every `name:value` ever linked to it, oldest first, so a
 * merge can re-point all of them and an old device ID keeps resolving after a new one arrived.
 */
export interface ProfileRecord {
  key: string;
  mpid?: string;
  /** The latest value of each identity type (without `mpid`, which has its own field). */
  identities: IdentityMap;
  links: string[];
  createdAt: number;
  updatedAt: number;
}

/** What callers see of a profile. */
export interface IdentityProfile {
  key: string;
  mpid?: string;
  identities: IdentityMap;
}

export interface IdentityMatch {
  profile: IdentityProfile;
  /** The identity of the lookup that found the profile (the highest-priority one that is known). */
  matchedBy: IdentityName;
}

export function publicProfile(p: ProfileRecord): IdentityProfile {
  const out: IdentityProfile = { key: p.key, identities: { ...p.identities } };
  if (p.mpid !== undefined) out.mpid = p.mpid;
  return out;
}
