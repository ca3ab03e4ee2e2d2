import type Database from 'better-sqlite3';
import type {
  AudienceStore, DeadItem, MembershipCompute, OutboxItem, OutboxStats, ProfileProps, QueuedVersion, UserMembership,
} from '../audience-store';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS aud_users (scope TEXT NOT NULL, user_key TEXT NOT NULL, data TEXT NOT NULL,
  PRIMARY KEY (scope, user_key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS aud_members (scope TEXT NOT NULL, audience_id TEXT NOT NULL, user_key TEXT NOT NULL,
  PRIMARY KEY (scope, audience_id, user_key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS aud_outbox (scope TEXT NOT NULL, distinct_id TEXT NOT NULL, props TEXT NOT NULL,
  version INTEGER NOT NULL, count INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
  queued_at INTEGER NOT NULL, due_at INTEGER NOT NULL, leased INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (scope, distinct_id));
CREATE INDEX IF NOT EXISTS aud_outbox_due ON aud_outbox (scope, due_at);
CREATE TABLE IF NOT EXISTS aud_dead (id INTEGER PRIMARY KEY, scope TEXT NOT NULL, distinct_id TEXT NOT NULL,
  props TEXT NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS aud_counters (scope TEXT PRIMARY KEY, accepted INTEGER NOT NULL DEFAULT 0,
  acked INTEGER NOT NULL DEFAULT 0, dead INTEGER NOT NULL DEFAULT 0, next_version INTEGER NOT NULL DEFAULT 1);
`;

interface OutboxRow {
  distinct_id: string;
  props: string;
  version: number;
  count: number;
  attempts: number;
  queued_at: number;
}

/** The embedded default. One transaction per call; prepared statements; WAL so a killed process loses nothing. */
export class SqliteAudienceStore implements AudienceStore {
  private readonly st;

  constructor(private readonly db: Database.Database) {
    db.exec(SCHEMA);
    this.st = {
      getUser: db.prepare<[string, string], { data: string }>('SELECT data FROM aud_users WHERE scope = ? AND user_key = ?'),
      putUser: db.prepare('INSERT OR REPLACE INTO aud_users (scope, user_key, data) VALUES (?, ?, ?)'),
      delUser: db.prepare('DELETE FROM aud_users WHERE scope = ? AND user_key = ?'),
      addMember: db.prepare('INSERT OR IGNORE INTO aud_members (scope, audience_id, user_key) VALUES (?, ?, ?)'),
      delMember: db.prepare('DELETE FROM aud_members WHERE scope = ? AND audience_id = ? AND user_key = ?'),
      members: db.prepare<[string, string, string, number], { user_key: string }>(
        'SELECT user_key FROM aud_members WHERE scope = ? AND audience_id = ? AND user_key > ? ORDER BY user_key LIMIT ?'),
      counters: db.prepare<[string], { accepted: number; acked: number; dead: number; next_version: number }>(
        'SELECT accepted, acked, dead, next_version FROM aud_counters WHERE scope = ?'),
      initCounters: db.prepare('INSERT OR IGNORE INTO aud_counters (scope) VALUES (?)'),
      bumpAccepted: db.prepare('UPDATE aud_counters SET accepted = accepted + ?, next_version = ? WHERE scope = ?'),
      bumpAcked: db.prepare('UPDATE aud_counters SET acked = acked + ? WHERE scope = ?'),
      bumpDead: db.prepare('UPDATE aud_counters SET dead = dead + ? WHERE scope = ?'),
      // json_patch merges the new property values over the pending ones: last write wins, per property.
      upsertOutbox: db.prepare(`INSERT INTO aud_outbox (scope, distinct_id, props, version, count, attempts, queued_at, due_at)
        VALUES (?, ?, ?, ?, 1, 0, ?, ?)
        ON CONFLICT (scope, distinct_id) DO UPDATE SET props = json_patch(props, excluded.props),
          version = excluded.version, count = count + 1`),
      due: db.prepare<[string, number, number], OutboxRow & { rid: number }>(`SELECT rowid AS rid, distinct_id, props, version, count, attempts, queued_at
        FROM aud_outbox WHERE scope = ? AND due_at <= ? ORDER BY due_at LIMIT ?`),
      // One statement leases the whole claimed batch (rowids as a JSON array) instead of one UPDATE per profile.
      leaseMany: db.prepare('UPDATE aud_outbox SET due_at = ?, leased = 1 WHERE rowid IN (SELECT value FROM json_each(?))'),
      recover: db.prepare('UPDATE aud_outbox SET due_at = ?, leased = 0 WHERE scope = ? AND leased = 1'),
      getVersion: db.prepare<[string, string], { version: number }>('SELECT version FROM aud_outbox WHERE scope = ? AND distinct_id = ?'),
      delOutbox: db.prepare('DELETE FROM aud_outbox WHERE scope = ? AND distinct_id = ?'),
      // The common ack: the sent version is still the latest, so the row goes (one statement instead of read + delete).
      delIfVersion: db.prepare('DELETE FROM aud_outbox WHERE scope = ? AND distinct_id = ? AND version = ?'),
      keepNewer: db.prepare(`UPDATE aud_outbox SET count = count - ?, attempts = 0, queued_at = ?, due_at = ?, leased = 0
        WHERE scope = ? AND distinct_id = ?`),
      retry: db.prepare('UPDATE aud_outbox SET attempts = attempts + 1, due_at = ?, leased = 0 WHERE scope = ? AND distinct_id = ?'),
      addDead: db.prepare('INSERT INTO aud_dead (scope, distinct_id, props, reason, at) VALUES (?, ?, ?, ?, ?)'),
      nextDue: db.prepare<[string], { d: number | null }>('SELECT MIN(due_at) AS d FROM aud_outbox WHERE scope = ?'),
      pending: db.prepare<[string], { pending: number | null; profiles: number }>(
        'SELECT SUM(count) AS pending, COUNT(*) AS profiles FROM aud_outbox WHERE scope = ?'),
      deadList: db.prepare<[string, number], { distinct_id: string; props: string; reason: string; at: number }>(
        'SELECT distinct_id, props, reason, at FROM aud_dead WHERE scope = ? ORDER BY id DESC LIMIT ?'),
    };
  }

  async updateMemberships(scope: string, userKeys: string[], compute: MembershipCompute, now: number): Promise<QueuedVersion[]> {
    const st = this.st;
    return this.db.transaction(() => {
      const current = new Map<string, UserMembership>();
      for (const key of userKeys) {
        const row = st.getUser.get(scope, key);
        if (row) current.set(key, JSON.parse(row.data) as UserMembership);
      }
      const before = new Map(current);
      const writes = compute(current);
      st.initCounters.run(scope);
      let version = st.counters.get(scope)!.next_version;
      const versions: QueuedVersion[] = [];
      for (const w of writes) {
        const oldIds = new Set((before.get(w.userKey)?.audiences ?? []).map((a) => a.id));
        const newIds = new Set(w.membership.audiences.map((a) => a.id));
        for (const id of oldIds) if (!newIds.has(id)) st.delMember.run(scope, id, w.userKey);
        for (const id of newIds) if (!oldIds.has(id)) st.addMember.run(scope, id, w.userKey);
        before.set(w.userKey, w.membership);
        if (w.membership.audiences.length === 0 && w.membership.targets.length === 0) st.delUser.run(scope, w.userKey);
        else st.putUser.run(scope, w.userKey, JSON.stringify(w.membership));
        for (const set of w.profileSets) {
          st.upsertOutbox.run(scope, set.distinctId, JSON.stringify(set.props), version, now, now);
          versions.push({ distinctId: set.distinctId, version });
          version += 1;
        }
      }
      st.bumpAccepted.run(versions.length, version, scope);
      return versions;
    }).immediate();
  }

  async membersOfAudience(scope: string, audienceId: string, afterKey: string | undefined, limit: number): Promise<string[]> {
    return this.st.members.all(scope, audienceId, afterKey ?? '', limit).map((r) => r.user_key);
  }

  async claimDue(scope: string, limit: number, now: number, leaseMs: number): Promise<OutboxItem[]> {
    const st = this.st;
    return this.db.transaction(() => {
      const rows = st.due.all(scope, now, limit);
      if (rows.length) st.leaseMany.run(now + leaseMs, JSON.stringify(rows.map((r) => r.rid)));
      return rows.map((r) => ({
        distinctId: r.distinct_id, props: JSON.parse(r.props) as ProfileProps, version: r.version, count: r.count,
        attempts: r.attempts, queuedAt: r.queued_at,
      }));
    }).immediate();
  }

  async ack(scope: string, items: OutboxItem[], now: number): Promise<void> {
    const st = this.st;
    this.db.transaction(() => {
      let acked = 0;
      for (const item of items) {
        // Sent version still the latest: delete it. Otherwise a newer change arrived meanwhile: keep it, due now.
        // A row that is gone altogether (acknowledged twice) counts for nothing.
        if (st.delIfVersion.run(scope, item.distinctId, item.version).changes > 0
          || st.keepNewer.run(item.count, now, now, scope, item.distinctId).changes > 0) acked += item.count;
      }
      st.bumpAcked.run(acked, scope);
    }).immediate();
  }

  async retryLater(scope: string, items: OutboxItem[], dueAt: number): Promise<void> {
    const st = this.st;
    this.db.transaction(() => {
      for (const item of items) st.retry.run(dueAt, scope, item.distinctId);
    }).immediate();
  }

  async bury(scope: string, dead: DeadItem[], now: number): Promise<void> {
    const st = this.st;
    this.db.transaction(() => {
      let count = 0;
      for (const { item, reason } of dead) {
        const row = st.getVersion.get(scope, item.distinctId);
        if (!row) continue;
        count += item.count;
        st.addDead.run(scope, item.distinctId, JSON.stringify(item.props), reason, now);
        if (row.version === item.version) st.delOutbox.run(scope, item.distinctId);
        else st.keepNewer.run(item.count, now, now, scope, item.distinctId);
      }
      st.bumpDead.run(count, scope);
    }).immediate();
  }

  async recoverLeases(scope: string, now: number): Promise<void> {
    this.st.recover.run(now, scope);
  }

  async nextDueAt(scope: string): Promise<number | undefined> {
    return this.st.nextDue.get(scope)?.d ?? undefined;
  }

  async stats(scope: string): Promise<OutboxStats> {
    const c = this.st.counters.get(scope);
    const p = this.st.pending.get(scope);
    return {
      accepted: c?.accepted ?? 0, acked: c?.acked ?? 0, dead: c?.dead ?? 0,
      pending: p?.pending ?? 0, profiles: p?.profiles ?? 0,
    };
  }

  async deadLetters(scope: string, limit: number) {
    return this.st.deadList.all(scope, limit).map((r) => ({
      distinctId: r.distinct_id, props: JSON.parse(r.props) as ProfileProps, reason: r.reason, at: r.at,
    }));
  }
}
