import type { IdentityResolveSettings, ResolvedIdentity, UnresolvedIdentity } from '../schemas/identity';
import type { IdentityStore } from '../store/identity-store';
import { chooseDistinctId } from './distinct';
import { parseIdentityInput } from './parse';
import type { IdentityProfile } from './types';

export interface IdentityOutcome {
  many: boolean;
  /** Resolved users (learn mode: every user with an identity, without a profile attached). */
  resolved: Array<{ index: number; identity?: ResolvedIdentity }>;
  unresolved: UnresolvedIdentity[];
}

function describe(p: IdentityProfile, index: number, settings: IdentityResolveSettings, matchedBy?: string): ResolvedIdentity {
  // A stored profile always has at least one identity, so a distinct ID is always found. The store hands out profiles
  // that are the caller's own (IdentityStore), so `identities` is taken as it is, not copied once more.
  const choice = chooseDistinctId(p, settings.distinctIdFrom)!;
  const out: ResolvedIdentity = {
    index, key: p.key, identities: p.identities as Record<string, string>, distinctId: choice.distinctId, distinctIdFrom: choice.from,
  };
  if (p.mpid !== undefined) out.mpid = p.mpid;
  if (matchedBy !== undefined) out.matchedBy = matchedBy;
  return out;
}

/**
 * The whole of `identity-resolve` minus Node-RED: parse the payload (throws INVALID_INPUT naming the field), then
 * one store call for the whole array (learn, resolve, or learn that returns the profiles).
 */
export async function processIdentities(store: IdentityStore, settings: IdentityResolveSettings, payload: unknown, now: number): Promise<IdentityOutcome> {
  const { many, items } = parseIdentityInput(payload);
  const out: IdentityOutcome = { many, resolved: [], unresolved: [] };
  const usable: number[] = [];
  items.forEach((item, index) => {
    if (Object.keys(item).length) usable.push(index);
    else out.unresolved.push({ index, reason: 'no-identity', message: 'no identity found (expected e.g. mpid, customer_id, email, ios_idfv, $distinct_id)' });
  });
  const batch = usable.map((i) => items[i]);
  if (settings.mode === 'resolve') {
    const found = batch.length ? await store.resolve(batch) : [];
    found.forEach((m, j) => {
      const index = usable[j];
      if (m) out.resolved.push({ index, identity: describe(m.profile, index, settings, m.matchedBy) });
      else out.unresolved.push({ index, reason: 'not-found', message: 'no known profile has any of these identities' });
    });
  } else {
    const learned = batch.length ? await store.learn(batch, now) : [];
    learned.forEach((p, j) => {
      const index = usable[j];
      out.resolved.push(settings.mode === 'both' && p ? { index, identity: describe(p, index, settings) } : { index });
    });
  }
  out.resolved.sort((a, b) => a.index - b.index);
  out.unresolved.sort((a, b) => a.index - b.index);
  return out;
}
