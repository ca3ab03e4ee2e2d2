import type { CohortMemberRef, CohortStore, DiffKind, DiffPageResult, MembersPageResult } from '../cohort-store';
import { COHORT_SCRIPTS } from './cohort-scripts';
import type { RedisConnection } from './connection';

/** Sessions and page keys dropped per `cohExpire` script: one call never blocks Redis for long. */
const EXPIRE_CHUNK = 1000;

/** A member's mpid and email as stored (`''` when it has neither, so nothing is stored). */
function pack(m: CohortMemberRef): string {
  if (m.mpid === undefined && m.email === undefined) return '';
  return JSON.stringify([m.mpid ?? null, m.email ?? null]);
}

function unpack(distinctId: string, data: string): CohortMemberRef {
  const out: CohortMemberRef = { distinctId };
  if (data) {
    const [mpid, email] = JSON.parse(data) as [string | null, string | null];
    if (mpid !== null) out.mpid = mpid;
    if (email !== null) out.email = email;
  }
  return out;
}

/**
 * The page's members as script arguments: one (distinct ID, data) pair per distinct ID, in first-seen order, with
 * the data of its last occurrence (as the SQLite store's insert-then-refresh leaves it); `first` holds the first
 * occurrence, which is what `added` reports.
 */
function memberArgs(members: CohortMemberRef[]): { args: string[]; first: CohortMemberRef[] } {
  const at = new Map<string, number>();
  const args: string[] = [];
  const first: CohortMemberRef[] = [];
  for (const m of members) {
    const i = at.get(m.distinctId);
    if (i === undefined) {
      at.set(m.distinctId, first.length);
      first.push(m);
      args.push(m.distinctId, pack(m));
    } else {
      args[2 * i + 1] = pack(m);
    }
  }
  return { args, first };
}

type StageReply = [number, number, number, number, number[], string[]];

/**
 * The CohortStore on Redis, with the semantics of `sqlite/cohorts.ts` (layout and scripts in `cohort-scripts.ts`).
 * Every call is one Lua script, so a page is applied completely or not at all and pages of one export arriving at
 * several Node-RED instances at once are serialised by Redis itself: exactly one of them sees the export complete
 * and returns the removals.
 */
export class RedisCohortStore implements CohortStore {
  private readonly sessionsKey: string;
  private readonly pagesKey: string;
  private readonly base: string;

  constructor(private readonly conn: RedisConnection, prefix: string) {
    this.base = `${prefix}coh:`;
    this.sessionsKey = `${this.base}sessions`;
    this.pagesKey = `${this.base}pages`;
    // The scripts belong to this sub-store; ioredis loads them again after a Redis restart (NOSCRIPT).
    const client = conn.client as unknown as Record<string, unknown>;
    for (const [name, s] of Object.entries(COHORT_SCRIPTS)) {
      if (typeof client[name] !== 'function') conn.client.defineCommand(name, { numberOfKeys: s.keys, lua: s.lua });
    }
  }

  /** Per-cohort key base; `encodeURIComponent` leaves no `:` or `|`, so the keys below cannot collide. */
  private cohortBase(cohortKey: string): string {
    return `${this.base}${encodeURIComponent(cohortKey)}:`;
  }

  private pageKey(cohortKey: string, kind: string, page: number, sessionId: string): string {
    return `${encodeURIComponent(cohortKey)}|${kind}|${page}|${sessionId}`;
  }

  async applyDiffPage(cohortKey: string, kind: DiffKind, sessionId: string | undefined, page: number,
    members: CohortMemberRef[], now: number): Promise<DiffPageResult> {
    const { args } = kind === 'remove_members'
      ? { args: members.flatMap((m) => [m.distinctId, '']) }
      : memberArgs(members);
    const pk = sessionId === undefined ? '' : this.pageKey(cohortKey, kind, page, sessionId);
    const res = await this.conn.run((c) => this.conn.script(c, 'cohDiff', this.pagesKey,
      this.cohortBase(cohortKey), kind, pk, now, ...args));
    return { duplicate: Number(res) === 1 };
  }

  async stageMembersPage(cohortKey: string, sessionId: string, page: number, totalPages: number,
    members: CohortMemberRef[], now: number): Promise<MembersPageResult> {
    const { args, first } = memberArgs(members);
    const member = `${encodeURIComponent(cohortKey)}:s:${sessionId}`;
    const [dup, received, total, complete, added, removed] = (await this.conn.run((c) => this.conn.script(c, 'cohStage',
      this.pagesKey, this.sessionsKey, this.cohortBase(cohortKey), member, `${this.base}${member}`,
      this.pageKey(cohortKey, 'members', page, sessionId), totalPages, now, ...args))) as StageReply;
    if (dup === 1) return { duplicate: true, added: [], removed: [], received: Number(received), totalPages: Number(total), complete: false };
    const gone: CohortMemberRef[] = [];
    for (let i = 0; i < removed.length; i += 2) gone.push(unpack(removed[i], removed[i + 1]));
    return {
      duplicate: false,
      added: added.map((i) => first[Number(i) - 1]),
      received: Number(received),
      totalPages: Number(total),
      complete: Number(complete) === 1,
      removed: gone,
    };
  }

  async expire(before: number): Promise<number> {
    let dropped = 0;
    for (;;) {
      const [s, p] = (await this.conn.run((c) => this.conn.script(c, 'cohExpire', this.sessionsKey, this.pagesKey,
        this.base, before, EXPIRE_CHUNK))) as [number, number];
      dropped += Number(s);
      if (Number(s) < EXPIRE_CHUNK && Number(p) < EXPIRE_CHUNK) return dropped;
    }
  }

  async memberCount(cohortKey: string): Promise<number> {
    return this.conn.run((c) => c.zcard(`${this.cohortBase(cohortKey)}g`));
  }

  async members(cohortKey: string, afterDistinctId: string | undefined, limit: number): Promise<CohortMemberRef[]> {
    if (limit <= 0) return [];
    const start = afterDistinctId === undefined ? '-' : `(${afterDistinctId}`;
    const rows = (await this.conn.run((c) => this.conn.script(c, 'cohList', this.cohortBase(cohortKey), start, limit))) as string[];
    const out: CohortMemberRef[] = [];
    for (let i = 0; i < rows.length; i += 2) out.push(unpack(rows[i], rows[i + 1]));
    return out;
  }
}
