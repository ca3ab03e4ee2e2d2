import type Database from 'better-sqlite3';
import type {
  AudienceStore, DeadItem, MembershipCompute, OutboxItem, OutboxStats, ProfileProps, QueuedVersion,
} from '../audience-store';
import { StoredOutboxItem } from '../stored-outbox-item';
import type { LogFoldOptions } from './log-fold';
import { MembershipTable } from './memberships';
import { OutboxLocator, type OutboxLocatorOptions } from './outbox-locator';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS aud_outbox (scope TEXT NOT NULL, due_at INTEGER NOT NULL, distinct_id TEXT NOT NULL,
  props TEXT NOT NULL, version INTEGER NOT NULL, count INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
  queued_at INTEGER NOT NULL, PRIMARY KEY (scope, due_at, distinct_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS aud_dead (id INTEGER PRIMARY KEY, scope TEXT NOT NULL, distinct_id TEXT NOT NULL,
  props TEXT NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS aud_counters (scope TEXT PRIMARY KEY, accepted INTEGER NOT NULL DEFAULT 0,
  acked INTEGER NOT NULL DEFAULT 0, dead INTEGER NOT NULL DEFAULT 0, next_version INTEGER NOT NULL DEFAULT 1);
`;

/** A claimed row as the claim query returns it: [due_at, distinct_id, version, count, attempts, queued_at, props]. */
type ClaimedRow = [number, string, number, number, number, number, string];

/** Claims in flight in this process, per scope. */
interface Claims {
  /** distinct ID → lease end (epoch ms). */
  leased: Map<string, number>;
  /**
   * Outbox position (due_at, distinct_id) after the last row handed out, while claims are in flight: the next claim
   * starts there instead of reading every leased row again. Rows only land behind it when the sender has caught up
   * (or the clock went back), and a claim that comes up short looks behind it too.
   */
  cursor: [number, string] | undefined;
}

/** Due rows after a position (due_at, distinct_id), in outbox order, as arrays (ClaimedRow). */
function claimSql(bound: string): string {
  return `SELECT due_at, distinct_id, version, count, attempts, queued_at, props FROM aud_outbox
    WHERE scope = ? AND due_at <= ? AND (due_at, distinct_id) > (?, ?) ${bound} ORDER BY due_at, distinct_id LIMIT ?`;
}

/**
 * The embedded default: one transaction per call, prepared statements, WAL so a killed process loses nothing.
 *
 * The outbox is clustered by (scope, due_at, distinct_id): claims read it front to back with no second lookup per
 * row (a (scope, due_at) index over a table keyed by distinct ID cost one B-tree search per claimed row). A user's
 * row is found for the merge and the ack by its due_at, which OutboxLocator knows (in memory, or through an index
 * while the backlog is large), so each of those is a primary-key search too.
 *
 * Built for throughput (a 1000-user message is one transaction): users' audience sets are appended to a log and
 * folded into their table in key order later (MembershipTable); there is no audience index (membersOfAudience, needed
 * only when a subscription is removed, scans instead); and claims are leased in memory, not written back — a SQLite
 * file is used by one process, so after a crash nothing is leased anyway, and the hot path saves an index rewrite per
 * update.
 */
export class SqliteAudienceStore implements AudienceStore {
  private readonly st;
  /** scope → claims in flight in this process. */
  private readonly claims = new Map<string, Claims>();

  /** Each user's audience set (its own file: laid out for random user IDs). */
  private readonly members: MembershipTable;
  /** Where each waiting user's outbox row is. */
  private readonly outbox: OutboxLocator;

  constructor(private readonly db: Database.Database, opts: LogFoldOptions & OutboxLocatorOptions = {}) {
    db.exec(SCHEMA);
    this.members = new MembershipTable(db, opts);
    this.outbox = new OutboxLocator(db, opts);
    this.st = {
      counters: db.prepare<[string], { accepted: number; acked: number; dead: number; next_version: number }>(
        'SELECT accepted, acked, dead, next_version FROM aud_counters WHERE scope = ?'),
      initCounters: db.prepare('INSERT OR IGNORE INTO aud_counters (scope) VALUES (?)'),
      bumpAccepted: db.prepare('UPDATE aud_counters SET accepted = accepted + ?, next_version = ? WHERE scope = ?'),
      bumpAcked: db.prepare('UPDATE aud_counters SET acked = acked + ? WHERE scope = ?'),
      bumpDead: db.prepare('UPDATE aud_counters SET dead = dead + ? WHERE scope = ?'),
      addOutbox: db.prepare(`INSERT INTO aud_outbox (scope, distinct_id, props, version, count, attempts, queued_at, due_at)
        VALUES (?, ?, ?, ?, 1, 0, ?, ?)`),
      // json_patch merges the new property values over the pending ones: last write wins, per property.
      mergeOutbox: db.prepare(`UPDATE aud_outbox SET props = json_patch(props, ?), version = ?, count = count + 1
        WHERE scope = ? AND due_at = ? AND distinct_id = ?`),
      // Rows as arrays: better-sqlite3 builds a JS object per row and column, which cost more than the B-tree scan.
      due: db.prepare<[string, number, number, string, number], ClaimedRow>(claimSql('')).raw(),
      // The same, not past a position: the look behind the claim cursor.
      dueUpTo: db.prepare<[string, number, number, string, number, string, number], ClaimedRow>(
        claimSql('AND (due_at, distinct_id) <= (?, ?)')).raw(),
      // Every statement on one user's row names it by its whole key: the due_at comes from OutboxLocator.
      getVersion: db.prepare<[string, number, string], number>(
        'SELECT version FROM aud_outbox WHERE scope = ? AND due_at = ? AND distinct_id = ?').pluck(),
      delOutbox: db.prepare('DELETE FROM aud_outbox WHERE scope = ? AND due_at = ? AND distinct_id = ?'),
      // The common ack: the sent version is still the latest, so the row goes (one statement instead of read + delete).
      delIfVersion: db.prepare('DELETE FROM aud_outbox WHERE scope = ? AND due_at = ? AND distinct_id = ? AND version = ?'),
      keepNewer: db.prepare(`UPDATE aud_outbox SET count = count - ?, attempts = 0, queued_at = ?, due_at = ?
        WHERE scope = ? AND due_at = ? AND distinct_id = ?`),
      retry: db.prepare('UPDATE aud_outbox SET attempts = attempts + 1, due_at = ? WHERE scope = ? AND due_at = ? AND distinct_id = ?'),
      addDead: db.prepare('INSERT INTO aud_dead (scope, distinct_id, props, reason, at) VALUES (?, ?, ?, ?, ?)'),
      firstDue: db.prepare<[string, number], { distinct_id: string; due_at: number }>(
        'SELECT distinct_id, due_at FROM aud_outbox WHERE scope = ? ORDER BY due_at, distinct_id LIMIT ?'),
      pending: db.prepare<[string], { pending: number | null; profiles: number }>(
        'SELECT SUM(count) AS pending, COUNT(*) AS profiles FROM aud_outbox WHERE scope = ?'),
      deadList: db.prepare<[string, number], { distinct_id: string; props: string; reason: string; at: number }>(
        'SELECT distinct_id, props, reason, at FROM aud_dead WHERE scope = ? ORDER BY id DESC LIMIT ?'),
    };
  }

  private claimsOf(scope: string): Claims {
    let c = this.claims.get(scope);
    if (!c) {
      c = { leased: new Map(), cursor: undefined };
      this.claims.set(scope, c);
    }
    return c;
  }

  private release(scope: string, items: OutboxItem[]): void {
    const c = this.claims.get(scope);
    if (!c) return;
    for (const i of items) c.leased.delete(i.distinctId);
    if (c.leased.size === 0) c.cursor = undefined; // nothing in flight: the next claim reads from the front
  }

  async updateMemberships(scope: string, userKeys: string[], compute: MembershipCompute, now: number): Promise<QueuedVersion[]> {
    const st = this.st;
    const outbox = this.outbox;
    return this.members.transaction(() => {
      const writes = compute(this.members.read(scope, userKeys));
      st.initCounters.run(scope);
      let version = st.counters.get(scope)!.next_version;
      const versions: QueuedVersion[] = [];
      for (const w of writes) {
        const forget = w.membership.audiences.length === 0 && w.membership.targets.length === 0;
        this.members.write(scope, w.userKey, forget ? null : w.membership);
        for (const set of w.profileSets) {
          const props = JSON.stringify(set.props);
          const due = outbox.dueAt(scope, set.distinctId);
          if (due === undefined) {
            st.addOutbox.run(scope, set.distinctId, props, version, now, now);
            outbox.added(scope, set.distinctId, now);
          } else st.mergeOutbox.run(props, version, scope, due, set.distinctId);
          versions.push({ distinctId: set.distinctId, version });
          version += 1;
        }
      }
      st.bumpAccepted.run(versions.length, version, scope);
      this.members.step(writes.length);
      outbox.settle();
      return versions;
    }, () => outbox.reload());
  }

  /** One IMMEDIATE transaction on the outbox; if it rolls back, OutboxLocator reads the table again. */
  private outboxTransaction(fn: () => void): void {
    try {
      this.db.transaction(() => {
        fn();
        this.outbox.settle();
      }).immediate();
    } catch (err) {
      this.outbox.reload();
      throw err;
    }
  }

  async membersOfAudience(scope: string, audienceId: string, afterKey: string | undefined, limit: number): Promise<string[]> {
    return this.members.membersOf(scope, audienceId, afterKey, limit);
  }

  async claimDue(scope: string, limit: number, now: number, leaseMs: number): Promise<OutboxItem[]> {
    const c = this.claimsOf(scope);
    let expired = false;
    for (const [id, until] of c.leased) {
      if (until <= now) {
        c.leased.delete(id); // a lease that ran out: due again, wherever it sits
        expired = true;
      }
    }
    if (expired || c.leased.size === 0) c.cursor = undefined;
    const out: OutboxItem[] = [];
    const from = c.cursor;
    // From the cursor to the end; if that is not enough, from the front up to where the cursor started (leased rows
    // there are skipped; anything else there arrived behind the cursor).
    if (!this.scan(scope, c, limit, now, leaseMs, out, from, undefined) && from) {
      this.scan(scope, c, limit, now, leaseMs, out, undefined, from);
    }
    return out;
  }

  /** Claims unleased due rows after `after` (and not past `upTo`) into `out`; false when the rows ran out first. */
  private scan(scope: string, c: Claims, limit: number, now: number, leaseMs: number, out: OutboxItem[],
    after: [number, string] | undefined, upTo: [number, string] | undefined): boolean {
    let pos = after ?? [Number.MIN_SAFE_INTEGER, ''];
    while (out.length < limit) {
      const want = limit - out.length;
      const rows = upTo
        ? this.st.dueUpTo.all(scope, now, pos[0], pos[1], upTo[0], upTo[1], want)
        : this.st.due.all(scope, now, pos[0], pos[1], want);
      for (const r of rows) {
        pos = [r[0], r[1]];
        if (c.leased.has(r[1])) continue;
        c.leased.set(r[1], now + leaseMs);
        out.push(new StoredOutboxItem(r[1], r[6], r[2], r[3], r[4], r[5]));
      }
      if (!upTo && rows.length) c.cursor = pos;
      if (rows.length < want) return false;
    }
    return true;
  }

  async ack(scope: string, items: OutboxItem[], now: number): Promise<void> {
    const st = this.st;
    const outbox = this.outbox;
    this.outboxTransaction(() => {
      let acked = 0;
      for (const item of items) {
        // A row that is gone altogether (acknowledged twice) counts for nothing.
        const due = outbox.dueAt(scope, item.distinctId);
        if (due === undefined) continue;
        // Sent version still the latest: delete it. Otherwise a newer change arrived meanwhile: keep it, due now.
        if (st.delIfVersion.run(scope, due, item.distinctId, item.version).changes > 0) {
          outbox.removed(scope, item.distinctId);
        } else {
          st.keepNewer.run(item.count, now, now, scope, due, item.distinctId);
          outbox.moved(scope, item.distinctId, now);
        }
        acked += item.count;
      }
      st.bumpAcked.run(acked, scope);
    });
    this.release(scope, items);
  }

  async retryLater(scope: string, items: OutboxItem[], dueAt: number): Promise<void> {
    const st = this.st;
    const outbox = this.outbox;
    this.outboxTransaction(() => {
      for (const item of items) {
        const due = outbox.dueAt(scope, item.distinctId);
        if (due === undefined) continue;
        st.retry.run(dueAt, scope, due, item.distinctId);
        outbox.moved(scope, item.distinctId, dueAt);
      }
    });
    this.release(scope, items);
  }

  async bury(scope: string, dead: DeadItem[], now: number): Promise<void> {
    const st = this.st;
    const outbox = this.outbox;
    this.outboxTransaction(() => {
      let count = 0;
      for (const { item, reason } of dead) {
        const due = outbox.dueAt(scope, item.distinctId);
        if (due === undefined) continue;
        count += item.count;
        st.addDead.run(scope, item.distinctId, item.propsJson ?? JSON.stringify(item.props), reason, now);
        if (st.getVersion.get(scope, due, item.distinctId) === item.version) {
          st.delOutbox.run(scope, due, item.distinctId);
          outbox.removed(scope, item.distinctId);
        } else {
          st.keepNewer.run(item.count, now, now, scope, due, item.distinctId);
          outbox.moved(scope, item.distinctId, now);
        }
      }
      st.bumpDead.run(count, scope);
    });
    this.release(scope, dead.map((d) => d.item));
  }

  /** Folds the audience sets' log into their table (at close). */
  foldAll(): void {
    this.members.foldAll();
  }

  /** Whether the outbox is looked up through its index now (a large backlog; for tests). */
  get outboxIndexed(): boolean {
    return this.outbox.usesIndex;
  }

  async recoverLeases(scope: string, _now: number): Promise<void> {
    // Leases live in this process only: whatever a previous run (or a closed sender) held is simply due again.
    this.claims.delete(scope);
  }

  async nextDueAt(scope: string): Promise<number | undefined> {
    const leased = this.claims.get(scope)?.leased;
    for (const r of this.st.firstDue.all(scope, (leased?.size ?? 0) + 1)) {
      if (!leased?.has(r.distinct_id)) return r.due_at;
    }
    // Everything left is in flight: the sender looks again when those settle, or when their leases run out.
    let earliest: number | undefined;
    for (const until of leased?.values() ?? []) if (earliest === undefined || until < earliest) earliest = until;
    return earliest;
  }

  async stats(scope: string, opts: { quick?: boolean } = {}): Promise<OutboxStats> {
    const c = this.st.counters.get(scope);
    const accepted = c?.accepted ?? 0;
    const acked = c?.acked ?? 0;
    const dead = c?.dead ?? 0;
    // Every transaction that changes the outbox rows moves these counters with them, so the difference is exactly the
    // sum the rows would give; counting the rows is left to those who ask for it (tests check the two agree).
    if (opts.quick) return { accepted, acked, dead, pending: accepted - acked - dead, profiles: -1 };
    const p = this.st.pending.get(scope);
    return { accepted, acked, dead, pending: p?.pending ?? 0, profiles: p?.profiles ?? 0 };
  }

  async deadLetters(scope: string, limit: number) {
    return this.st.deadList.all(scope, limit).map((r) => ({
      distinctId: r.distinct_id, props: JSON.parse(r.props) as ProfileProps, reason: r.reason, at: r.at,
    }));
  }
}
