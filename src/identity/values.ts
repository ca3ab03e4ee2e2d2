import { DEVICE_IDENTITY_NAMES, USER_IDENTITY_NAMES, normalizeMpid, type IdentityName } from './names';
import type { IdentityMap } from './types';

/**
 * Lookup priority, the IDSync way (mparticle-side.md §6): immutable and login IDs first, anonymous device IDs last.
 * When the identities of one lookup point to different profiles, the first known one in this order wins.
 */
export const IDENTITY_PRIORITY: readonly IdentityName[] = [
  'mpid', 'customer_id', 'email', 'other', 'other_id_2', 'other_id_3', 'other_id_4', 'other_id_5', 'other_id_6',
  'other_id_7', 'other_id_8', 'other_id_9', 'other_id_10', 'mobile_number', 'phone_number_2', 'phone_number_3',
  'distinct_id',
  ...USER_IDENTITY_NAMES.filter((n) => !['customer_id', 'email', 'mobile_number', 'phone_number_2', 'phone_number_3'].includes(n) && !n.startsWith('other')),
  'ios_idfv', 'ios_advertising_id', 'android_uuid', 'android_advertising_id',
  ...DEVICE_IDENTITY_NAMES.filter((n) => !['ios_idfv', 'ios_advertising_id', 'android_uuid', 'android_advertising_id'].includes(n)),
];

export const MAX_IDENTITY_LENGTH = 1024;

/** Apple and Google report a zeroed ad ID when tracking is limited: it is shared by millions of devices. */
const ZERO_ID = /^[0-]+$/;
const APPLE_IDS = new Set<IdentityName>(['ios_advertising_id', 'ios_idfv']);
const GOOGLE_AD_IDS = new Set<IdentityName>(['android_advertising_id']);

/** ES2024 string methods (Node 20 has them; the TypeScript lib here is ES2022). */
type WellFormed = string & { isWellFormed(): boolean; toWellFormed(): string };

export type ValueResult = { value: string } | { skip: true } | { error: string };

/**
 * Normalises one identity value so the same identity always has the same spelling in the store:
 * - `mpid`: a signed 64-bit integer as a decimal string (numbers only when they are safe integers);
 * - `email`: trimmed and lower-cased (mParticle lower-cases before hashing; addresses are matched case-blind);
 * - IDFA / IDFV upper-cased (Apple's form; mParticle has an "Upper Case Idfa and Idfv" setting because SDKs vary),
 *   GAID lower-cased; an all-zero ad ID (limit ad tracking) is skipped, it would link unrelated users together;
 * - everything else trimmed. Empty, null and undefined mean "absent".
 */
export function normalizeIdentityValue(name: IdentityName, raw: unknown): ValueResult {
  if (raw === undefined || raw === null) return { skip: true };
  if (name === 'mpid') {
    if (raw === '') return { skip: true };
    const mpid = normalizeMpid(raw);
    return mpid === undefined ? { error: 'must be a non-zero signed 64-bit integer as a decimal string (MPIDs above 2^53 cannot travel as JSON numbers)' } : { value: mpid };
  }
  let value: string;
  if (typeof raw === 'string') value = raw.trim();
  else if (typeof raw === 'number' && Number.isSafeInteger(raw)) value = String(raw);
  else if (typeof raw === 'bigint') value = raw.toString();
  else return { error: typeof raw === 'number' ? 'must be a string (this number is not a safe integer)' : `must be a string, not ${Array.isArray(raw) ? 'an array' : typeof raw}` };
  if (value === '') return { skip: true };
  // A lone UTF-16 surrogate (a cut emoji) cannot be stored as UTF-8: SQLite's binding turned it into U+FFFD and
  // Redis' cjson refused the whole batch. The same replacement here gives every backend the same spelling.
  if (!(value as WellFormed).isWellFormed()) value = (value as WellFormed).toWellFormed();
  if (value.length > MAX_IDENTITY_LENGTH) return { error: `must be at most ${MAX_IDENTITY_LENGTH} characters` };
  if (name === 'email') value = value.toLowerCase();
  else if (APPLE_IDS.has(name)) value = value.toUpperCase();
  else if (GOOGLE_AD_IDS.has(name)) value = value.toLowerCase();
  if ((APPLE_IDS.has(name) || GOOGLE_AD_IDS.has(name)) && ZERO_ID.test(value)) return { skip: true };
  return { value };
}

/** The store's key of one identity: `name:value` (names never contain `:`, values may). */
export function linkId(name: IdentityName, value: string): string {
  return `${name}:${value}`;
}

export function linkName(id: string): IdentityName {
  return id.slice(0, id.indexOf(':')) as IdentityName;
}

export function linkValue(id: string): string {
  return id.slice(id.indexOf(':') + 1);
}

/** Priority rank of each identity name (its index in `IDENTITY_PRIORITY`). */
const RANK = new Map<string, number>(IDENTITY_PRIORITY.map((n, i) => [n, i]));

/**
 * The identities of a map in priority order, as `[name, value, linkId]`. Walks the map's own keys and sorts them by
 * rank instead of probing every name of the priority list (a map holds one to a few identities, the list has 35
 * names: this runs once per lookup on the resolve path).
 */
export function orderedEntries(map: IdentityMap): Array<[IdentityName, string, string]> {
  const out: Array<[IdentityName, string, string]> = [];
  let sorted = true;
  let last = -1;
  for (const key of Object.keys(map)) {
    const rank = RANK.get(key);
    const v = map[key as IdentityName];
    if (rank === undefined || v === undefined) continue;
    if (rank < last) sorted = false;
    last = rank;
    out.push([key as IdentityName, v, linkId(key as IdentityName, v)]);
  }
  if (!sorted) out.sort((a, b) => RANK.get(a[0])! - RANK.get(b[0])!);
  return out;
}
