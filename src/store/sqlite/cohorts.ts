import type Database from 'better-sqlite3';
import type { CohortMemberRef, CohortStore, DiffKind, DiffPageResult, MembersPageResult } from '../cohort-store';
import { ConfirmedSlots, decodeSlots, encodeSlots } from './confirmed-slots';
import { LogFold, type LogFoldOptions } from './log-fold';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS coh_cohorts (cohort TEXT PRIMARY KEY, gen INTEGER NOT NULL DEFAULT 0,
  done_gen INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
-- seen_gen: the export that last wrote the row (exports since may have confirmed it by its slot, see coh_seen).
-- slot: a number the member keeps while it is in the cohort (coh_cohorts.next_slot hands them out); NULL in rows
-- from before slots, until the member is next seen. Files from before get both columns at open (addColumn).
CREATE TABLE IF NOT EXISTS coh_members (cohort TEXT NOT NULL, distinct_id TEXT NOT NULL, mpid TEXT, email TEXT,
  seen_gen INTEGER NOT NULL, slot INTEGER, PRIMARY KEY (cohort, distinct_id)) WITHOUT ROWID;
-- There was an index on (cohort, seen_gen) for the sweep. Each member seen by an export moved in it: two random
-- B-tree page writes per member on top of the row's own, which with real (scattered) distinct IDs set the speed of a
-- whole export (9.4k members/s). The sweep now scans the cohort's rows once per completed export instead (~0.1 s per
-- 300k members), and files made with the index lose it at open.
DROP INDEX IF EXISTS coh_members_gen;
-- Changes to coh_members not folded into it yet (LogFold): data is [mpid, email, slot, seen_gen] as JSON (from before
-- slots: [mpid, email, seen_gen]), or NULL (removed).
CREATE TABLE IF NOT EXISTS coh_members_log (seq INTEGER PRIMARY KEY, cohort TEXT NOT NULL, distinct_id TEXT NOT NULL,
  data TEXT);
-- Members an export confirmed unchanged, by slot (ConfirmedSlots): one row per page, until that export is swept.
CREATE TABLE IF NOT EXISTS coh_seen (seq INTEGER PRIMARY KEY, cohort TEXT NOT NULL, gen INTEGER NOT NULL,
  slots BLOB NOT NULL);
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

/**
 * A member's state, in the log and from its row: [mpid, email, slot, seen_gen]. Logs written before slots existed
 * hold [mpid, email, seen_gen]; rows from then have a null slot. Such a member gets a slot the next time it is seen.
 */
type LoggedMember = [string | null, string | null, number | null, number] | [string | null, string | null, number];

/** What upsert decides for one page: its generation, the next free slot (-1: not read yet), members confirmed. */
interface PageWork {
  gen: number;
  nextSlot: number;
  confirmed: number[];
}

const genOf = (m: LoggedMember): number => m[m.length - 1] as number;
const slotOf = (m: LoggedMember): number | null => (m.length === 4 ? m[2] : null);

/**
 * A logged member's seen_gen (the last element of its JSON) without parsing the rest: the sweep looks at every member
 * waiting in memory (up to ~100,000), and parsing each whole cost ~45 ms of the completing page.
 */
const seenGenOf = (data: string): number => Number(data.slice(data.lastIndexOf(',') + 1, -1));

/** Adds a column that files from an earlier version lack. */
function addColumn(db: Database.Database, table: string, column: string, type: string): void {
  const has = (db.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>).some((c) => c.name === column);
  if (!has) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
}

/**
 * The embedded default. One IMMEDIATE transaction per webhook page and prepared statements only: a 1000-member
 * page is one transaction, no per-member round trip and no per-member fsync.
 *
 * Members are laid out for random distinct IDs (LogFold, log-fold.ts): a page's members are appended to
 * `coh_members_log` and kept in memory, and folded into `coh_members` in key order later. Refreshing each member's
 * row in place cost a page write per member (about 1,000 WAL frames per page) and set the speed of an export: 20k →
 * 31–37k members/s at 1M members. Members an export lists unchanged are not written at all, only confirmed by slot
 * (ConfirmedSlots, confirmed-slots.ts): a recurring 1M-member export went from ~26k to ~67k members/s. The sweep at
 * the end of an export reads all three (`sweep`).
 */
export class SqliteCohortStore implements CohortStore {
  private readonly st;
  /** Members' states not folded into coh_members yet (cohort → distinct ID → LoggedMember JSON or null). */
  private readonly log: LogFold<string>;
  private readonly confirmed = new ConfirmedSlots();

  constructor(private readonly db: Database.Database, opts: LogFoldOptions = {}) {
    db.exec(SCHEMA);
    addColumn(db, 'coh_members', 'slot', 'INTEGER');
    addColumn(db, 'coh_cohorts', 'next_slot', 'INTEGER NOT NULL DEFAULT 0');
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
      // Rows not seen since before `gen` and not confirmed since (a byte per slot in @seen, see ConfirmedSlots). `IS
      // NOT`, not `!=`: an empty @seen binds as NULL, and then every row with a slot must count as not confirmed.
      stale: db.prepare<[{ cohort: string; gen: number; seen: Buffer }], [string, string | null, string | null]>(
        `SELECT distinct_id, mpid, email FROM coh_members WHERE cohort = @cohort AND seen_gen < @gen
          AND (slot IS NULL OR substr(@seen, slot + 1, 1) IS NOT x'01')`).raw(),
      nextSlot: db.prepare<[string], number>('SELECT next_slot FROM coh_cohorts WHERE cohort = ?').pluck(),
      setNextSlot: db.prepare('UPDATE coh_cohorts SET next_slot = ? WHERE cohort = ?'),
      addSeen: db.prepare('INSERT INTO coh_seen (cohort, gen, slots) VALUES (?, ?, ?)'),
      dropSeen: db.prepare('DELETE FROM coh_seen WHERE cohort = ? AND gen <= ?'),
      allSeen: db.prepare<[], [string, number, Buffer]>('SELECT cohort, gen, slots FROM coh_seen ORDER BY seq').raw(),
      expireSessions: db.prepare('DELETE FROM coh_sessions WHERE created_at < ?'),
      expirePages: db.prepare('DELETE FROM coh_pages WHERE at < ?'),
      count: db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM coh_members WHERE cohort = ?'),
      list: db.prepare<[string, string, number], MemberRow>(
        'SELECT distinct_id, mpid, email FROM coh_members WHERE cohort = ? AND distinct_id > ? ORDER BY distinct_id LIMIT ?'),
      member: db.prepare<[string, string], LoggedMember>('SELECT mpid, email, slot, seen_gen FROM coh_members WHERE cohort = ? AND distinct_id = ?').raw(),
      putMember: db.prepare('INSERT OR REPLACE INTO coh_members (cohort, distinct_id, mpid, email, slot, seen_gen) VALUES (?, ?, ?, ?, ?, ?)'),
      log: db.prepare('INSERT INTO coh_members_log (cohort, distinct_id, data) VALUES (?, ?, ?)'),
      lastSeq: db.prepare<[], number | null>('SELECT max(seq) FROM coh_members_log').pluck(),
      dropLog: db.prepare('DELETE FROM coh_members_log WHERE seq <= ?'),
    };
    const st = this.st;
    this.log = new LogFold<string>(db, {
      log: (cohort, id, data) => st.log.run(cohort, id, data),
      put: (cohort, id, data) => {
        const m = JSON.parse(data) as LoggedMember;
        st.putMember.run(cohort, id, m[0], m[1], slotOf(m), genOf(m));
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
    this.loadConfirmed();
  }

  /** The confirmations not swept yet, from coh_seen (at open, and after a transaction rolled back). */
  private loadConfirmed(): void {
    this.confirmed.clear();
    for (const [cohort, gen, slots] of this.st.allSeen.iterate()) this.confirmed.add(cohort, gen, decodeSlots(slots));
  }

  /**
   * Runs a page in one transaction (LogFold's). `page` collects what upsert decides: slots handed out and members
   * confirmed unchanged, which are stored at the end (one row for the whole page) and kept in memory.
   */
  private pageTransaction<T>(cohortKey: string, fn: (page: PageWork) => T): T {
    return this.log.transaction(() => {
      const page: PageWork = { gen: 0, nextSlot: -1, confirmed: [] };
      const out = fn(page);
      if (page.nextSlot >= 0) this.st.setNextSlot.run(page.nextSlot, cohortKey);
      if (page.confirmed.length) {
        this.st.addSeen.run(cohortKey, page.gen, encodeSlots(page.confirmed));
        this.confirmed.add(cohortKey, page.gen, page.confirmed);
      }
      return out;
    }, () => this.loadConfirmed());
  }

  /** A member's latest state: in memory if not folded yet, else its row. */
  private member(cohortKey: string, distinctId: string): LoggedMember | undefined {
    const logged = this.log.get(cohortKey, distinctId);
    if (logged === undefined) return this.st.member.get(cohortKey, distinctId);
    return logged === null ? undefined : (JSON.parse(logged) as LoggedMember);
  }

  /**
   * Inserts or refreshes one member as seen in generation `page.gen`; true when it was not in the cohort before. A
   * member already there, unchanged and with a slot, is only confirmed (ConfirmedSlots): its row is not written.
   */
  private upsert(cohortKey: string, m: CohortMemberRef, page: PageWork): boolean {
    const before = this.member(cohortKey, m.distinctId);
    const mpid = m.mpid ?? null;
    const email = m.email ?? null;
    const slot = before ? slotOf(before) : null;
    if (before && slot !== null && before[0] === mpid && before[1] === email) {
      if (genOf(before) < page.gen) page.confirmed.push(slot);
      return false;
    }
    if (page.nextSlot < 0) page.nextSlot = this.st.nextSlot.get(cohortKey) ?? 0;
    const seen: LoggedMember = [mpid, email, slot ?? page.nextSlot++, before ? Math.max(genOf(before), page.gen) : page.gen];
    this.log.write(cohortKey, m.distinctId, JSON.stringify(seen));
    return before === undefined;
  }

  async applyDiffPage(cohortKey: string, kind: DiffKind, sessionId: string | undefined, page: number,
    members: CohortMemberRef[], now: number): Promise<DiffPageResult> {
    const st = this.st;
    return this.pageTransaction(cohortKey, (work): DiffPageResult => {
      if (sessionId !== undefined && st.addPage.run(cohortKey, sessionId, kind, page, now).changes === 0) {
        return { duplicate: true };
      }
      if (kind === 'remove_members') {
        for (const m of members) this.log.write(cohortKey, m.distinctId, null);
      } else {
        st.initCohort.run(cohortKey);
        work.gen = st.cohort.get(cohortKey)!.gen;
        for (const m of members) this.upsert(cohortKey, m, work);
      }
      this.log.step(members.length);
      return { duplicate: false };
    });
  }

  async stageMembersPage(cohortKey: string, sessionId: string, page: number, totalPages: number,
    members: CohortMemberRef[], now: number): Promise<MembersPageResult> {
    const st = this.st;
    return this.pageTransaction(cohortKey, (work): MembersPageResult => {
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
      work.gen = session.gen;
      for (const m of members) if (this.upsert(cohortKey, m, work)) added.push(m);
      const complete = received >= session.total;
      let removed: CohortMemberRef[] = [];
      if (complete) {
        const doneGen = st.cohort.get(cohortKey)!.done_gen;
        if (session.gen > doneGen) {
          st.setDone.run(session.gen, cohortKey);
          this.confirmed.add(cohortKey, work.gen, work.confirmed); // this page's own, before its sweep
          removed = this.sweep(cohortKey, session.gen);
          // Swept: no later sweep asks about this generation or an earlier one, so nothing of it is stored.
          st.dropSeen.run(cohortKey, session.gen);
          this.confirmed.drop(cohortKey, session.gen);
          work.confirmed.length = 0;
        }
      }
      this.log.step(members.length);
      return { duplicate: false, added, removed, received, totalPages: session.total, complete };
    });
  }

  /**
   * Removes the members an export did not list (seen before generation `gen` and not confirmed since), in the
   * completing page's transaction: those waiting in memory are judged by their latest state there, the others by
   * their row (one scan of the cohort), and each removal is logged like any other change. Folding everything first
   * and then deleting in one statement held the event loop ~0.8 s per 1M-member export, most of it writing back
   * members the export had only confirmed.
   */
  private sweep(cohortKey: string, gen: number): CohortMemberRef[] {
    const removed: CohortMemberRef[] = [];
    const seen = this.confirmed.since(cohortKey, gen);
    for (const [distinctId, data] of this.log.entries(cohortKey)) {
      if (data === null || seenGenOf(data) >= gen) continue;
      const m = JSON.parse(data) as LoggedMember;
      const slot = slotOf(m);
      if (slot !== null && seen[slot] === 1) continue;
      removed.push(toRef({ distinct_id: distinctId, mpid: m[0], email: m[1] }));
    }
    const seenBlob = Buffer.from(seen.buffer, seen.byteOffset, seen.length);
    for (const [distinctId, mpid, email] of this.st.stale.all({ cohort: cohortKey, gen, seen: seenBlob })) {
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
