import type { IdentityName } from './names';
import type { IdentityProfile } from './types';
import { IDENTITY_PRIORITY } from './values';

/**
 * Which identity becomes the Mixpanel `$distinct_id`, the way mParticle's "External Identity Type" decides: the
 * configured one when the profile has it; otherwise a Mixpanel distinct ID learnt for this profile (`$distinct_id`);
 * then customer ID, then MPID (they are what a logged-in user's events carry); then the device IDs an anonymous user's
 * events carry (IDFV, IDFA, Android ID, GAID); finally the profile's first identity in lookup priority.
 */
export const DISTINCT_ID_FALLBACK: readonly IdentityName[] = [
  'distinct_id', 'customer_id', 'mpid', 'ios_idfv', 'ios_advertising_id', 'android_uuid', 'android_advertising_id',
];

export interface DistinctChoice {
  distinctId: string;
  from: IdentityName;
}

/** The order in which names are tried, per configured name: built once, not once per profile. */
const ORDER = new Map<IdentityName, readonly IdentityName[]>();

function orderFor(from: IdentityName): readonly IdentityName[] {
  let order = ORDER.get(from);
  if (!order) ORDER.set(from, (order = [...new Set([from, ...DISTINCT_ID_FALLBACK, ...IDENTITY_PRIORITY])]));
  return order;
}

export function chooseDistinctId(profile: IdentityProfile, from: IdentityName): DistinctChoice | undefined {
  for (const name of orderFor(from)) {
    const v = name === 'mpid' ? profile.mpid : profile.identities[name];
    if (v !== undefined) return { distinctId: v, from: name };
  }
  return undefined;
}
