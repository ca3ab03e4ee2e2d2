import type Database from 'better-sqlite3';
import type { AudienceRef, UserMembership } from '../audience-store';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS aud_scopes (id INTEGER PRIMARY KEY, scope TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS aud_audiences (ref INTEGER PRIMARY KEY, scope_id INTEGER NOT NULL, audience_id TEXT NOT NULL,
  name TEXT NOT NULL, UNIQUE (scope_id, audience_id, name));
CREATE TABLE IF NOT EXISTS aud_members (scope_id INTEGER NOT NULL, user_key TEXT NOT NULL, data TEXT NOT NULL,
  PRIMARY KEY (scope_id, user_key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS aud_members_log (seq INTEGER PRIMARY KEY, scope_id INTEGER NOT NULL, user_key TEXT NOT NULL,
  data TEXT);
`;

export interface MembershipTableOptions {
  /** Unfolded users kept in memory before a fold round starts (each costs ~230 bytes of heap). */
  foldAt?: number;
}

/** A user's stored text (`[[refs], [targets]]`), or null once the user is forgotten. */
type Stored = string | null;

/** scope ID → user key → state. */
type Users = Map<number, Map<string, Stored>>;

/**
 * A fold in progress: the users that were waiting when it began (`folding`, which no write touches again: newer
 * states go to `recent`), their keys in order scope by scope, how far it got, and the last log row it covers (when it
 * ends, those rows are all in aud_members and go).
 */
interface FoldRound {
  parts: Array<{ scopeId: number; keys: string[] }>;
  part: number;
  at: number;
  lastSeq: number;
}

/**
 * Each user's audience set, for the SQLite store, laid out for random user IDs.
 *
 * Real MPIDs and customer IDs arrive in no order, so writing each user's row in place dirties a B-tree page of its own
 * per update: that page went to the WAL and back to the file once per update, and set the speed of the whole node
 * (12–16k updates/s at 500k users, falling as the table grew). Instead, like a log-structured merge:
 * - a change is appended to `aud_members_log` (rows in arrival order share pages) and kept in memory (`recent`), which
 *   reads look at first;
 * - once `foldAt` users are waiting, they become the round's `folding` generation and `recent` starts empty; the round
 *   writes them into `aud_members` in key order, a slice with each write transaction, so neighbouring users share a
 *   page write; when it ends, its log rows go and so does the whole generation (one object dropped, instead of 50,000
 *   deletions shrinking a Map step by step: ~4 % of all the node promoted to V8's old space, in a sampling profile).
 * The log is the durable copy: a restart reads it back into memory, so nothing depends on the memory surviving.
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
  private readonly foldAt: number;
  private readonly scopeIds = new Map<string, number>();
  private readonly refs = new Map<number, AudienceRef & { scopeId: number }>();
  private readonly refOfPair = new Map<string, number>();
  /** Latest states written since the current round began (plain strings; measured ~230 bytes of heap a user). */
  private recent: Users = new Map();
  private recentCount = 0;
  /** The states the round in progress is folding (read after `recent`, before aud_members). */
  private folding: Users | undefined;
  private foldingCount = 0;
  private round: FoldRound | undefined;
  /** How to put the in-memory side back if the transaction in progress rolls back (newest last). */
  private undo: Array<() => void> = [];

  constructor(private readonly db: Database.Database, opts: MembershipTableOptions = {}) {
    this.foldAt = opts.foldAt ?? 50_000;
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
    this.loadNames();
    this.migrateOldRows();
    // The log is what was not folded before the last stop: back into memory, in order, the latest row winning.
    for (const [scopeId, key, data] of db.prepare<[], [number, string, string | null]>(
      'SELECT scope_id, user_key, data FROM aud_members_log ORDER BY seq').raw().iterate()) {
      this.setRecent(scopeId, key, data, false);
    }
  }

  /** Runs `fn` in one IMMEDIATE transaction; if it throws, the in-memory side is put back as it was. */
  transaction<T>(fn: () => T): T {
    this.undo = [];
    try {
      return this.db.transaction(fn).immediate();
    } catch (err) {
      const undo = this.undo;
      this.undo = [];
      for (const u of undo.reverse()) u();
      this.loadNames(); // IDs handed out in the rolled-back transaction do not exist
      throw err;
    } finally {
      this.undo = [];
    }
  }

  /** The stored membership of each key that has one. */
  read(scope: string, keys: string[]): Map<string, UserMembership> {
    const out = new Map<string, UserMembership>();
    const scopeId = this.scopeIds.get(scope);
    if (scopeId === undefined) return out;
    const recent = this.recent.get(scopeId);
    const folding = this.folding?.get(scopeId);
    const rest: string[] = [];
    for (const key of keys) {
      let r = recent?.get(key);
      if (r === undefined) r = folding?.get(key); // not `??`: null (forgotten since) must win over the older state
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
    this.st.log.run(scopeId, key, data);
    this.setRecent(scopeId, key, data, true);
  }

  /**
   * Folds up to `budget` waiting users into aud_members, starting a round once `foldAt` are waiting (or, with
   * `everything`, whatever is waiting). Called by every write transaction with a budget in proportion to its writes,
   * so folding keeps pace with writing and no single call pays for a whole round.
   */
  fold(budget: number, everything = false): void {
    if (!this.round) {
      if (this.recentCount === 0 || (!everything && this.recentCount < this.foldAt)) return;
      const parts = [...this.recent].map(([scopeId, users]) => ({ scopeId, keys: [...users.keys()].sort() }));
      this.round = { parts, part: 0, at: 0, lastSeq: this.st.lastSeq.get() ?? 0 };
      this.folding = this.recent;
      this.foldingCount = this.recentCount;
      this.recent = new Map();
      this.recentCount = 0;
      const snapshot = this.folding;
      this.undo.push(() => {
        // Writes later in this transaction went to the new `recent` and were undone before this runs.
        this.recent = snapshot;
        this.recentCount = this.foldingCount;
        this.folding = undefined;
        this.foldingCount = 0;
        this.round = undefined;
      });
    }
    const round = this.round;
    const folding = this.folding!;
    const { part: fromPart, at: fromAt } = round;
    for (let left = budget; left > 0 && round.part < round.parts.length;) {
      const { scopeId, keys } = round.parts[round.part];
      const users = folding.get(scopeId)!;
      const end = Math.min(keys.length, round.at + left);
      for (let i = round.at; i < end; i++) {
        const data = users.get(keys[i])!;
        if (data === null) this.st.del.run(scopeId, keys[i]);
        else this.st.put.run(scopeId, keys[i], data);
      }
      left -= end - round.at;
      if (end < keys.length) round.at = end;
      else {
        round.part += 1;
        round.at = 0;
      }
    }
    this.undo.push(() => {
      round.part = fromPart;
      round.at = fromAt;
    });
    if (round.part < round.parts.length) return;
    // Round done: every state it held is in aud_members, and every log row up to lastSeq is one of those states (later
    // rows belong to `recent`), so the rows and the generation go.
    this.st.dropLog.run(round.lastSeq);
    const foldingCount = this.foldingCount;
    this.folding = undefined;
    this.foldingCount = 0;
    this.round = undefined;
    this.undo.push(() => {
      this.folding = folding;
      this.foldingCount = foldingCount;
      this.round = round;
    });
  }

  /** Keys of the scope's users in an audience, sorted, after `afterKey`, at most `limit` (folds everything first). */
  membersOf(scope: string, audienceId: string, afterKey: string | undefined, limit: number): string[] {
    const scopeId = this.scopeIds.get(scope);
    if (scopeId === undefined) return [];
    // Rare (an audience subscription removed), so the simple way: everything into aud_members, then one ordered scan.
    // Synchronous on purpose (about a second for a full round): with writes in between it could chase them forever.
    while (this.recentCount > 0 || this.round) this.transaction(() => this.fold(20_000, true));
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

  /** Users waiting in memory for a fold (for tests). */
  get waiting(): number {
    return this.recentCount + this.foldingCount;
  }

  private setRecent(scopeId: number, key: string, data: Stored, journal: boolean): void {
    let users = this.recent.get(scopeId);
    if (!users) this.recent.set(scopeId, (users = new Map()));
    const before = users.get(key);
    users.set(key, data);
    if (before === undefined) this.recentCount += 1;
    if (!journal) return;
    this.undo.push(() => {
      if (before !== undefined) users.set(key, before);
      else if (users.delete(key)) this.recentCount -= 1;
    });
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
