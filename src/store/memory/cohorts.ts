import type { CohortMemberRef, CohortStore, DiffKind, DiffPageResult, MembersPageResult } from '../cohort-store';

interface Member extends CohortMemberRef {
  seenGen: number;
}

interface Session {
  gen: number;
  totalPages: number;
  received: number;
  complete: boolean;
  createdAt: number;
}

interface Cohort {
  gen: number;
  /** Generation of the newest completed export: an older session that completes later must not sweep. */
  doneGen: number;
  members: Map<string, Member>;
}

const ref = (m: Member): CohortMemberRef => {
  const out: CohortMemberRef = { distinctId: m.distinctId };
  if (m.mpid !== undefined) out.mpid = m.mpid;
  if (m.email !== undefined) out.email = m.email;
  return out;
};

/**
 * The same contract as the SQLite store, in maps (tests, demos). Every method runs synchronously inside one call,
 * so it is atomic by construction.
 */
export class MemoryCohortStore implements CohortStore {
  private readonly cohorts = new Map<string, Cohort>();
  private readonly sessions = new Map<string, Session>();
  /** Page keys with the time they were recorded. */
  private readonly pages = new Map<string, number>();

  constructor() {}

  private cohort(key: string): Cohort {
    let c = this.cohorts.get(key);
    if (!c) {
      c = { gen: 0, doneGen: 0, members: new Map() };
      this.cohorts.set(key, c);
    }
    return c;
  }

  async applyDiffPage(cohortKey: string, kind: DiffKind, sessionId: string | undefined, page: number,
    members: CohortMemberRef[], now: number): Promise<DiffPageResult> {
    if (sessionId !== undefined) {
      const pk = JSON.stringify([cohortKey, sessionId, kind, page]);
      if (this.pages.has(pk)) return { duplicate: true };
      this.pages.set(pk, now);
    }
    const c = this.cohort(cohortKey);
    for (const m of members) {
      if (kind === 'remove_members') c.members.delete(m.distinctId);
      else c.members.set(m.distinctId, { ...m, seenGen: Math.max(c.gen, c.members.get(m.distinctId)?.seenGen ?? 0) });
    }
    return { duplicate: false };
  }

  async stageMembersPage(cohortKey: string, sessionId: string, page: number, totalPages: number,
    members: CohortMemberRef[], now: number): Promise<MembersPageResult> {
    const c = this.cohort(cohortKey);
    const sk = JSON.stringify([cohortKey, sessionId]);
    const pk = JSON.stringify([cohortKey, sessionId, 'members', page]);
    let s = this.sessions.get(sk);
    if (s && (s.complete || this.pages.has(pk))) {
      return { duplicate: true, added: [], removed: [], received: s.received, totalPages: s.totalPages, complete: false };
    }
    if (!s) {
      c.gen += 1;
      s = { gen: c.gen, totalPages, received: 0, complete: false, createdAt: now };
      this.sessions.set(sk, s);
    }
    this.pages.set(pk, now);
    s.received += 1;
    const added: CohortMemberRef[] = [];
    for (const m of members) {
      const prev = c.members.get(m.distinctId);
      if (!prev) added.push(m);
      c.members.set(m.distinctId, { ...m, seenGen: Math.max(s.gen, prev?.seenGen ?? 0) });
    }
    const removed: CohortMemberRef[] = [];
    if (s.received >= s.totalPages) {
      s.complete = true;
      if (s.gen > c.doneGen) {
        c.doneGen = s.gen;
        for (const [id, m] of c.members) {
          if (m.seenGen < s.gen) {
            removed.push(ref(m));
            c.members.delete(id);
          }
        }
      }
    }
    return { duplicate: false, added, removed, received: s.received, totalPages: s.totalPages, complete: s.complete };
  }

  async expire(before: number): Promise<number> {
    let dropped = 0;
    for (const [k, s] of this.sessions) {
      if (s.createdAt < before) {
        this.sessions.delete(k);
        dropped += 1;
      }
    }
    for (const [k, at] of this.pages) if (at < before) this.pages.delete(k);
    return dropped;
  }

  async memberCount(cohortKey: string): Promise<number> {
    return this.cohorts.get(cohortKey)?.members.size ?? 0;
  }

  async members(cohortKey: string, afterDistinctId: string | undefined, limit: number): Promise<CohortMemberRef[]> {
    const all = [...(this.cohorts.get(cohortKey)?.members.values() ?? [])]
      .filter((m) => afterDistinctId === undefined || m.distinctId > afterDistinctId)
      .sort((a, b) => (a.distinctId < b.distinctId ? -1 : a.distinctId > b.distinctId ? 1 : 0));
    return all.slice(0, limit).map(ref);
  }
}
