import path from 'node:path';
import Database from 'better-sqlite3';
import { expect } from 'chai';
import type { CohortMemberRef, CohortStore } from '../../src/store/cohort-store';
import { MemoryCohortStore } from '../../src/store/memory/cohorts';
import { SqliteCohortStore } from '../../src/store/sqlite/cohorts';
import { cleanupTempDirs, tempDir } from '../helpers/node-red';

/** The cohort store contract, run against every embedded backend (the Redis one must pass the same cases). */
const m = (id: string, mpid?: string): CohortMemberRef => (mpid ? { distinctId: id, mpid } : { distinctId: id });
const ids = (refs: CohortMemberRef[]) => refs.map((r) => r.distinctId).sort();

const backends: Array<[string, () => { store: CohortStore; close(): void }]> = [
  ['memory', () => ({ store: new MemoryCohortStore(), close() {} })],
  ['sqlite', () => {
    const db = new Database(path.join(tempDir(), 'c.db'));
    db.pragma('journal_mode = WAL'); // as openSqliteStore does
    db.pragma('synchronous = NORMAL');
    return { store: new SqliteCohortStore(db), close: () => db.close() };
  }],
];

for (const [name, open] of backends) {
  describe(`cohort store contract: ${name}`, () => {
    let s: CohortStore;
    let close: () => void;
    beforeEach(() => ({ store: s, close } = open()));
    afterEach(() => {
      close();
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
