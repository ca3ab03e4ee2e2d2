/**
 * Identity names. The canonical spelling is the mParticle Events API's (`customer_id`, `ios_idfv`, …) plus `mpid`
 * and `distinct_id` (Mixpanel's). Every other spelling mParticle or Mixpanel uses on some surface — Firehose
 * (`customer`, `ios_vendor_id`, `android_id`), IDSync (`customerid`, `ios_idfa`, `android_aaid`), the web SDK
 * (`other2`, numeric IdentityType), Mixpanel (`$distinct_id`, `$mparticle_user_id`) — is accepted and mapped here,
 * so this table is the one place that knows them (see reference/mparticle-side.md §2).
 */
export const USER_IDENTITY_NAMES = [
  'customer_id', 'email', 'other', 'other_id_2', 'other_id_3', 'other_id_4', 'other_id_5', 'other_id_6',
  'other_id_7', 'other_id_8', 'other_id_9', 'other_id_10', 'mobile_number', 'phone_number_2', 'phone_number_3',
  'facebook', 'twitter', 'google', 'microsoft', 'yahoo', 'alias', 'facebook_custom_audience_id',
] as const;

export const DEVICE_IDENTITY_NAMES = [
  'ios_advertising_id', 'ios_idfv', 'android_advertising_id', 'android_uuid', 'push_token',
  'roku_advertising_id', 'roku_publisher_id', 'fire_advertising_id', 'microsoft_advertising_id',
  'microsoft_publisher_id', 'amp_id',
] as const;

export const IDENTITY_NAMES = ['mpid', 'distinct_id', ...USER_IDENTITY_NAMES, ...DEVICE_IDENTITY_NAMES] as const;
export type IdentityName = (typeof IDENTITY_NAMES)[number];

/** The seed's targets: "Android Device IDs, IDFAs, IDFVs, Customer IDs". */
export const DEFAULT_IDENTITY_TARGETS: IdentityName[] = ['customer_id', 'android_uuid', 'ios_advertising_id', 'ios_idfv'];

const ALIASES: Record<string, IdentityName> = {
  // Firehose
  customer: 'customer_id',
  ios_vendor_id: 'ios_idfv',
  google_advertising_id: 'android_advertising_id',
  android_id: 'android_uuid',
  apple_push_notification_token: 'push_token',
  google_cloud_messaging_token: 'push_token',
  // IDSync / web SDK
  customerid: 'customer_id',
  ios_idfa: 'ios_advertising_id',
  android_aaid: 'android_advertising_id',
  roku_aid: 'roku_advertising_id',
  fire_aid: 'fire_advertising_id',
  facebookcustomaudienceid: 'facebook_custom_audience_id',
  // friendly shorthands people type in low-code flows
  idfa: 'ios_advertising_id',
  idfv: 'ios_idfv',
  gaid: 'android_advertising_id',
  aaid: 'android_advertising_id',
  // Mixpanel
  $distinct_id: 'distinct_id',
  mixpanel_distinct_id: 'distinct_id',
  $mparticle_user_id: 'mpid',
  mparticle_user_id: 'mpid',
  mparticle_id: 'mpid',
  $email: 'email',
  $user_id: 'distinct_id',
};
for (let n = 2; n <= 10; n++) ALIASES[`other${n}`] = `other_id_${n}` as IdentityName;

/** Web/iOS/Android SDK numeric IdentityType values (mparticle-side.md §2.2). */
const NUMERIC: IdentityName[] = [
  'other', 'customer_id', 'facebook', 'twitter', 'google', 'microsoft', 'yahoo', 'email', 'alias',
  'facebook_custom_audience_id', 'other_id_2', 'other_id_3', 'other_id_4', 'other_id_5', 'other_id_6',
  'other_id_7', 'other_id_8', 'other_id_9', 'other_id_10', 'mobile_number', 'phone_number_2', 'phone_number_3',
];

const CANONICAL = new Set<string>(IDENTITY_NAMES);

/** Maps any known spelling to the canonical identity name, or undefined when the name is not an identity. */
export function normalizeIdentityName(name: string | number): IdentityName | undefined {
  if (typeof name === 'number') return Number.isInteger(name) ? NUMERIC[name] : undefined;
  const key = name.trim().toLowerCase();
  if (CANONICAL.has(key)) return key as IdentityName;
  if (/^\d+$/.test(key)) return NUMERIC[Number(key)];
  // Own properties only: `__proto__` or `constructor` from hostile JSON must not reach Object.prototype.
  return Object.hasOwn(ALIASES, key) ? ALIASES[key] : undefined;
}

export function isIdentityName(name: string): name is IdentityName {
  return CANONICAL.has(name);
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * MPIDs are signed 64-bit integers: they must travel as decimal strings (a JS number silently rounds above 2^53).
 * Returns the canonical string, or undefined when the value is not a valid MPID. Numbers are accepted only when
 * they are safe integers, i.e. when no precision was already lost before we saw them.
 */
export function normalizeMpid(value: unknown): string | undefined {
  if (typeof value === 'bigint') value = value.toString();
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) return undefined;
    value = String(value);
  }
  if (typeof value !== 'string' || !/^-?\d{1,20}$/.test(value.trim())) return undefined;
  const big = BigInt(value.trim());
  if (big < INT64_MIN || big > INT64_MAX || big === 0n) return undefined;
  return big.toString();
}
