import { randomUUID } from 'node:crypto';
import type { IdentityName } from './names';
import { publicProfile, type IdentityMap, type IdentityMatch, type IdentityProfile, type ProfileRecord } from './types';
import { linkName, linkValue, orderedEntries } from './values';

/**
 * The identity graph's rules, written once and shared by every backend: the backends only read links and profiles
 * (`IdentityView`) and write back the `IdentityChanges` this computes, each in its own atomic way (a memory map, one
 * SQLite transaction, a Redis compare-and-set script).
 */
export interface IdentityView {
  /** The profile key an identity (`name:value`) is linked to. */
  link(id: string): string | undefined;
  profile(key: string): ProfileRecord | undefined;
}

export interface IdentityChanges {
  /** New target of each changed link; `null` deletes it. */
  links: Map<string, string | null>;
  /** New state of each changed profile; `null` deletes it. */
  profiles: Map<string, ProfileRecord | null>;
}

export const newAnonymousKey = (): string => `anon:${randomUUID()}`;

/** A view with the batch's own changes laid over it, so later observations of a batch see the earlier ones. */
class Overlay implements IdentityView {
  readonly changes: IdentityChanges = { links: new Map(), profiles: new Map() };
  constructor(private readonly base: IdentityView) {}

  link(id: string): string | undefined {
    const c = this.changes.links.get(id);
    return c === undefined ? this.base.link(id) : c ?? undefined;
  }

  profile(key: string): ProfileRecord | undefined {
    const c = this.changes.profiles.get(key);
    if (c === null) return undefined;
    if (c) return c;
    const p = this.base.profile(key);
    return p && structuredClone(p);
  }
}

/** Older profiles first; a profile with an MPID before any anonymous one; the key breaks ties. */
function survivorOrder(a: ProfileRecord, b: ProfileRecord): number {
  if (!!a.mpid !== !!b.mpid) return a.mpid ? -1 : 1;
  if (a.createdAt !== b.createdAt) return a.createdAt - b.createdAt;
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/** Drops link `id` from profile `p` and, when it was the current value of its type, falls back to an older one. */
function unlinkFrom(p: ProfileRecord, id: string): void {
  p.links = p.links.filter((l) => l !== id);
  const name = linkName(id);
  if (name === 'mpid' || p.identities[name] !== linkValue(id)) return;
  const older = [...p.links].reverse().find((l) => linkName(l) === name);
  if (older === undefined) delete p.identities[name];
  else p.identities[name] = linkValue(older);
}

/**
 * Learns each observation (the identities seen together on one message), in order:
 * - the observation's identities all end up linked to one profile, the survivor: the profile keyed by the
 *   observation's MPID (created when new); without an MPID, the known profile that has an MPID, else the oldest
 *   (ties: smallest key), else a new anonymous profile `anon:<uuid>`;
 * - every other anonymous profile the observation touches is merged into the survivor (all its links move, the
 *   survivor's own values win per identity type) and deleted;
 * - a profile with a *different* MPID is never merged (mParticle never merges two MPIDs either): only the identities
 *   of this observation move from it to the survivor, as IDSync moves a unique ID;
 * - the observation's values become the survivor's current value of their type (latest wins); older values stay
 *   linked, so they keep resolving.
 * Returns the survivor of each observation (undefined for an observation without identities).
 */
export function planLearn(view: IdentityView, observations: IdentityMap[], now: number, newKey: () => string = newAnonymousKey):
  { changes: IdentityChanges; profiles: Array<IdentityProfile | undefined> } {
  const w = new Overlay(view);
  const put = (p: ProfileRecord) => w.changes.profiles.set(p.key, p);
  const profiles: Array<IdentityProfile | undefined> = [];
  for (const obs of observations) {
    const entries = orderedEntries(obs);
    if (entries.length === 0) {
      profiles.push(undefined);
      continue;
    }
    const known = new Map<string, ProfileRecord>();
    for (const [, , id] of entries) {
      const key = w.link(id);
      if (key !== undefined && !known.has(key)) {
        const p = w.profile(key);
        if (p) known.set(key, p);
      }
    }
    let survivor: ProfileRecord | undefined;
    if (obs.mpid !== undefined) survivor = known.get(obs.mpid) ?? w.profile(obs.mpid);
    else survivor = [...known.values()].sort(survivorOrder)[0];
    survivor ??= { key: obs.mpid ?? newKey(), identities: {}, links: [], createdAt: now, updatedAt: now, ...(obs.mpid ? { mpid: obs.mpid } : {}) };

    for (const p of known.values()) {
      if (p.key === survivor.key) continue;
      if (p.mpid === undefined) {
        for (const id of p.links) {
          w.changes.links.set(id, survivor.key);
          if (!survivor.links.includes(id)) survivor.links.push(id);
        }
        for (const [name, v] of Object.entries(p.identities) as Array<[IdentityName, string]>) survivor.identities[name] ??= v;
        survivor.createdAt = Math.min(survivor.createdAt, p.createdAt);
        w.changes.profiles.set(p.key, null);
      } else {
        for (const [, , id] of entries) if (w.link(id) === p.key) unlinkFrom(p, id);
        p.updatedAt = now;
        put(p);
      }
    }
    for (const [name, value, id] of entries) {
      w.changes.links.set(id, survivor.key);
      if (!survivor.links.includes(id)) survivor.links.push(id);
      if (name !== 'mpid') survivor.identities[name] = value;
    }
    survivor.updatedAt = now;
    put(survivor);
    profiles.push(publicProfile(survivor));
  }
  return { changes: w.changes, profiles };
}

/** The profile key a lookup resolves to: its first identity, in priority order, that is linked to a profile. */
export function matchLookup(lookup: IdentityMap, link: (id: string) => string | undefined): { key: string; matchedBy: IdentityName } | undefined {
  for (const [name, , id] of orderedEntries(lookup)) {
    const key = link(id);
    if (key !== undefined) return { key, matchedBy: name };
  }
  return undefined;
}

/** Resolves lookups against a synchronous view (memory, SQLite). */
export function resolveWith(view: IdentityView, lookups: IdentityMap[]): Array<IdentityMatch | undefined> {
  return lookups.map((l) => {
    const m = matchLookup(l, (id) => view.link(id));
    const p = m && view.profile(m.key);
    return m && p ? { profile: publicProfile(p), matchedBy: m.matchedBy } : undefined;
  });
}
