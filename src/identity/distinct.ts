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

export function chooseDistinctId(profile: IdentityProfile, from: IdentityName): DistinctChoice | undefined {
  const value = (name: IdentityName) => (name === 'mpid' ? profile.mpid : profile.identities[name]);
  for (const name of [from, ...DISTINCT_ID_FALLBACK, ...IDENTITY_PRIORITY]) {
    const v = value(name);
    if (v !== undefined) return { distinctId: v, from: name };
  }
  return undefined;
}
