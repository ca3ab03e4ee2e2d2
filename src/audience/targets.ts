import type { IdentityName } from '../identity/names';

/**
 * Which Mixpanel profiles (distinct IDs) a user's audience properties are written to. `each` writes one update per
 * chosen identity present (the seed's behaviour: customer ID, Android ID, IDFA and IDFV profiles all get it);
 * `first` writes only the first present in list order, so audiences land on the same profile as events.
 */
export function chooseTargets(identities: Map<IdentityName, string>, targets: IdentityName[], mode: 'each' | 'first'): string[] {
  const out: string[] = [];
  for (const name of targets) {
    const value = identities.get(name);
    if (value === undefined || out.includes(value)) continue;
    out.push(value);
    if (mode === 'first') break;
  }
  return out;
}

/** Order in which an identity keys a user's membership state when there is no MPID. */
const KEY_ORDER: IdentityName[] = [
  'mpid', 'customer_id', 'email', 'distinct_id', 'other', 'mobile_number', 'ios_advertising_id', 'ios_idfv',
  'android_advertising_id', 'android_uuid',
];

/** The stable key of a user's membership state: the MPID when known, else the strongest identity present. */
export function userKey(identities: Map<IdentityName, string>): string | undefined {
  for (const name of KEY_ORDER) {
    const v = identities.get(name);
    if (v !== undefined) return `${name}:${v}`;
  }
  const first = identities.entries().next();
  return first.done ? undefined : `${first.value[0]}:${first.value[1]}`;
}
