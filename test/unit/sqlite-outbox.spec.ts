import path from 'node:path';
import { expect } from 'chai';
import Database from 'better-sqlite3';
import type { MembershipCompute, ProfileProps } from '../../src/store/audience-store';
import { openSqliteStore } from '../../src/store/sqlite';
import type { SqliteAudienceStore } from '../../src/store/sqlite/audience';
import type { SyncStore } from '../../src/store/types';
import { cleanupTempDirs, tempDir } from '../helpers/node-red';

const T0 = 1_700_000_000_000;
const SCOPE = 's';

/** One profile update per distinct ID, with the given props; memberships are not the point here. */
function updates(sets: Array<[string, ProfileProps]>): MembershipCompute {
  return () => sets.map(([distinctId, props]) => ({
    userKey: `u-${distinctId}`, membership: { audiences: [{ id: '1', name: 'A' }], targets: [distinctId] }, profileSets: [{ distinctId, props }],
  }));
}

const queue = (store: SyncStore, sets: Array<[string, ProfileProps]>, now = T0) =>
  store.audience.updateMemberships(SCOPE, sets.map(([d]) => `u-${d}`), updates(sets), now);

const ids = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `d${from + i}`);

/**
 * The SQLite outbox finds a user's row by its due_at (OutboxLocator): from memory while the backlog is small, through
 * a unique index while it is large. These tests move a store across both thresholds (tiny ones) and check what a user
 * relies on: one row per user, merged updates, nothing lost, across restarts and failed transactions.
 */
describe('SQLite outbox: users found in memory or through the index', function () {
  this.timeout(30000);
  let file = '';
  let store: SyncStore | undefined;
  beforeEach(() => { file = path.join(tempDir('mpsync-outbox-'), 'store.db'); });
  afterEach(async () => {
    await store?.close();
    store = undefined;
    cleanupTempDirs();
  });

  const open = () => (store = openSqliteStore(file, { outboxIndexAt: 10, outboxDropIndexAt: 4 }));
  const indexed = () => (store!.audience as SqliteAudienceStore).outboxIndexed;
  /** What the file holds, read through a connection of its own: [distinct ID, rows, props] and whether the index exists. */
  const onDisk = () => {
    const db = new Database(file, { readonly: true });
    try {
      return {
        index: db.prepare("SELECT 1 FROM sqlite_schema WHERE name = 'aud_outbox_id'").get() !== undefined,
        rows: db.prepare<[], { distinct_id: string; n: number; props: string; count: number }>(
          'SELECT distinct_id, COUNT(*) AS n, max(props) AS props, sum(count) AS count FROM aud_outbox GROUP BY distinct_id ORDER BY distinct_id').all(),
      };
    } finally {
      db.close();
    }
  };

  it('uses memory for a small backlog, the index from outboxIndexAt rows, and memory again below outboxDropIndexAt', async () => {
    open();
    await queue(store!, ids(0, 9).map((d) => [d, { a: 1 }]));
    expect(indexed()).to.equal(false);
    expect(onDisk().index).to.equal(false);
    // A merge does not add a row: still below the threshold.
    await queue(store!, [['d0', { b: 2 }]]);
    expect(indexed()).to.equal(false);
    await queue(store!, ids(9, 12).map((d) => [d, { a: 1 }]));
    expect(indexed()).to.equal(true);
    expect(onDisk().index).to.equal(true);
    // Through the index: merges still land on the user's one row, last write wins per property.
    await queue(store!, [['d0', { a: 3 }], ['d11', { c: 4 }]]);
    let disk = onDisk().rows;
    expect(disk).to.have.length(12);
    expect(disk.every((r) => r.n === 1)).to.equal(true);
    expect(JSON.parse(disk.find((r) => r.distinct_id === 'd0')!.props)).to.deep.equal({ a: 3, b: 2 });
    expect(JSON.parse(disk.find((r) => r.distinct_id === 'd11')!.props)).to.deep.equal({ a: 1, c: 4 });

    // Drain: 12 → 6 stays on the index (above 4), 6 → 3 goes back to memory.
    const first = await store!.audience.claimDue(SCOPE, 6, T0 + 1, 60000);
    await store!.audience.ack(SCOPE, first, T0 + 2);
    expect(indexed()).to.equal(true);
    const second = await store!.audience.claimDue(SCOPE, 3, T0 + 3, 60000);
    await store!.audience.ack(SCOPE, second, T0 + 4);
    expect(indexed()).to.equal(false);
    expect(onDisk().index).to.equal(false);
    // From memory again: a merge, a retry and a dead letter find their rows.
    const rest = await store!.audience.claimDue(SCOPE, 10, T0 + 5, 60000);
    expect(rest).to.have.length(3);
    await queue(store!, [[rest[0].distinctId, { z: 9 }]], T0 + 6);
    await store!.audience.retryLater(SCOPE, [rest[1]], T0 + 7);
    await store!.audience.bury(SCOPE, [{ item: rest[2], reason: 'rejected' }], T0 + 8);
    await store!.audience.ack(SCOPE, [rest[0]], T0 + 9); // an older version: the merged change stays, due now
    disk = onDisk().rows;
    expect(disk.map((r) => [r.distinct_id, r.n])).to.deep.equal([[rest[0].distinctId, 1], [rest[1].distinctId, 1]].sort());
    const again = await store!.audience.claimDue(SCOPE, 10, T0 + 10, 60000);
    expect(again.map((i) => [i.distinctId, i.attempts])).to.have.deep.members([[rest[0].distinctId, 0], [rest[1].distinctId, 1]]);
    expect(again.find((i) => i.distinctId === rest[0].distinctId)!.props).to.include({ z: 9 });
    await store!.audience.ack(SCOPE, again, T0 + 11);
    const s = await store!.audience.stats(SCOPE);
    expect(s).to.include({ accepted: 16, acked: 15, dead: 1, pending: 0, profiles: 0 });
    expect((await store!.audience.deadLetters(SCOPE, 10)).map((d) => d.distinctId)).to.deep.equal([rest[2].distinctId]);
  });

  for (const [label, n, wantIndex] of [['a large backlog (index)', 12, true], ['a small backlog (memory)', 5, false]] as const) {
    it(`reopens a file with ${label} and merges into the rows written before the restart`, async () => {
      open();
      await queue(store!, ids(0, n).map((d) => [d, { a: 1 }]));
      await store!.close();
      open();
      expect(indexed()).to.equal(wantIndex);
      await queue(store!, ids(0, n).map((d) => [d, { b: 2 }]));
      const disk = onDisk().rows;
      expect(disk).to.have.length(n);
      expect(disk.every((r) => r.n === 1 && r.count === 2)).to.equal(true);
      expect(disk.every((r) => JSON.stringify(JSON.parse(r.props)) === '{"a":1,"b":2}')).to.equal(true);
    });
  }

  it('opens a file from the earlier layout (a unique index, few rows): drops the index and merges into its rows', async () => {
    const db = new Database(file);
    db.exec(`CREATE TABLE aud_outbox (scope TEXT NOT NULL, due_at INTEGER NOT NULL, distinct_id TEXT NOT NULL,
      props TEXT NOT NULL, version INTEGER NOT NULL, count INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
      queued_at INTEGER NOT NULL, PRIMARY KEY (scope, due_at, distinct_id)) WITHOUT ROWID;
      CREATE UNIQUE INDEX aud_outbox_id ON aud_outbox (scope, distinct_id);
      CREATE TABLE aud_counters (scope TEXT PRIMARY KEY, accepted INTEGER NOT NULL DEFAULT 0,
        acked INTEGER NOT NULL DEFAULT 0, dead INTEGER NOT NULL DEFAULT 0, next_version INTEGER NOT NULL DEFAULT 1);
      INSERT INTO aud_outbox VALUES ('s', ${T0}, 'old1', '{"a":1}', 1, 1, 0, ${T0}), ('s', ${T0 - 5}, 'old2', '{"a":1}', 2, 1, 0, ${T0 - 5});
      INSERT INTO aud_counters VALUES ('s', 2, 0, 0, 3);`);
    db.close();
    open();
    expect(indexed()).to.equal(false);
    expect(onDisk().index).to.equal(false);
    await queue(store!, [['old2', { b: 2 }]], T0 + 1);
    expect(onDisk().rows.map((r) => [r.distinct_id, r.n, JSON.parse(r.props)])).to.deep.equal([['old1', 1, { a: 1 }], ['old2', 1, { a: 1, b: 2 }]]);
    const items = await store!.audience.claimDue(SCOPE, 10, T0 + 2, 60000);
    expect(items.map((i) => i.distinctId)).to.deep.equal(['old2', 'old1']); // due order, as before
    await store!.audience.ack(SCOPE, items, T0 + 3);
    expect(await store!.audience.stats(SCOPE)).to.include({ accepted: 3, acked: 3, pending: 0, profiles: 0 });
  });

  for (const [label, before] of [['memory', 2], ['the index', 11]] as const) {
    it(`a rolled-back transaction leaves nothing behind in ${label}: the user's next update is stored, not lost`, async () => {
      open();
      await queue(store!, ids(0, before).map((d) => [d, { a: 1 }]));
      // The first new user's row is written, then the second's props fail to encode (a BigInt): SQLite rolls back.
      let error: unknown;
      try {
        await queue(store!, [['new1', { a: 1 }], ['new2', { x: 1n as unknown as string }]]);
      } catch (err) {
        error = err;
      }
      expect(error).to.be.instanceOf(TypeError);
      expect(onDisk().rows.map((r) => r.distinct_id)).to.not.include('new1');
      await queue(store!, [['new1', { b: 2 }]]);
      const items = await store!.audience.claimDue(SCOPE, 20, T0 + 1, 60000);
      expect(items.find((i) => i.distinctId === 'new1')?.props).to.deep.equal({ b: 2 });
      expect(items).to.have.length(before + 1);
    });
  }
});
