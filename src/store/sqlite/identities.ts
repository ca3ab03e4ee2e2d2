import type Database from 'better-sqlite3';
import { planLearn, type IdentityView } from '../../identity/plan';
import { orderedEntries } from '../../identity/values';
import type { IdentityMap, IdentityMatch, IdentityProfile, ProfileRecord } from '../../identity/types';
import type { IdentityStore } from '../identity-store';

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
`;

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

/**
 * Links (`name:value` → profile key) and profiles (JSON) in two tables, plus `id_public` (above) for resolve; each
 * call is one transaction.
 */
export class SqliteIdentityStore implements IdentityStore {
  private readonly st;
  private readonly view: IdentityView;

  constructor(private readonly db: Database.Database) {
    openIdentityTables(db);
    this.st = {
      link: db.prepare<[string], { pkey: string }>('SELECT pkey FROM id_links WHERE link = ?'),
      profile: db.prepare<[string], { data: string }>('SELECT data FROM id_profiles WHERE pkey = ?'),
      putLink: db.prepare('INSERT OR REPLACE INTO id_links (link, pkey) VALUES (?, ?)'),
      delLink: db.prepare('DELETE FROM id_links WHERE link = ?'),
      putProfile: db.prepare('INSERT OR REPLACE INTO id_profiles (pkey, data) VALUES (?, ?)'),
      delProfile: db.prepare('DELETE FROM id_profiles WHERE pkey = ?'),
      count: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM id_profiles'),
      // The hot path of resolve: many link ids (a JSON array) → [index in the array, profile key, mpid, identities
      // JSON] of those that are linked, in one statement; the JSON array is the outer loop (CROSS JOIN), each link and
      // public row one primary-key search. Against one joined statement per identity reading the whole profile JSON:
      // no per-statement overhead per lookup, and no parse of the links history.
      resolveMany: db.prepare<[string], [number, string, string | null, string]>(
        `SELECT j.key, l.pkey, p.mpid, p.identities FROM json_each(?) AS j
           CROSS JOIN id_links AS l ON l.link = j.value
           CROSS JOIN id_public AS p ON p.pkey = l.pkey`,
      ).raw(),
    };
    const st = this.st;
    this.view = {
      link: (id) => st.link.get(id)?.pkey,
      profile: (key) => {
        const row = st.profile.get(key);
        return row ? (JSON.parse(row.data) as ProfileRecord) : undefined;
      },
    };
  }

  async learn(observations: IdentityMap[], now: number): Promise<Array<IdentityProfile | undefined>> {
    const st = this.st;
    return this.db.transaction(() => {
      const { changes, profiles } = planLearn(this.view, observations, now);
      for (const [id, key] of changes.links) {
        if (key === null) st.delLink.run(id);
        else st.putLink.run(id, key);
      }
      for (const [key, p] of changes.profiles) {
        if (p === null) st.delProfile.run(key);
        else st.putProfile.run(key, JSON.stringify(p));
      }
      return profiles;
    }).immediate();
  }

  /**
   * Same rule as resolveWith (plan.ts): the lookup's identities in priority order, the first one linked to a profile
   * wins. All link ids of the array are looked up first, a chunk per statement, inside one read transaction (the whole
   * array sees one snapshot); each match parses only the profile's public part, into an object of its own.
   */
  async resolve(lookups: IdentityMap[]): Promise<Array<IdentityMatch | undefined>> {
    const perLookup = lookups.map(orderedEntries);
    const ids: string[] = [];
    const slot = new Map<string, number>();
    // Per lookup, the position in `ids` of each of its identities (priority order).
    const at = perLookup.map((entries) => entries.map((e) => {
      let i = slot.get(e[2]);
      if (i === undefined) {
        slot.set(e[2], (i = ids.length));
        ids.push(e[2]);
      }
      return i;
    }));
    // The row of each id in `ids` that is linked: [index, profile key, mpid, identities JSON].
    const rows: Array<[number, string, string | null, string] | undefined> = new Array(ids.length);
    const { resolveMany } = this.st;
    this.db.transaction(() => {
      for (let from = 0; from < ids.length; from += RESOLVE_CHUNK) {
        for (const row of resolveMany.all(JSON.stringify(ids.slice(from, from + RESOLVE_CHUNK)))) rows[from + row[0]] = row;
      }
    })();
    return perLookup.map((entries, k): IdentityMatch | undefined => {
      const where = at[k];
      for (let e = 0; e < entries.length; e++) {
        const row = rows[where[e]];
        if (row === undefined) continue;
        const profile: IdentityProfile = { key: row[1], identities: JSON.parse(row[3]) as IdentityMap };
        if (row[2] !== null) profile.mpid = row[2];
        return { profile, matchedBy: entries[e][0] };
      }
      return undefined;
    });
  }

  async profileCount(): Promise<number> {
    return this.st.count.get()!.n;
  }
}
