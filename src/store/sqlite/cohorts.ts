import type Database from 'better-sqlite3';
import type { CohortMemberRef, CohortStore, DiffKind, DiffPageResult, MembersPageResult } from '../cohort-store';
import { LogFold, type LogFoldOptions } from './log-fold';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS coh_cohorts (cohort TEXT PRIMARY KEY, gen INTEGER NOT NULL DEFAULT 0,
  done_gen INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS coh_members (cohort TEXT NOT NULL, distinct_id TEXT NOT NULL, mpid TEXT, email TEXT,
  seen_gen INTEGER NOT NULL, PRIMARY KEY (cohort, distinct_id)) WITHOUT ROWID;
-- There was an index on (cohort, seen_gen) for the sweep. Each member seen by an export moved in it: two random
-- B-tree page writes per member on top of the row's own, which with real (scattered) distinct IDs set the speed of a
-- whole export (9.4k members/s). The sweep now scans the cohort's rows once per completed export instead (~0.1 s per
-- 300k members), and files made with the index lose it at open.
DROP INDEX IF EXISTS coh_members_gen;
-- Changes to coh_members not folded into it yet (LogFold): data is [mpid, email, seen_gen] as JSON, or NULL (removed).
CREATE TABLE IF NOT EXISTS coh_members_log (seq INTEGER PRIMARY KEY, cohort TEXT NOT NULL, distinct_id TEXT NOT NULL,
  data TEXT);
CREATE TABLE IF NOT EXISTS coh_sessions (cohort TEXT NOT NULL, session TEXT NOT NULL, gen INTEGER NOT NULL,
  total INTEGER NOT NULL, received INTEGER NOT NULL, complete INTEGER NOT NULL, created_at INTEGER NOT NULL,
  PRIMARY KEY (cohort, session)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS coh_sessions_created ON coh_sessions (created_at);
CREATE TABLE IF NOT EXISTS coh_pages (cohort TEXT NOT NULL, session TEXT NOT NULL, kind TEXT NOT NULL,
  page INTEGER NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (cohort, session, kind, page)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS coh_pages_at ON coh_pages (at);
`;

interface SessionRow {
  gen: number;
  total: number;
  received: number;
  complete: number;
}

interface MemberRow {
  distinct_id: string;
  mpid: string | null;
  email: string | null;
}

const toRef = (r: MemberRow): CohortMemberRef => {
  const out: CohortMemberRef = { distinctId: r.distinct_id };
  if (r.mpid !== null) out.mpid = r.mpid;
  if (r.email !== null) out.email = r.email;
  return out;
};

/** A member's state in the log: [mpid, email, seen_gen]. */
type LoggedMember = [string | null, string | null, number];

/**
 * A logged member's seen_gen (the last element of its JSON) without parsing the rest: the sweep looks at every member
 * waiting in memory (up to ~100,000), and parsing each whole cost ~45 ms of the completing page.
 */
const seenGenOf = (data: string): number => Number(data.slice(data.lastIndexOf(',') + 1, -1));

/**
 * The embedded default. One IMMEDIATE transaction per webhook page and prepared statements only: a 1000-member
 * page is one transaction, no per-member round trip and no per-member fsync.
 *
 * Members are laid out for random distinct IDs (LogFold, log-fold.ts): a page's members are appended to
 * `coh_members_log` and kept in memory, and folded into `coh_members` in key order later. Refreshing each member's
 * row in place cost a page write per member (about 1,000 WAL frames per page) and set the speed of an export: 20k →
 * 31–37k members/s at 1M members. The sweep at the end of an export reads both sides (`sweep`).
 */
export class SqliteCohortStore implements CohortStore {
  private readonly st;
  /** Members' states not folded into coh_members yet (cohort → distinct ID → LoggedMember JSON or null). */
  private readonly log: LogFold<string>;

  constructor(private readonly db: Database.Database, opts: LogFoldOptions = {}) {
    db.exec(SCHEMA);
    this.st = {
      initCohort: db.prepare('INSERT OR IGNORE INTO coh_cohorts (cohort) VALUES (?)'),
      cohort: db.prepare<[string], { gen: number; done_gen: number }>('SELECT gen, done_gen FROM coh_cohorts WHERE cohort = ?'),
      bumpGen: db.prepare('UPDATE coh_cohorts SET gen = gen + 1 WHERE cohort = ?'),
      setDone: db.prepare('UPDATE coh_cohorts SET done_gen = ? WHERE cohort = ?'),
      addPage: db.prepare('INSERT OR IGNORE INTO coh_pages (cohort, session, kind, page, at) VALUES (?, ?, ?, ?, ?)'),
      session: db.prepare<[string, string], SessionRow>('SELECT gen, total, received, complete FROM coh_sessions WHERE cohort = ? AND session = ?'),
      addSession: db.prepare('INSERT INTO coh_sessions (cohort, session, gen, total, received, complete, created_at) VALUES (?, ?, ?, ?, 0, 0, ?)'),
      countPage: db.prepare('UPDATE coh_sessions SET received = received + 1, complete = (received + 1 >= total) WHERE cohort = ? AND session = ?'),
      deleteMember: db.prepare('DELETE FROM coh_members WHERE cohort = ? AND distinct_id = ?'),
      // One scan of the cohort's rows, once per completed export (no index on seen_gen, see SCHEMA).
      stale: db.prepare<[string, number], [string, string | null, string | null]>(
        'SELECT distinct_id, mpid, email FROM coh_members WHERE cohort = ? AND seen_gen < ?').raw(),
      expireSessions: db.prepare('DELETE FROM coh_sessions WHERE created_at < ?'),
      expirePages: db.prepare('DELETE FROM coh_pages WHERE at < ?'),
      count: db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM coh_members WHERE cohort = ?'),
      list: db.prepare<[string, string, number], MemberRow>(
        'SELECT distinct_id, mpid, email FROM coh_members WHERE cohort = ? AND distinct_id > ? ORDER BY distinct_id LIMIT ?'),
      member: db.prepare<[string, string], LoggedMember>('SELECT mpid, email, seen_gen FROM coh_members WHERE cohort = ? AND distinct_id = ?').raw(),
      putMember: db.prepare('INSERT OR REPLACE INTO coh_members (cohort, distinct_id, mpid, email, seen_gen) VALUES (?, ?, ?, ?, ?)'),
      log: db.prepare('INSERT INTO coh_members_log (cohort, distinct_id, data) VALUES (?, ?, ?)'),
      lastSeq: db.prepare<[], number | null>('SELECT max(seq) FROM coh_members_log').pluck(),
      dropLog: db.prepare('DELETE FROM coh_members_log WHERE seq <= ?'),
    };
    const st = this.st;
    this.log = new LogFold<string>(db, {
      log: (cohort, id, data) => st.log.run(cohort, id, data),
      put: (cohort, id, data) => {
        const [mpid, email, gen] = JSON.parse(data) as LoggedMember;
        st.putMember.run(cohort, id, mpid, email, gen);
      },
      del: (cohort, id) => st.deleteMember.run(cohort, id),
      lastSeq: () => st.lastSeq.get() ?? 0,
      dropLog: (upTo) => st.dropLog.run(upTo),
    }, opts);
    // The log is what was not folded before the last stop: back into memory, in order, the latest row winning.
    for (const [cohort, id, data] of db.prepare<[], [string, string, string | null]>(
      'SELECT cohort, distinct_id, data FROM coh_members_log ORDER BY seq').raw().iterate()) {
      this.log.replay(cohort, id, data);
    }
  }

  /** A member's latest state: in memory if not folded yet, else its row. */
  private member(cohortKey: string, distinctId: string): LoggedMember | undefined {
    const logged = this.log.get(cohortKey, distinctId);
    if (logged === undefined) return this.st.member.get(cohortKey, distinctId);
    return logged === null ? undefined : (JSON.parse(logged) as LoggedMember);
  }

  /** Inserts or refreshes one member; true when it was not in the cohort before. */
  private upsert(cohortKey: string, m: CohortMemberRef, gen: number): boolean {
    const before = this.member(cohortKey, m.distinctId);
    const seen: LoggedMember = [m.mpid ?? null, m.email ?? null, before ? Math.max(before[2], gen) : gen];
    this.log.write(cohortKey, m.distinctId, JSON.stringify(seen));
    return before === undefined;
  }

  async applyDiffPage(cohortKey: string, kind: DiffKind, sessionId: string | undefined, page: number,
    members: CohortMemberRef[], now: number): Promise<DiffPageResult> {
    const st = this.st;
    return this.log.transaction((): DiffPageResult => {
      if (sessionId !== undefined && st.addPage.run(cohortKey, sessionId, kind, page, now).changes === 0) {
        return { duplicate: true };
      }
      if (kind === 'remove_members') {
        for (const m of members) this.log.write(cohortKey, m.distinctId, null);
      } else {
        st.initCohort.run(cohortKey);
        const gen = st.cohort.get(cohortKey)!.gen;
        for (const m of members) this.upsert(cohortKey, m, gen);
      }
      this.log.step(members.length);
      return { duplicate: false };
    });
  }

  async stageMembersPage(cohortKey: string, sessionId: string, page: number, totalPages: number,
    members: CohortMemberRef[], now: number): Promise<MembersPageResult> {
    const st = this.st;
    return this.log.transaction((): MembersPageResult => {
      let session = st.session.get(cohortKey, sessionId);
      if (session?.complete) {
        return { duplicate: true, added: [], removed: [], received: session.received, totalPages: session.total, complete: false };
      }
      if (st.addPage.run(cohortKey, sessionId, 'members', page, now).changes === 0 && session) {
        return { duplicate: true, added: [], removed: [], received: session.received, totalPages: session.total, complete: false };
      }
      st.initCohort.run(cohortKey);
      if (!session) {
        st.bumpGen.run(cohortKey);
        const gen = st.cohort.get(cohortKey)!.gen;
        st.addSession.run(cohortKey, sessionId, gen, totalPages, now);
        session = { gen, total: totalPages, received: 0, complete: 0 };
      }
      st.countPage.run(cohortKey, sessionId);
      const received = session.received + 1;
      const added: CohortMemberRef[] = [];
      for (const m of members) if (this.upsert(cohortKey, m, session.gen)) added.push(m);
      const complete = received >= session.total;
      let removed: CohortMemberRef[] = [];
      if (complete) {
        const doneGen = st.cohort.get(cohortKey)!.done_gen;
        if (session.gen > doneGen) {
          st.setDone.run(session.gen, cohortKey);
          removed = this.sweep(cohortKey, session.gen);
        }
      }
      this.log.step(members.length);
      return { duplicate: false, added, removed, received, totalPages: session.total, complete };
    });
  }

  /**
   * Removes the members an export did not list (seen before generation `gen`), in the completing page's transaction:
   * those waiting in memory are judged by their latest state there, the others by their row (one scan of the
   * cohort), and each removal is logged like any other change. Folding everything first and then deleting in one
   * statement held the event loop ~0.8 s per 1M-member export, most of it writing back members the export had only
   * confirmed.
   */
  private sweep(cohortKey: string, gen: number): CohortMemberRef[] {
    const removed: CohortMemberRef[] = [];
    for (const [distinctId, data] of this.log.entries(cohortKey)) {
      if (data === null || seenGenOf(data) >= gen) continue;
      const [mpid, email] = JSON.parse(data) as LoggedMember;
      removed.push(toRef({ distinct_id: distinctId, mpid, email }));
    }
    for (const [distinctId, mpid, email] of this.st.stale.all(cohortKey, gen)) {
      if (this.log.get(cohortKey, distinctId) === undefined) removed.push(toRef({ distinct_id: distinctId, mpid, email }));
    }
    removed.sort((a, b) => (a.distinctId < b.distinctId ? -1 : a.distinctId > b.distinctId ? 1 : 0));
    for (const m of removed) this.log.write(cohortKey, m.distinctId, null);
    return removed;
  }

  async expire(before: number): Promise<number> {
    const st = this.st;
    return this.db.transaction(() => {
      const dropped = st.expireSessions.run(before).changes;
      st.expirePages.run(before);
      return dropped;
    }).immediate();
  }

  /** Folds the members' log into coh_members (at close). */
  foldAll(): void {
    this.log.foldAll();
  }

  async memberCount(cohortKey: string): Promise<number> {
    this.log.foldAll(); // rare (tests, inspection): the whole table, then a count
    return this.st.count.get(cohortKey)?.n ?? 0;
  }

  async members(cohortKey: string, afterDistinctId: string | undefined, limit: number): Promise<CohortMemberRef[]> {
    this.log.foldAll();
    return this.st.list.all(cohortKey, afterDistinctId ?? '', limit).map(toRef);
  }
}
