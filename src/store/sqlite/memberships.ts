import type Database from 'better-sqlite3';
import type { AudienceRef, UserMembership } from '../audience-store';
import { LogFold, type LogFoldOptions } from './log-fold';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS aud_scopes (id INTEGER PRIMARY KEY, scope TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS aud_audiences (ref INTEGER PRIMARY KEY, scope_id INTEGER NOT NULL, audience_id TEXT NOT NULL,
  name TEXT NOT NULL, UNIQUE (scope_id, audience_id, name));
CREATE TABLE IF NOT EXISTS aud_members (scope_id INTEGER NOT NULL, user_key TEXT NOT NULL, data TEXT NOT NULL,
  PRIMARY KEY (scope_id, user_key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS aud_members_log (seq INTEGER PRIMARY KEY, scope_id INTEGER NOT NULL, user_key TEXT NOT NULL,
  data TEXT);
`;

/** Keys folded per user written (LogFoldOptions.foldPerWrite); see the constructor. */
const AUDIENCE_FOLD_PER_WRITE = 6;

/**
 * Each user's audience set, for the SQLite store, laid out for random user IDs: a change is appended to
 * `aud_members_log` and kept in memory, and folded into `aud_members` in key order later (LogFold, log-fold.ts). With
 * scattered MPIDs, writing each user's row in place cost a page write per update and set the speed of the whole node
 * (12–16k updates/s at 500k users, falling as the table grew).
 *
 * Rows are compact, which is what makes a fold touch few pages: the scope and each (audience ID, name) pair are small
 * integers (`aud_scopes`, `aud_audiences`), so a row is `[[refs], [targets]]` (~35 bytes, was ~180). The pair keeps the
 * name per user as before: a user who joined "X" is taken out of "X", even after the audience was renamed.
 *
 * All methods except `transaction` and `membersOf` run inside `transaction`, which undoes the in-memory side when the
 * SQLite transaction rolls back.
 */
export class MembershipTable {
  private readonly st;
  private readonly scopeIds = new Map<string, number>();
  private readonly refs = new Map<number, AudienceRef & { scopeId: number }>();
  private readonly refOfPair = new Map<string, number>();
  /** Users' states not folded into aud_members yet (scope ID → user key → `[[refs], [targets]]` or null). */
  private readonly log: LogFold<number>;

  constructor(private readonly db: Database.Database, opts: LogFoldOptions = {}) {
    db.exec(SCHEMA);
    this.st = {
      addScope: db.prepare('INSERT INTO aud_scopes (scope) VALUES (?)'),
      addRef: db.prepare('INSERT INTO aud_audiences (scope_id, audience_id, name) VALUES (?, ?, ?)'),
      get: db.prepare<[number, string], [string, string]>(
        'SELECT user_key, data FROM aud_members WHERE scope_id = ? AND user_key IN (SELECT value FROM json_each(?))').raw(),
      log: db.prepare('INSERT INTO aud_members_log (scope_id, user_key, data) VALUES (?, ?, ?)'),
      lastSeq: db.prepare<[], number | null>('SELECT max(seq) FROM aud_members_log').pluck(),
      dropLog: db.prepare('DELETE FROM aud_members_log WHERE seq <= ?'),
      put: db.prepare('INSERT OR REPLACE INTO aud_members (scope_id, user_key, data) VALUES (?, ?, ?)'),
      del: db.prepare('DELETE FROM aud_members WHERE scope_id = ? AND user_key = ?'),
      scan: db.prepare<[number, string, number], [string, string]>(
        'SELECT user_key, data FROM aud_members WHERE scope_id = ? AND user_key > ? ORDER BY user_key LIMIT ?').raw(),
    };
    const st = this.st;
    // Rounds folded at 6 keys per write instead of 2: a round's users leave memory three times sooner, for the same
    // fold work. Memory is what limits a backlog (1M updates queued while Mixpanel is down): V8 lets the heap grow
    // to up to 4 times what is alive after a major collection, so every MB kept alive here cost up to 4 MB of peak
    // RSS. The 1M-update burst peaked at 274–314 MB against 312–327 with 2, at the same speed (the top of that range
    // is a fast stretch of the benchmark machine, where V8 still grows the heap its most: README, Benchmarks).
    this.log = new LogFold<number>(db, {
      log: (scopeId, key, data) => st.log.run(scopeId, key, data),
      put: (scopeId, key, data) => st.put.run(scopeId, key, data),
      del: (scopeId, key) => st.del.run(scopeId, key),
      lastSeq: () => st.lastSeq.get() ?? 0,
      dropLog: (upTo) => st.dropLog.run(upTo),
    }, { ...opts, foldPerWrite: opts.foldPerWrite ?? AUDIENCE_FOLD_PER_WRITE });
    this.loadNames();
    this.migrateOldRows();
    // The log is what was not folded before the last stop: back into memory, in order, the latest row winning.
    for (const [scopeId, key, data] of db.prepare<[], [number, string, string | null]>(
      'SELECT scope_id, user_key, data FROM aud_members_log ORDER BY seq').raw().iterate()) {
      this.log.replay(scopeId, key, data);
    }
  }

  /**
   * Runs `fn` in one IMMEDIATE transaction; if it throws, the in-memory side is put back as it was, and then
   * `onRollback` runs (the caller's own memory).
   */
  transaction<T>(fn: () => T, onRollback?: () => void): T {
    return this.log.transaction(fn, () => {
      this.loadNames(); // IDs handed out in a rolled-back transaction do not exist
      onRollback?.();
    });
  }

  /** The stored membership of each key that has one. */
  read(scope: string, keys: string[]): Map<string, UserMembership> {
    const out = new Map<string, UserMembership>();
    const scopeId = this.scopeIds.get(scope);
    if (scopeId === undefined) return out;
    const rest: string[] = [];
    for (const key of keys) {
      const r = this.log.get(scopeId, key);
      if (r === undefined) rest.push(key);
      else if (r !== null) out.set(key, this.decode(r));
    }
    if (rest.length) for (const [key, data] of this.st.get.all(scopeId, JSON.stringify(rest))) out.set(key, this.decode(data));
    return out;
  }

  /** Stores a user's membership; null forgets the user. */
  write(scope: string, key: string, membership: UserMembership | null): void {
    const scopeId = this.scopeId(scope);
    const data = membership ? this.encode(scopeId, membership) : null;
    this.log.write(scopeId, key, data);
  }

  /** Folds up to `budget` waiting users into aud_members (LogFold.fold). */
  fold(budget: number): void {
    this.log.fold(budget);
  }

  /** Folds in proportion to `writes` users just written (LogFold.step). */
  step(writes: number): void {
    this.log.step(writes);
  }

  /** Keys of the scope's users in an audience, sorted, after `afterKey`, at most `limit` (folds everything first). */
  membersOf(scope: string, audienceId: string, afterKey: string | undefined, limit: number): string[] {
    const scopeId = this.scopeIds.get(scope);
    if (scopeId === undefined) return [];
    // Rare (an audience subscription removed), so the simple way: everything into aud_members, then one ordered scan.
    this.log.foldAll();
    const wanted = new Set<number>();
    for (const [ref, a] of this.refs) if (a.scopeId === scopeId && a.id === audienceId) wanted.add(ref);
    const keys: string[] = [];
    let after = afterKey ?? '';
    while (keys.length < limit && wanted.size) {
      const rows = this.st.scan.all(scopeId, after, 1000);
      for (const [key, data] of rows) {
        if (keys.length < limit && (JSON.parse(data) as [number[], string[]])[0].some((ref) => wanted.has(ref))) keys.push(key);
      }
      if (rows.length < 1000) break;
      after = rows[rows.length - 1][0];
    }
    return keys;
  }

  /** Folds every waiting user into aud_members (at close). */
  foldAll(): void {
    this.log.foldAll();
  }

  /** Users waiting in memory for a fold (for tests). */
  get waiting(): number {
    return this.log.waiting;
  }

  private scopeId(scope: string): number {
    let id = this.scopeIds.get(scope);
    if (id === undefined) {
      id = Number(this.st.addScope.run(scope).lastInsertRowid);
      this.scopeIds.set(scope, id);
    }
    return id;
  }

  private refOf(scopeId: number, a: AudienceRef): number {
    const pair = `${scopeId}\u0000${a.id}\u0000${a.name}`;
    let ref = this.refOfPair.get(pair);
    if (ref === undefined) {
      ref = Number(this.st.addRef.run(scopeId, a.id, a.name).lastInsertRowid);
      this.refOfPair.set(pair, ref);
      this.refs.set(ref, { scopeId, id: a.id, name: a.name });
    }
    return ref;
  }

  private encode(scopeId: number, m: UserMembership): string {
    return JSON.stringify([m.audiences.map((a) => this.refOf(scopeId, a)), m.targets]);
  }

  private decode(data: string): UserMembership {
    const [refs, targets] = JSON.parse(data) as [number[], string[]];
    const audiences: AudienceRef[] = [];
    for (const ref of refs) {
      const a = this.refs.get(ref);
      if (a) audiences.push({ id: a.id, name: a.name });
    }
    return { audiences, targets };
  }

  private loadNames(): void {
    this.scopeIds.clear();
    this.refs.clear();
    this.refOfPair.clear();
    for (const [id, scope] of this.db.prepare<[], [number, string]>('SELECT id, scope FROM aud_scopes').raw().iterate()) {
      this.scopeIds.set(scope, id);
    }
    for (const [ref, scopeId, id, name] of this.db.prepare<[], [number, number, string, string]>(
      'SELECT ref, scope_id, audience_id, name FROM aud_audiences').raw().iterate()) {
      this.refs.set(ref, { scopeId, id, name });
      this.refOfPair.set(`${scopeId}\u0000${id}\u0000${name}`, ref);
    }
  }

  /**
   * Files from before this layout kept `aud_users (scope, user_key, data JSON with names)`: their rows move here at
   * open, in key order and in slices (a stop halfway resumes where it was), and the old table goes.
   */
  private migrateOldRows(): void {
    const old = this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'aud_users'").get();
    if (!old) return;
    const next = this.db.prepare<[], [string, string, string]>(
      'SELECT scope, user_key, data FROM aud_users ORDER BY scope, user_key LIMIT 5000').raw();
    const delOld = this.db.prepare('DELETE FROM aud_users WHERE scope = ? AND user_key = ?');
    for (;;) {
      const rows = next.all();
      if (rows.length === 0) break;
      this.transaction(() => {
        for (const [scope, key, data] of rows) {
          let m: UserMembership | undefined;
          try {
            m = JSON.parse(data) as UserMembership;
          } catch { /* a row that is not JSON held nothing usable: dropped */ }
          if (m && Array.isArray(m.audiences) && Array.isArray(m.targets)) {
            const scopeId = this.scopeId(scope);
            this.st.put.run(scopeId, key, this.encode(scopeId, m));
          }
          delOld.run(scope, key);
        }
      });
    }
    this.db.exec('DROP TABLE aud_users');
  }
}
