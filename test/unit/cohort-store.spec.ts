import path from 'node:path';
import Database from 'better-sqlite3';
import { expect } from 'chai';
import type { CohortMemberRef, CohortStore, MembersPageResult } from '../../src/store/cohort-store';
import { MemoryCohortStore } from '../../src/store/memory/cohorts';
import { openRedisStore } from '../../src/store/redis';
import { SqliteCohortStore } from '../../src/store/sqlite/cohorts';
import type { SyncStore } from '../../src/store/types';
import { cleanupTempDirs, tempDir } from '../helpers/node-red';
import { redisTestUrl } from '../helpers/redis';

/** The cohort store contract, run against every embedded backend (the Redis one must pass the same cases). */
const m = (id: string, mpid?: string): CohortMemberRef => (mpid ? { distinctId: id, mpid } : { distinctId: id });
const ids = (refs: CohortMemberRef[]) => refs.map((r) => r.distinctId).sort();

// ---- Redis: see test/helpers/redis.ts (REDIS_URL from `npm test`, else a redis-server of our own; never skipped).
let redisSeq = 0;
const redisRun = `${process.pid}-${Date.now().toString(36)}`;

/** Two connections on one key prefix: what two Node-RED instances sharing a Redis have. */
async function openRedisPair(): Promise<{ a: SyncStore; b: SyncStore; close(): Promise<void> }> {
  const url = await redisTestUrl();
  const keyPrefix = `test:coh:${redisRun}:${++redisSeq}:`;
  const a = openRedisStore({ url, keyPrefix });
  const b = openRedisStore({ url, keyPrefix });
  await a.ping(); // fail, do not skip, when Redis does not answer
  await b.ping();
  return { a, b, async close() { await a.close(); await b.close(); } };
}

type Opened = { store: CohortStore; close(): void | Promise<void> };
const backends: Array<[string, () => Opened | Promise<Opened>]> = [
  ['memory', () => ({ store: new MemoryCohortStore(), close() {} })],
  ['sqlite', () => {
    const db = new Database(path.join(tempDir(), 'c.db'));
    db.pragma('journal_mode = WAL'); // as openSqliteStore does
    db.pragma('synchronous = NORMAL');
    return { store: new SqliteCohortStore(db), close: () => { db.close(); } };
  }],
  ['redis', async () => {
    const pair = await openRedisPair();
    await pair.b.close(); // one connection is enough for the sequential contract
    return { store: pair.a.cohorts, close: () => pair.a.close() };
  }],
];

for (const [name, open] of backends) {
  describe(`cohort store contract: ${name}`, () => {
    let s: CohortStore;
    let close: () => void;
    beforeEach(async () => ({ store: s, close } = await open()));
    afterEach(async () => {
      await close();
      cleanupTempDirs();
    });

    it('stages a members export and replaces the previous membership only when complete', async () => {
      await s.stageMembersPage('p/c', 'A', 1, 1, [m('a'), m('b'), m('c')], 1);
      const p2 = await s.stageMembersPage('p/c', 'B', 2, 2, [m('c'), m('d')], 2);
      expect(p2).to.deep.include({ duplicate: false, complete: false, received: 1, totalPages: 2, removed: [] });
      expect(ids(p2.added)).to.deep.equal(['d']);
      const p1 = await s.stageMembersPage('p/c', 'B', 1, 2, [m('b')], 3);
      expect(p1.complete).to.equal(true);
      expect(p1.added).to.deep.equal([]);
      expect(ids(p1.removed)).to.deep.equal(['a']);
      expect(await s.memberCount('p/c')).to.equal(3);
      expect(ids(await s.members('p/c', undefined, 10))).to.deep.equal(['b', 'c', 'd']);
    });

    it('ignores a page seen before, also after completion', async () => {
      await s.stageMembersPage('p/c', 'A', 1, 2, [m('a')], 1);
      const dup = await s.stageMembersPage('p/c', 'A', 1, 2, [m('zzz')], 2);
      expect(dup).to.deep.include({ duplicate: true, added: [], removed: [], received: 1 });
      await s.stageMembersPage('p/c', 'A', 2, 2, [m('b')], 3);
      const late = await s.stageMembersPage('p/c', 'A', 2, 2, [m('x')], 4);
      expect(late.duplicate).to.equal(true);
      expect(await s.memberCount('p/c')).to.equal(2);
    });

    it('an older export completing after a newer one removes nothing', async () => {
      await s.stageMembersPage('p/c', 'OLD', 1, 2, [m('a')], 1);
      await s.stageMembersPage('p/c', 'NEW', 1, 1, [m('b')], 2); // complete: a is removed
      const late = await s.stageMembersPage('p/c', 'OLD', 2, 2, [m('c')], 3);
      expect(late.complete).to.equal(true);
      expect(late.removed).to.deep.equal([]);
      expect(ids(await s.members('p/c', undefined, 10))).to.deep.equal(['b', 'c']);
    });

    it('applies diff pages once each, keeps mpid and email, and keeps cohorts apart', async () => {
      expect(await s.applyDiffPage('p/c', 'add_members', 'S', 1, [m('a', '1'), { distinctId: 'b', email: 'b@x' }], 1)).to.deep.equal({ duplicate: false });
      expect(await s.applyDiffPage('p/c', 'add_members', 'S', 1, [m('zzz')], 2)).to.deep.equal({ duplicate: true });
      expect(await s.applyDiffPage('p/c', 'remove_members', 'S', 1, [m('a')], 3)).to.deep.equal({ duplicate: false });
      await s.applyDiffPage('p/other', 'add_members', undefined, 1, [m('q')], 4);
      await s.applyDiffPage('p/other', 'add_members', undefined, 1, [m('r')], 5); // no session: applied every time
      expect(await s.members('p/c', undefined, 10)).to.deep.equal([{ distinctId: 'b', email: 'b@x' }]);
      expect(ids(await s.members('p/other', undefined, 10))).to.deep.equal(['q', 'r']);
    });

    it('a member added by a diff during a running export survives its completion', async () => {
      await s.stageMembersPage('p/c', 'A', 1, 2, [m('a')], 1);
      await s.applyDiffPage('p/c', 'add_members', 'D', 1, [m('late')], 2);
      const done = await s.stageMembersPage('p/c', 'A', 2, 2, [m('b')], 3);
      expect(done.removed).to.deep.equal([]);
      expect(ids(await s.members('p/c', undefined, 10))).to.deep.equal(['a', 'b', 'late']);
    });

    it('expires old sessions and page keys but keeps membership', async () => {
      await s.stageMembersPage('p/c', 'A', 1, 3, [m('a')], 1000);
      await s.applyDiffPage('p/c', 'add_members', 'D', 1, [m('b')], 1000);
      await s.stageMembersPage('p/c', 'B', 1, 3, [m('c')], 5000);
      expect(await s.expire(2000)).to.equal(1);
      expect(await s.memberCount('p/c')).to.equal(3);
      // The expired diff page is new again; the live session is still recognised.
      expect((await s.applyDiffPage('p/c', 'add_members', 'D', 1, [m('b')], 6000)).duplicate).to.equal(false);
      expect((await s.stageMembersPage('p/c', 'B', 1, 3, [m('c')], 6000)).duplicate).to.equal(true);
    });

    it('stages a 1000-member page in a few milliseconds', async () => {
      const page = Array.from({ length: 1000 }, (_, i) => m(`user-${i}`, String(i + 1)));
      await s.stageMembersPage('p/c', 'W', 1, 1, page, 1); // warm up
      const t0 = process.hrtime.bigint();
      for (let p = 1; p <= 20; p++) {
        await s.stageMembersPage('p/c', 'P', p, 20, page.map((x) => ({ ...x, distinctId: `${x.distinctId}-${p}` })), 2);
      }
      const perPageMs = Number(process.hrtime.bigint() - t0) / 1e6 / 20;
      expect(perPageMs).to.be.below(100);
      expect(await s.memberCount('p/c')).to.equal(20000);
    });
  });
}

// ---- Redis only: two connections (two Node-RED instances) on one cohort, and the SQLite semantics exactly ----------
describe('cohort store: redis shared by two instances', function () {
  this.timeout(60000);
  let pair: Awaited<ReturnType<typeof openRedisPair>>;
  beforeEach(async () => { pair = await openRedisPair(); });
  afterEach(async () => { await pair.close(); });

  const range = (from: number, to: number, tag = '') => Array.from({ length: to - from }, (_, i) => m(`u${String(from + i).padStart(5, '0')}${tag}`, String(from + i + 1)));

  it('pages of one export staged through both at once: one completion, the right removals, each addition once', async () => {
    const { a, b } = pair;
    for (let round = 0; round < 10; round++) {
      // Previous membership: u00000…u01999 (plus the first round's leftovers, swept in the round before).
      const prev = range(round * 100, round * 100 + 2000);
      await a.cohorts.stageMembersPage('p/c', `prev-${round}`, 1, 1, prev, 1);
      // New export: 20 pages of 100, shifted by 500: u00500+r*100 … u02499+r*100; every page sent to both instances.
      const next = range(round * 100 + 500, round * 100 + 2500);
      const pages = Array.from({ length: 20 }, (_, p) => next.slice(p * 100, (p + 1) * 100));
      const calls: Array<Promise<MembersPageResult>> = [];
      pages.forEach((members, p) => {
        calls.push(a.cohorts.stageMembersPage('p/c', `next-${round}`, p + 1, 20, members, 2));
        calls.push(b.cohorts.stageMembersPage('p/c', `next-${round}`, p + 1, 20, members, 2));
      });
      const results = await Promise.all(calls);
      const applied = results.filter((r) => !r.duplicate);
      expect(applied.length, 'each page applied once').to.equal(20);
      expect(applied.map((r) => r.received).sort((x, y) => x - y)).to.deep.equal(Array.from({ length: 20 }, (_, i) => i + 1));
      const done = applied.filter((r) => r.complete);
      expect(done.length, 'exactly one completion').to.equal(1);
      const added = applied.flatMap((r) => r.added);
      expect(ids(added)).to.deep.equal(ids(range(round * 100 + 2000, round * 100 + 2500)));
      expect(new Set(added.map((x) => x.distinctId)).size).to.equal(added.length);
      expect(ids(done[0].removed)).to.deep.equal(ids(range(round * 100, round * 100 + 500)));
      expect(done[0].removed[0].mpid).to.match(/^\d+$/);
      expect(results.filter((r) => r.duplicate).every((r) => r.added.length === 0 && r.removed.length === 0)).to.equal(true);
      expect(await b.cohorts.memberCount('p/c')).to.equal(2000);
    }
  });

  it('two exports racing on both instances: only the newer one removes', async () => {
    const { a, b } = pair;
    await a.cohorts.stageMembersPage('p/c', 'base', 1, 1, range(0, 300), 1);
    // OLD starts first (older generation), NEW completes first, OLD's last page then arrives: it must not sweep.
    await a.cohorts.stageMembersPage('p/c', 'OLD', 1, 2, range(0, 100), 2);
    const [n1, n2] = await Promise.all([
      a.cohorts.stageMembersPage('p/c', 'NEW', 1, 2, range(100, 200), 3),
      b.cohorts.stageMembersPage('p/c', 'NEW', 2, 2, range(200, 300), 3),
    ]);
    const newDone = [n1, n2].filter((r) => r.complete);
    expect(newDone.length).to.equal(1);
    expect(ids(newDone[0].removed)).to.deep.equal(ids(range(0, 100)));
    const late = await b.cohorts.stageMembersPage('p/c', 'OLD', 2, 2, range(50, 60), 4);
    expect(late.complete).to.equal(true);
    expect(late.removed).to.deep.equal([]);
    expect(await a.cohorts.memberCount('p/c')).to.equal(210);
  });

  it('a diff page delivered to both instances applies once', async () => {
    const { a, b } = pair;
    const rs = await Promise.all([
      a.cohorts.applyDiffPage('p/c', 'add_members', 'S', 1, range(0, 500), 1),
      b.cohorts.applyDiffPage('p/c', 'add_members', 'S', 1, range(0, 500), 1),
    ]);
    expect(rs.map((r) => r.duplicate).sort()).to.deep.equal([false, true]);
    expect(await a.cohorts.memberCount('p/c')).to.equal(500);
  });

  it('gives the same answers as the SQLite store on random page sequences', async () => {
    // A seeded generator: pages of a few sessions out of order, duplicate pages, duplicate members within a page
    // with changing mpid/email, diffs with and without session, expiry. Both stores get the same calls.
    let seed = 42;
    const rnd = (n: number) => { // mulberry32
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return (((t ^ (t >>> 14)) >>> 0) % n);
    };
    const db = new Database(path.join(tempDir(), 'diff.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    try {
      const ref = new SqliteCohortStore(db);
      const red = pair.a.cohorts;
      const member = (): CohortMemberRef => {
        const id = `d${rnd(40)}`;
        const r: CohortMemberRef = { distinctId: id };
        const v = rnd(4);
        if (v & 1) r.mpid = String(100 + rnd(3));
        if (v & 2) r.email = `${id}+${rnd(2)}@example.com`;
        return r;
      };
      const norm = (x: unknown) => {
        const r = structuredClone(x) as Record<string, unknown>;
        for (const k of ['added', 'removed']) {
          if (Array.isArray(r[k])) (r[k] as CohortMemberRef[]).sort((p, q) => (p.distinctId < q.distinctId ? -1 : 1));
        }
        return r;
      };
      let now = 1000;
      for (let step = 0; step < 1500; step++) {
        now += 1 + rnd(50);
        const cohort = `p/${rnd(2)}`;
        const members = Array.from({ length: rnd(12) }, member);
        const op = rnd(10);
        let call: (s: CohortStore) => Promise<unknown>;
        let what: unknown[];
        if (op < 6) {
          const session = `s${rnd(8)}`;
          const total = 1 + (Number(session.slice(1)) % 4);
          const page = 1 + rnd(rnd(10) === 0 ? total + 1 : total); // now and then a page number beyond the total
          what = ['stage', cohort, session, page, total];
          call = (s) => s.stageMembersPage(cohort, session, page, total, members, now);
        } else if (op < 9) {
          const kind = rnd(2) ? 'add_members' : 'remove_members';
          const session = rnd(3) ? `d${rnd(3)}` : undefined;
          const page = 1 + rnd(2);
          what = [kind, cohort, session, page];
          call = (s) => s.applyDiffPage(cohort, kind, session, page, members, now);
        } else {
          const before = now - rnd(400);
          what = ['expire', before];
          call = (s) => s.expire(before);
        }
        const want = await call(ref);
        const got = await call(red);
        expect(norm(got), `step ${step}: ${JSON.stringify(what)} at ${now} with ${JSON.stringify(members)}`).to.deep.equal(norm(want));
        if (step % 50 === 49) {
          for (const c of ['p/0', 'p/1']) {
            expect(await red.members(c, undefined, 1000), `members of ${c} at step ${step}`).to.deep.equal(await ref.members(c, undefined, 1000));
            expect(await red.members(c, 'd2', 5)).to.deep.equal(await ref.members(c, 'd2', 5));
            expect(await red.memberCount(c)).to.equal(await ref.memberCount(c));
          }
        }
      }
    } finally {
      db.close();
      cleanupTempDirs();
    }
  });
});

describe('cohort store: SQLite, an export completing while a fold round is half done', () => {
  afterEach(() => cleanupTempDirs());

  it('removes exactly the members the export did not list, wherever they wait (memory, round, table)', async () => {
    const db = new Database(path.join(tempDir(), 'r.db'));
    try {
      // foldAt 8: a round starts once 8 members wait, and folds 2 per member written (LogFold.step).
      const s = new SqliteCohortStore(db, { foldAt: 8 });
      const six = ['m0', 'm1', 'm2', 'm3', 'm4', 'm5'];
      await s.stageMembersPage('p/c', 'A', 1, 1, six.map((id) => m(id, `9${id.slice(1)}`)), 1); // 6 wait: no round
      // Export B, page 1: two more wait (8), a round starts and folds 4 of them (m0–m3) into the table.
      await s.stageMembersPage('p/c', 'B', 1, 2, [m('m6'), m('m7')], 2);
      // Page 2 completes B while the round is half done: m0–m5 were not listed, m6 is listed again.
      const last = await s.stageMembersPage('p/c', 'B', 2, 2, [m('m6')], 3);
      expect(last.complete).to.equal(true);
      expect(last.removed).to.deep.equal(six.map((id) => m(id, `9${id.slice(1)}`)));
      expect(ids(await s.members('p/c', undefined, 10))).to.deep.equal(['m6', 'm7']);
    } finally {
      db.close();
    }
  });
});

describe('cohort store: SQLite, members an export only confirms', () => {
  afterEach(() => cleanupTempDirs());
  const count = (db: Database.Database, sql: string) => (db.prepare(sql).pluck().get() as number);

  it('are not written again: one coh_seen row per page until the export is swept, and the removals are right', async () => {
    const db = new Database(path.join(tempDir(), 's.db'));
    try {
      const s = new SqliteCohortStore(db, { foldAt: 4 });
      const members = ['a', 'b', 'c', 'd', 'e', 'f'].map((id, i) => m(id, String(100 + i)));
      await s.stageMembersPage('p/c', 'A', 1, 1, members, 1);
      (s as unknown as { foldAll(): void }).foldAll();
      expect(count(db, 'SELECT count(*) FROM coh_members_log')).to.equal(0);
      // Export B lists a–d unchanged (two pages), e with a new MPID, and not f.
      await s.stageMembersPage('p/c', 'B', 1, 3, members.slice(0, 2), 2);
      await s.stageMembersPage('p/c', 'B', 2, 3, members.slice(2, 4), 3);
      expect(count(db, 'SELECT count(*) FROM coh_seen')).to.equal(2);
      expect(count(db, 'SELECT count(*) FROM coh_members_log'), 'nothing logged for a–d').to.equal(0);
      const last = await s.stageMembersPage('p/c', 'B', 3, 3, [m('e', '999')], 4);
      expect(last.removed).to.deep.equal([m('f', '105')]);
      expect(last.added).to.deep.equal([]);
      expect(count(db, 'SELECT count(*) FROM coh_seen'), 'swept: its confirmations go').to.equal(0);
      expect((await s.members('p/c', undefined, 10)).map((r) => [r.distinctId, r.mpid])).to.deep.equal(
        [['a', '100'], ['b', '101'], ['c', '102'], ['d', '103'], ['e', '999']]);
      // The next export still knows who B confirmed: it lists only a, so b–e go.
      const next = await s.stageMembersPage('p/c', 'C', 1, 1, [members[0]], 5);
      expect(ids(next.removed)).to.deep.equal(['b', 'c', 'd', 'e']);
    } finally {
      db.close();
    }
  });

  it('survive a restart in the middle of an export, and a page that rolls back leaves none behind', async () => {
    const file = path.join(tempDir(), 'r.db');
    let db = new Database(file);
    try {
      let s = new SqliteCohortStore(db, { foldAt: 4 });
      await s.stageMembersPage('p/c', 'A', 1, 1, ['a', 'b', 'c'].map((id) => m(id)), 1);
      await s.stageMembersPage('p/c', 'B', 1, 3, [m('a')], 2);
      db.close();
      db = new Database(file);
      s = new SqliteCohortStore(db, { foldAt: 4 });
      // Page 2 fails after confirming b (its coh_seen row is refused): nothing of it may count.
      db.exec(`CREATE TEMP TRIGGER refuse BEFORE INSERT ON coh_seen BEGIN SELECT RAISE(ABORT, 'disk full'); END`);
      let failed: unknown;
      try { await s.stageMembersPage('p/c', 'B', 2, 3, [m('b')], 3); } catch (err) { failed = err; }
      expect((failed as Error)?.message).to.equal('disk full');
      db.exec('DROP TRIGGER refuse');
      // Mixpanel sends page 2 again, now without b (say b left meanwhile), then page 3.
      await s.stageMembersPage('p/c', 'B', 2, 3, [], 4);
      const last = await s.stageMembersPage('p/c', 'B', 3, 3, [m('c')], 5);
      expect(ids(last.removed)).to.deep.equal(['b']);
    } finally {
      db.close();
    }
  });

  it('a file from before slots: its members get one when next seen, and sweeps stay right', async () => {
    const file = path.join(tempDir(), 'old.db');
    const old = new Database(file);
    old.exec(`
      CREATE TABLE coh_cohorts (cohort TEXT PRIMARY KEY, gen INTEGER NOT NULL DEFAULT 0, done_gen INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
      CREATE TABLE coh_members (cohort TEXT NOT NULL, distinct_id TEXT NOT NULL, mpid TEXT, email TEXT,
        seen_gen INTEGER NOT NULL, PRIMARY KEY (cohort, distinct_id)) WITHOUT ROWID;
      CREATE TABLE coh_members_log (seq INTEGER PRIMARY KEY, cohort TEXT NOT NULL, distinct_id TEXT NOT NULL, data TEXT);
      INSERT INTO coh_cohorts VALUES ('p/c', 1, 1);
      INSERT INTO coh_members VALUES ('p/c', 'a', '1', NULL, 1), ('p/c', 'b', '2', NULL, 1), ('p/c', 'c', '3', NULL, 1);
      INSERT INTO coh_members_log (cohort, distinct_id, data) VALUES ('p/c', 'd', '["4",null,1]');`);
    old.close();
    const db = new Database(file);
    try {
      const s = new SqliteCohortStore(db, { foldAt: 4 });
      // Export 2 lists a, b and d: c goes; nothing is new.
      const r2 = await s.stageMembersPage('p/c', 'X', 1, 1, [m('a', '1'), m('b', '2'), m('d', '4')], 1);
      expect(r2.added).to.deep.equal([]);
      expect(ids(r2.removed)).to.deep.equal(['c']);
      (s as unknown as { foldAll(): void }).foldAll();
      expect(count(db, 'SELECT count(*) FROM coh_members WHERE slot IS NULL'), 'each member seen has a slot now').to.equal(0);
      // Export 3, now by slot: lists a only.
      const r3 = await s.stageMembersPage('p/c', 'Y', 1, 1, [m('a', '1')], 2);
      expect(ids(r3.removed)).to.deep.equal(['b', 'd']);
    } finally {
      db.close();
    }
  });
});
