import type Database from 'better-sqlite3';
import { planLearn, type IdentityView } from '../../identity/plan';
import { publicProfile } from '../../identity/types';
import { orderedEntries } from '../../identity/values';
import type { IdentityMap, IdentityMatch, IdentityProfile, ProfileRecord } from '../../identity/types';
import type { IdentityStore } from '../identity-store';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS id_links (link TEXT PRIMARY KEY, pkey TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS id_profiles (pkey TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;
`;

/** Links (`name:value` → profile key) and profiles (JSON) in two tables; each call is one transaction. */
export class SqliteIdentityStore implements IdentityStore {
  private readonly st;
  private readonly view: IdentityView;

  constructor(private readonly db: Database.Database) {
    db.exec(SCHEMA);
    this.st = {
      link: db.prepare<[string], { pkey: string }>('SELECT pkey FROM id_links WHERE link = ?'),
      profile: db.prepare<[string], { data: string }>('SELECT data FROM id_profiles WHERE pkey = ?'),
      putLink: db.prepare('INSERT OR REPLACE INTO id_links (link, pkey) VALUES (?, ?)'),
      delLink: db.prepare('DELETE FROM id_links WHERE link = ?'),
      putProfile: db.prepare('INSERT OR REPLACE INTO id_profiles (pkey, data) VALUES (?, ?)'),
      delProfile: db.prepare('DELETE FROM id_profiles WHERE pkey = ?'),
      count: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM id_profiles'),
      // The hot path of resolve: link → profile in one statement, the JSON text only (measured 5.2 µs against 7.5 µs
      // for two point queries per identity).
      linkedProfile: db.prepare<[string], string>('SELECT p.data FROM id_links l JOIN id_profiles p ON p.pkey = l.pkey WHERE l.link = ?').pluck(),
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

  async resolve(lookups: IdentityMap[]): Promise<Array<IdentityMatch | undefined>> {
    const { linkedProfile } = this.st;
    // One read transaction: the whole array sees one consistent snapshot. Same rule as resolveWith (plan.ts): the
    // lookup's identities in priority order, the first one linked to a profile wins.
    return this.db.transaction(() => lookups.map((lookup): IdentityMatch | undefined => {
      for (const [name, , id] of orderedEntries(lookup)) {
        const data = linkedProfile.get(id) as string | undefined;
        if (data !== undefined) return { profile: publicProfile(JSON.parse(data) as ProfileRecord), matchedBy: name };
      }
      return undefined;
    }))();
  }

  async profileCount(): Promise<number> {
    return this.st.count.get()!.n;
  }
}
