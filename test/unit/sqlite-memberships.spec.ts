import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import Database from 'better-sqlite3';
import { openSqliteStore } from '../../src/store/sqlite';
import { MembershipTable } from '../../src/store/sqlite/memberships';
import type { MembershipCompute, UserMembership } from '../../src/store/audience-store';
import type { SyncStore } from '../../src/store/types';

const T0 = 1_700_000_000_000;

/** Sets each user's membership to the given one (null: forgets the user), one profile update per user. */
function setAll(wanted: Map<string, UserMembership | null>): MembershipCompute {
  return () => [...wanted].map(([userKey, m]) => ({
    userKey,
    membership: m ?? { audiences: [], targets: [] },
    profileSets: [{ distinctId: `d-${userKey}`, props: { SegmentMembership: (m?.audiences ?? []).map((a) => `'${a.id}'`).join(',') } }],
  }));
}

async function readAll(store: SyncStore, scope: string, keys: string[]): Promise<Map<string, UserMembership>> {
  let seen = new Map<string, UserMembership>();
  await store.audience.updateMemberships(scope, keys, (cur) => { seen = cur; return []; }, T0);
  return seen;
}

/** A small deterministic generator, so a failure replays the same way. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/**
 * The SQLite store keeps users' audience sets as a log plus a table the log is folded into (MembershipTable). These
 * tests run folds with a tiny threshold so every path (mid-round changes, forgets, restarts mid-round) is exercised.
 */
describe('SQLite audience sets: log, fold and restart', function () {
  this.timeout(60000);
  let dir: string;
  let file: string;
  let store: SyncStore | undefined;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mp-sqlite-members-'));
    file = path.join(dir, 'sync.db');
  });
  afterEach(async () => {
    await store?.close();
    store = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('reads back exactly what a model holds through folds, forgets, renames and restarts, in two scopes', async () => {
    const next = rng(42);
    const model = new Map<string, Map<string, UserMembership>>([['s1', new Map()], ['s2', new Map()]]);
    const audiences = [{ id: '11', name: 'A11' }, { id: '12', name: 'A12' }, { id: '13', name: 'A13' }, { id: '11', name: 'A11 renamed' }];
    const keys = Array.from({ length: 300 }, (_, i) => `mpid:${(i * 7919) % 1009}`);
    store = openSqliteStore(file, { foldAt: 60 });
    for (let step = 0; step < 400; step++) {
      const scope = next() < 0.7 ? 's1' : 's2';
      const batch = new Map<string, UserMembership | null>();
      const size = 1 + Math.floor(next() * 20);
      for (let k = 0; k < size; k++) {
        const key = keys[Math.floor(next() * keys.length)];
        if (next() < 0.15) batch.set(key, null);
        else {
          const picked = audiences.filter(() => next() < 0.5);
          batch.set(key, { audiences: picked, targets: [`d-${key}`, ...(next() < 0.2 ? ['extra'] : [])] });
        }
      }
      await store.audience.updateMemberships(scope, [...batch.keys()], setAll(batch), T0 + step);
      for (const [key, m] of batch) {
        if (m && (m.audiences.length || m.targets.length)) model.get(scope)!.set(key, m);
        else model.get(scope)!.delete(key);
      }
      // Read some users back at once: mid-round, users are in memory (new or being folded), the table, or both.
      const sample = Array.from({ length: 12 }, () => keys[Math.floor(next() * keys.length)]);
      const seen = await readAll(store, scope, sample);
      for (const key of sample) expect(seen.get(key), `step ${step}: ${scope} ${key}`).to.deep.equal(model.get(scope)!.get(key));
      if (step % 13 === 12) { // a restart, often in the middle of a fold round
        await store.close();
        store = openSqliteStore(file, { foldAt: 60 });
      }
    }
    for (const [scope, users] of model) {
      const stored = await readAll(store, scope, keys);
      expect(stored.size, scope).to.equal(users.size);
      for (const [key, m] of users) expect(stored.get(key), `${scope} ${key}`).to.deep.equal(m);
      for (const a of ['11', '12', '13']) {
        const members = [...users].filter(([, m]) => m.audiences.some((x) => x.id === a)).map(([k]) => k).sort();
        expect(await store.audience.membersOfAudience(scope, a, undefined, 1000), `${scope} ${a}`).to.deep.equal(members);
      }
    }
  });

  it('keeps the waiting users and the log bounded: folding keeps pace with writing', async () => {
    store = openSqliteStore(file, { foldAt: 500 });
    const users = new Set<string>();
    let most = 0;
    for (let i = 0; i < 40; i++) {
      const batch = new Map<string, UserMembership | null>();
      for (let k = 0; k < 200; k++) batch.set(`u${(((i * 200 + k) * 2654435761) >>> 0) % 100003}`, { audiences: [{ id: '11', name: 'A11' }], targets: ['d'] });
      await store.audience.updateMemberships('s', [...batch.keys()], setAll(batch), T0);
      for (const key of batch.keys()) users.add(key);
      most = Math.max(most, (store.audience as unknown as { members: { waiting: number } }).members.waiting);
    }
    // 8000 users written, never more than 1000 waiting (a round here is folded in the transaction that starts it).
    expect(most).to.be.within(1, 1000);
    // Read through a connection of its own while the store is open (WAL: it sees what was committed).
    const counts = () => {
      const db = new Database(file, { readonly: true });
      try {
        return {
          logged: (db.prepare('SELECT COUNT(*) AS n FROM aud_members_log').get() as { n: number }).n,
          folded: (db.prepare('SELECT COUNT(*) AS n FROM aud_members').get() as { n: number }).n,
        };
      } finally {
        db.close();
      }
    };
    const { logged, folded } = counts();
    // 8000 writes; a round starts at 500 waiting and folds six per write, so the log never holds much more than 500
    // plus the writes made while a round runs; every user is in the table, the log, or both.
    expect(logged).to.be.within(1, 1000);
    expect(folded).to.be.at.least(users.size - logged);
    // Closing folds the rest: a file closed cleanly holds everything in aud_members, as older versions expect.
    await store.close();
    store = undefined;
    expect(counts()).to.deep.equal({ logged: 0, folded: users.size });
  });

  it('folds a round at 6 users per user written, so a round leaves memory in a sixth of the writes that filled it', async () => {
    store = openSqliteStore(file, { foldAt: 600 });
    const waiting = () => (store!.audience as unknown as { members: { waiting: number } }).members.waiting;
    const trace: number[] = [];
    // 30 new users per transaction: the round starts at 600 waiting (transaction 20) and folds 180 a transaction, so
    // it is over by transaction 23; at 2 per write it would take 10 transactions and hold up to 870 users.
    for (let i = 0; i < 60; i++) {
      const batch = new Map<string, UserMembership | null>();
      for (let k = 0; k < 30; k++) batch.set(`u${i * 30 + k}`, { audiences: [{ id: '11', name: 'A11' }], targets: [`d${i * 30 + k}`] });
      await store.audience.updateMemberships('s', [...batch.keys()], setAll(batch), T0 + i);
      trace.push(waiting());
    }
    expect(trace[18]).to.equal(570); // nothing folded before the round
    expect(trace[19]).to.equal(600); // the round began with all 600 and folded its first 180 of them
    expect(trace[22]).to.equal(90); // round over: only the 90 written since are left
    expect(Math.max(...trace)).to.equal(660);
    // And what was folded reads back as written, from the table.
    const seen = await readAll(store, 's', ['u0', 'u599', 'u1799']);
    expect(seen.get('u0')).to.deep.equal({ audiences: [{ id: '11', name: 'A11' }], targets: ['d0'] });
    expect(seen.get('u599')).to.deep.equal({ audiences: [{ id: '11', name: 'A11' }], targets: ['d599'] });
    expect(seen.get('u1799')).to.deep.equal({ audiences: [{ id: '11', name: 'A11' }], targets: ['d1799'] });
  });

  it('a transaction that fails halfway leaves memory as it was: the next read sees the state before it', async () => {
    store = openSqliteStore(file, { foldAt: 2 });
    const before = new Map<string, UserMembership | null>([['u1', { audiences: [{ id: '11', name: 'A11' }], targets: ['d1'] }]]);
    await store.audience.updateMemberships('s', ['u1'], setAll(before), T0);
    // The membership is written first, then the profile update fails to encode (a BigInt): SQLite rolls back.
    const failing: MembershipCompute = () => [
      { userKey: 'u1', membership: { audiences: [{ id: '99', name: 'New name' }], targets: ['d1'] }, profileSets: [] },
      { userKey: 'u2', membership: { audiences: [{ id: '12', name: 'A12' }], targets: ['d2'] }, profileSets: [{ distinctId: 'd2', props: { x: 1n as unknown as string } }] },
    ];
    let error: unknown;
    try {
      await store.audience.updateMemberships('s', ['u1', 'u2'], failing, T0);
    } catch (err) {
      error = err;
    }
    expect(error).to.be.instanceOf(TypeError);
    const seen = await readAll(store, 's', ['u1', 'u2']);
    expect([...seen]).to.deep.equal([['u1', before.get('u1')]]);
    // and the audience the failed transaction named got no lasting ID: writing it now stores and reads back fine
    const after = new Map<string, UserMembership | null>([['u2', { audiences: [{ id: '99', name: 'New name' }], targets: ['d2'] }]]);
    await store.audience.updateMemberships('s', ['u2'], setAll(after), T0);
    await store.close();
    store = openSqliteStore(file, { foldAt: 2 });
    expect([...await readAll(store, 's', ['u1', 'u2'])]).to.deep.equal([['u1', before.get('u1')], ['u2', after.get('u2')]]);
  });

  it('a rolled-back transaction that began, advanced or ended a fold round leaves the round and memory as they were', () => {
    const db = new Database(file);
    try {
      const table = new MembershipTable(db, { foldAt: 3 });
      const m = (n: number): UserMembership => ({ audiences: [{ id: String(n), name: `A${n}` }], targets: [`d${n}`] });
      const expectRead = (want: Record<string, number>) => {
        const got = table.transaction(() => table.read('s', ['u1', 'u2', 'u3', 'u4', 'u5']));
        expect(Object.fromEntries([...got].map(([k, v]) => [k, Number(v.audiences[0].id)]))).to.deep.equal(want);
      };
      const fails = (fn: () => void) => expect(() => table.transaction(() => { fn(); throw new Error('commit failed'); })).to.throw('commit failed');
      table.transaction(() => ['u1', 'u2', 'u3'].forEach((k, i) => table.write('s', k, m(i + 1))));
      // Began: three users wait, a round starts and takes one step, a newer state arrives; then all of it rolls back.
      fails(() => {
        table.fold(1);
        table.write('s', 'u1', m(9));
        table.write('s', 'u4', m(4));
      });
      expect(table.waiting).to.equal(3);
      expectRead({ u1: 1, u2: 2, u3: 3 });
      // Advanced and ended: the round starts for real, then a transaction that finishes it rolls back.
      table.transaction(() => {
        table.fold(1);
        table.write('s', 'u2', m(20));
      });
      fails(() => {
        table.fold(10);
        table.write('s', 'u5', m(5));
      });
      expectRead({ u1: 1, u2: 20, u3: 3 });
      table.transaction(() => table.fold(10));
      expectRead({ u1: 1, u2: 20, u3: 3 });
      expect(table.waiting, 'u2 (changed mid-round) still waits').to.equal(1);
      // The round that really ended dropped exactly its own log rows: u2's newer row stays.
      expect(db.prepare('SELECT user_key FROM aud_members_log').pluck().all()).to.deep.equal(['u2']);
      expect(db.prepare('SELECT user_key FROM aud_members ORDER BY user_key').pluck().all()).to.deep.equal(['u1', 'u2', 'u3']);
    } finally {
      db.close();
    }
  });

  it('opens a file from before this layout (aud_users with names): moves every user over and drops the old table', async () => {
    const db = new Database(file);
    db.exec(`CREATE TABLE aud_users (scope TEXT NOT NULL, user_key TEXT NOT NULL, data TEXT NOT NULL,
      PRIMARY KEY (scope, user_key)) WITHOUT ROWID`);
    const put = db.prepare('INSERT INTO aud_users VALUES (?, ?, ?)');
    const old = new Map<string, UserMembership>();
    db.transaction(() => {
      for (let i = 0; i < 12000; i++) { // more than one migration slice
        const m: UserMembership = { audiences: [{ id: '11036', name: i % 2 ? 'Ibiza Dreamers' : 'Old name' }, { id: '11034', name: 'Aspiring Athenians' }], targets: [`cust-${i}`] };
        old.set(`mpid:${i}`, m);
        put.run('node-a', `mpid:${i}`, JSON.stringify(m));
      }
      put.run('node-b', 'mpid:1', JSON.stringify({ audiences: [{ id: '7', name: 'Seven' }], targets: ['x'] }));
      put.run('node-b', 'broken', '{not json');
    })();
    db.close();

    store = openSqliteStore(file);
    const stored = await readAll(store, 'node-a', [...old.keys()]);
    expect(stored.size).to.equal(12000);
    for (const [key, m] of old) expect(stored.get(key), key).to.deep.equal(m);
    expect([...await readAll(store, 'node-b', ['mpid:1', 'broken'])]).to.deep.equal([['mpid:1', { audiences: [{ id: '7', name: 'Seven' }], targets: ['x'] }]]);
    expect(await store.audience.membersOfAudience('node-b', '7', undefined, 10)).to.deep.equal(['mpid:1']);
    await store.close();
    store = undefined;
    const check = new Database(file, { readonly: true });
    try {
      expect(check.prepare("SELECT name FROM sqlite_master WHERE name = 'aud_users'").get()).to.equal(undefined);
    } finally {
      check.close();
    }
  });
});
