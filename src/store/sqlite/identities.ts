import type Database from 'better-sqlite3';
import { planLearn, type IdentityView } from '../../identity/plan';
import { orderedEntries } from '../../identity/values';
import type { IdentityMap, IdentityMatch, IdentityProfile, ProfileRecord } from '../../identity/types';
import type { IdentityStore } from '../identity-store';
import { LogFold, type LogFoldOptions } from './log-fold';
import type { SqliteReadWorker } from './read-worker';

/**
 * `id_public` is derived from `id_profiles`: the part of each profile that resolve returns (MPID and the current
 * identities), without the links history, createdAt and updatedAt. Triggers keep it in step with every write to
 * `id_profiles`, whatever writes it (an older version of this package too), so it can never go stale; a file from
 * before the table existed gets it filled once at open (`openIdentityTables`).
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS id_links (link TEXT PRIMARY KEY, pkey TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS id_profiles (pkey TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS id_public (pkey TEXT PRIMARY KEY, mpid TEXT, identities TEXT NOT NULL) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS id_public_put AFTER INSERT ON id_profiles BEGIN
  INSERT OR REPLACE INTO id_public (pkey, mpid, identities)
  VALUES (new.pkey, json_extract(new.data, '$.mpid'), coalesce(json_extract(new.data, '$.identities'), '{}'));
END;
CREATE TRIGGER IF NOT EXISTS id_public_update AFTER UPDATE ON id_profiles BEGIN
  DELETE FROM id_public WHERE pkey = old.pkey;
  INSERT OR REPLACE INTO id_public (pkey, mpid, identities)
  VALUES (new.pkey, json_extract(new.data, '$.mpid'), coalesce(json_extract(new.data, '$.identities'), '{}'));
END;
CREATE TRIGGER IF NOT EXISTS id_public_del AFTER DELETE ON id_profiles BEGIN
  DELETE FROM id_public WHERE pkey = old.pkey;
END;
-- Changes to id_links ('link': data = profile key) and id_profiles ('profile': data = JSON) not folded into them yet
-- (LogFold); NULL: deleted.
CREATE TABLE IF NOT EXISTS id_log (seq INTEGER PRIMARY KEY, part TEXT NOT NULL, key TEXT NOT NULL, data TEXT);
`;

type Part = 'link' | 'profile';

/** What resolve needs of a linked profile: its key, MPID and current identities (JSON from id_public, or parsed). */
type PublicRow = [key: string, mpid: string | null, identities: string | IdentityMap];

/** Creates the identity tables; fills `id_public` when the file was made before it existed. One transaction. */
function openIdentityTables(db: Database.Database): void {
  db.transaction(() => {
    const existed = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'id_public'").get() !== undefined;
    db.exec(SCHEMA);
    if (!existed) {
      db.exec(`INSERT OR REPLACE INTO id_public (pkey, mpid, identities)
        SELECT pkey, json_extract(data, '$.mpid'), coalesce(json_extract(data, '$.identities'), '{}') FROM id_profiles
        WHERE json_valid(data)`);
    }
  }).immediate();
}

/** Link ids per resolve statement (one JSON array bound to one `json_each`). */
const RESOLVE_CHUNK = 2000;

export interface IdentityReadOptions {
  /**
   * Link ids in one resolve from which it reads on the worker (default 200; fewer cost less than the round trip).
   * Tests use 1 so that every resolve does.
   */
  readWorkerFrom?: number;
}

/**
 * The hot path of resolve: many link ids (a JSON array) → [index in the array, profile key, mpid, identities JSON] of
 * those that are linked, in one statement; the JSON array is the outer loop (CROSS JOIN), each link and public row
 * one primary-key search. Against one joined statement per identity reading the whole profile JSON: no per-statement
 * overhead per lookup, and no parse of the links history.
 */
const RESOLVE_MANY = `SELECT j.key, l.pkey, p.mpid, p.identities FROM json_each(?) AS j
  CROSS JOIN id_links AS l ON l.link = j.value
  CROSS JOIN id_public AS p ON p.pkey = l.pkey`;

type ResolveRow = [index: number, key: string, mpid: string | null, identities: string];

/** The statements the read worker runs (SqliteReadWorker), by name. */
export const IDENTITY_READS = { resolveMany: RESOLVE_MANY };

/** A resolve's link ids: each once, and where each lookup's identities (priority order) are among them. */
interface ResolvePlan {
  perLookup: Array<ReturnType<typeof orderedEntries>>;
  ids: string[];
  at: number[][];
}

function planResolve(lookups: IdentityMap[]): ResolvePlan {
  const perLookup = lookups.map(orderedEntries);
  const ids: string[] = [];
  const slot = new Map<string, number>();
  const at = perLookup.map((entries) => entries.map((e) => {
    let i = slot.get(e[2]);
    if (i === undefined) {
      slot.set(e[2], (i = ids.length));
      ids.push(e[2]);
    }
    return i;
  }));
  return { perLookup, ids, at };
}

/** Each lookup's match: its first identity, in priority order, whose id has a row (`rows` is by position in `ids`). */
function matchesOf(plan: ResolvePlan, rows: Array<PublicRow | undefined>): Array<IdentityMatch | undefined> {
  return plan.perLookup.map((entries, k): IdentityMatch | undefined => {
    const where = plan.at[k];
    for (let e = 0; e < entries.length; e++) {
      const row = rows[where[e]];
      if (row === undefined) continue;
      const identities = typeof row[2] === 'string' ? JSON.parse(row[2]) as IdentityMap : { ...row[2] };
      const profile: IdentityProfile = { key: row[0], identities };
      if (row[1] !== null) profile.mpid = row[1];
      return { profile, matchedBy: entries[e][0] };
    }
    return undefined;
  });
}

/** The JSON arrays bound to RESOLVE_MANY for these ids, a chunk each. */
function resolveChunks(ids: string[]): string[] {
  const out: string[] = [];
  for (let from = 0; from < ids.length; from += RESOLVE_CHUNK) out.push(JSON.stringify(ids.slice(from, from + RESOLVE_CHUNK)));
  return out;
}

/**
 * Links (`name:value` → profile key) and profiles (JSON) in two tables, plus `id_public` (above) for resolve; each
 * write is one transaction.
 *
 * Links and profiles are laid out for random keys (LogFold, log-fold.ts), as the audience sets are: learn appends its
 * changes to `id_log` and keeps them in memory, and they are folded into the tables in key order later. Written in
 * place, a learnt profile with four identities dirtied about six random B-tree pages (four links, the profile, its
 * public part), which set the speed of learn with scattered MPIDs. Reads look at memory first.
 */
export class SqliteIdentityStore implements IdentityStore {
  private readonly st;
  private readonly view: IdentityView;
  /** Links and profiles not folded into their tables yet. */
  private readonly log: LogFold<Part>;

  private readonly readWorkerFrom: number;
  /** Resolves answered from the worker's rows (for tests). */
  answeredByWorker = 0;

  /**
   * @param reader statements on a worker thread (IDENTITY_READS), for big resolves; without it, or while it is not
   *   running, every read is on this connection.
   */
  constructor(private readonly db: Database.Database, opts: LogFoldOptions & IdentityReadOptions = {}, private readonly reader?: SqliteReadWorker) {
    this.readWorkerFrom = opts.readWorkerFrom ?? 200;
    openIdentityTables(db);
    this.st = {
      link: db.prepare<[string], { pkey: string }>('SELECT pkey FROM id_links WHERE link = ?'),
      profile: db.prepare<[string], { data: string }>('SELECT data FROM id_profiles WHERE pkey = ?'),
      putLink: db.prepare('INSERT OR REPLACE INTO id_links (link, pkey) VALUES (?, ?)'),
      delLink: db.prepare('DELETE FROM id_links WHERE link = ?'),
      putProfile: db.prepare('INSERT OR REPLACE INTO id_profiles (pkey, data) VALUES (?, ?)'),
      delProfile: db.prepare('DELETE FROM id_profiles WHERE pkey = ?'),
      count: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM id_profiles'),
      publicOf: db.prepare<[string], [string, string | null, string]>('SELECT pkey, mpid, identities FROM id_public WHERE pkey = ?').raw(),
      log: db.prepare('INSERT INTO id_log (part, key, data) VALUES (?, ?, ?)'),
      lastSeq: db.prepare<[], number | null>('SELECT max(seq) FROM id_log').pluck(),
      dropLog: db.prepare('DELETE FROM id_log WHERE seq <= ?'),
      resolveMany: db.prepare<[string], ResolveRow>(RESOLVE_MANY).raw(),
    };
    const st = this.st;
    const log = new LogFold<Part>(db, {
      log: (part, key, data) => st.log.run(part, key, data),
      put: (part, key, data) => (part === 'link' ? st.putLink.run(key, data) : st.putProfile.run(key, data)),
      del: (part, key) => (part === 'link' ? st.delLink.run(key) : st.delProfile.run(key)),
      lastSeq: () => st.lastSeq.get() ?? 0,
      dropLog: (upTo) => st.dropLog.run(upTo),
    }, opts);
    this.log = log;
    // The log is what was not folded before the last stop: back into memory, in order, the latest row winning.
    for (const [part, key, data] of db.prepare<[], [Part, string, string | null]>('SELECT part, key, data FROM id_log ORDER BY seq').raw().iterate()) {
      log.replay(part, key, data);
    }
    this.view = {
      link: (id) => {
        const m = log.get('link', id);
        return m === undefined ? st.link.get(id)?.pkey : m ?? undefined;
      },
      profile: (key) => {
        const m = log.get('profile', key);
        const data = m === undefined ? st.profile.get(key)?.data : m;
        return data ? (JSON.parse(data) as ProfileRecord) : undefined;
      },
    };
  }

  async learn(observations: IdentityMap[], now: number): Promise<Array<IdentityProfile | undefined>> {
    const log = this.log;
    return log.transaction(() => {
      const { changes, profiles } = planLearn(this.view, observations, now);
      for (const [id, key] of changes.links) log.write('link', id, key);
      for (const [key, p] of changes.profiles) log.write('profile', key, p === null ? null : JSON.stringify(p));
      log.step(changes.links.size + changes.profiles.size);
      return profiles;
    });
  }

  /**
   * Same rule as resolveWith (plan.ts): the lookup's identities in priority order, the first one linked to a profile
   * wins. All link ids of the array are looked up first: those in memory (not folded yet) there, the rest a chunk per
   * statement, all against one state of the store; each match parses only the profile's public part, into an object
   * of its own.
   *
   * A big array's statements run on the read worker, off the event loop. Its connection sees the file, not this
   * store's memory, so its rows are used only if no write transaction began while it read: then memory and tables
   * are still what they were when the ids were split between them, and the answer is the one a read here would have
   * given. Otherwise (or if the worker fails) the array is read again here.
   */
  async resolve(lookups: IdentityMap[]): Promise<Array<IdentityMatch | undefined>> {
    const plan = planResolve(lookups);
    if (this.reader && plan.ids.length >= this.readWorkerFrom && this.reader.available()) {
      const version = this.log.version;
      const split = this.splitByMemory(plan.ids);
      try {
        const chunks = await this.reader.all('resolveMany', resolveChunks(split.inTable)) as ResolveRow[][];
        if (this.log.version === version) {
          this.rowsFromTable(split, chunks);
          this.answeredByWorker += 1;
          return matchesOf(plan, split.rows);
        }
      } catch {
        // The worker failed or closed: read here.
      }
    }
    return matchesOf(plan, this.db.transaction(() => {
      const split = this.splitByMemory(plan.ids);
      this.rowsFromTable(split, resolveChunks(split.inTable).map((json) => this.st.resolveMany.all(json)));
      return split.rows;
    })());
  }

  /**
   * The rows of the ids whose link is in memory (with the profile's latest public part), and which ids only the
   * tables know. Reads id_public for a linked profile that was not changed since the last fold.
   */
  private splitByMemory(ids: string[]): { rows: Array<PublicRow | undefined>; inTable: string[]; inTableAt: number[] } {
    const rows: Array<PublicRow | undefined> = new Array(ids.length);
    const inTable: string[] = [];
    const inTableAt: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const key = this.log.get('link', ids[i]);
      if (key === undefined) {
        inTable.push(ids[i]);
        inTableAt.push(i);
      } else if (key !== null) rows[i] = this.latest(key, () => this.st.publicOf.get(key));
    }
    return { rows, inTable, inTableAt };
  }

  /** Fills in the rows of the ids only the tables know, from RESOLVE_MANY's rows (a list per chunk). */
  private rowsFromTable(split: { rows: Array<PublicRow | undefined>; inTableAt: number[] }, chunks: ResolveRow[][]): void {
    chunks.forEach((chunk, c) => {
      const from = c * RESOLVE_CHUNK;
      for (const row of chunk) split.rows[split.inTableAt[from + row[0]]] = this.latest(row[1], () => [row[1], row[2], row[3]]);
    });
  }

  /** A linked profile's public part: from memory if it changed since the last fold (id_public has the folded one). */
  private latest(key: string, folded: () => PublicRow | undefined): PublicRow | undefined {
    const m = this.log.get('profile', key);
    if (m === undefined) return folded();
    if (m === null) return undefined;
    const p = JSON.parse(m) as ProfileRecord;
    return [p.key, p.mpid ?? null, p.identities];
  }

  /** Starts the read worker if it is not running; true once it answers, false if it cannot run (for tests). */
  readerReady(): Promise<boolean> {
    return this.reader ? this.reader.whenReady() : Promise.resolve(false);
  }

  /** Folds the log into id_links and id_profiles (at close). */
  foldAll(): void {
    this.log.foldAll();
  }

  async profileCount(): Promise<number> {
    this.log.foldAll(); // rare (tests): the whole table, then a count
    return this.st.count.get()!.n;
  }
}
