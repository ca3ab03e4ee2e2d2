import { normalizeIdentityValue } from '../identity/values';
import type { IdentityMap } from '../identity/types';
import type { IdentityStore } from '../store/identity-store';
import type { UserChange } from './parse-input';

/**
 * Completes each user's identities from the identity graph `identity-resolve` keeps in the same store: a message that
 * names a user by email only can then reach the customer-ID profile, and every message about one person keys the same
 * membership state (by MPID). One store round trip for the whole message. Identities in the message always win;
 * lookups use the identity module's normalised values (one table of rules for all nodes), while the values written
 * to Mixpanel stay as the message spelled them.
 */
export async function completeFromIdentityStore(store: IdentityStore, users: UserChange[]): Promise<void> {
  if (users.length === 0) return;
  const lookups: IdentityMap[] = users.map((u) => {
    const map: IdentityMap = {};
    for (const [name, raw] of u.identities) {
      const v = normalizeIdentityValue(name, raw);
      if ('value' in v) map[name] = v.value;
    }
    return map;
  });
  const matches = await store.resolve(lookups);
  matches.forEach((match, i) => {
    if (!match) return;
    const ids = users[i].identities;
    if (match.profile.mpid !== undefined && !ids.has('mpid')) ids.set('mpid', match.profile.mpid);
    for (const [name, value] of Object.entries(match.profile.identities) as Array<[keyof IdentityMap, string]>) {
      if (value !== undefined && !ids.has(name)) ids.set(name, value);
    }
  });
}
