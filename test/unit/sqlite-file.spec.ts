import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { expect } from 'chai';
import Database from 'better-sqlite3';
import { openSqliteStore } from '../../src/store/sqlite';
import { BackgroundCheckpointer } from '../../src/store/sqlite/checkpointer';
import type { MembershipCompute } from '../../src/store/audience-store';
import type { SyncStore } from '../../src/store/types';

/** Joins `n` users with scattered keys (as real MPIDs are) to audience 11, each writing profile `d<key>`. */
function joinScattered(from: number, n: number): { keys: string[]; compute: MembershipCompute } {
  const keys = Array.from({ length: n }, (_, k) => `mpid:${(((from + k) * 2654435761) >>> 0) % 1000003}`);
  return {
    keys,
    compute: () => keys.map((userKey) => ({
      userKey,
      membership: { audiences: [{ id: '11', name: 'A11' }], targets: [`d${userKey}`] },
      profileSets: [{ distinctId: `d${userKey}`, props: { SegmentMembership: "'11'", 'In A11': true } }],
    })),
  };
}

describe('SQLite store file', function () {
  this.timeout(60000);
  let dir: string;
  let file: string;
  let store: SyncStore | undefined;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mp-sqlite-file-'));
    file = path.join(dir, 'sync.db');
  });
  afterEach(async () => {
    await store?.close();
    store = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a second process on the same file while the first has it open, and lets it in after', async () => {
    store = openSqliteStore(file);
    const probe = `require('tsx/cjs'); const { openSqliteStore } = require(${JSON.stringify(path.resolve(__dirname, '../../src/store/sqlite'))});
      try { const s = openSqliteStore(${JSON.stringify(file)}); s.close().then(() => console.log('opened')); }
      catch (e) { console.log(e.code + ': ' + e.message); }`;
    const second = (): string => execFileSync(process.execPath, ['-e', probe], { encoding: 'utf8' }).trim();
    const refused = second();
    expect(refused).to.match(/^STORE_UNAVAILABLE: /);
    expect(refused).to.include('another process is using it').and.include('redis backend');
    await store.close();
    store = undefined;
    expect(second()).to.equal('opened');
  });

  it('keeps the WAL bounded under a steady stream of scattered writes, and loses nothing across a reopen', async () => {
    store = openSqliteStore(file);
    let accepted = 0;
    for (let i = 0; i < 60000; i += 1000) {
      const { keys, compute } = joinScattered(i, 1000);
      accepted += (await store.audience.updateMemberships('s', keys, compute, 1000 + i)).length;
      // What the event loop does between messages: the checkpointer's timer gets its turn.
      await new Promise((r) => setTimeout(r, 5));
    }
    // 60,000 scattered users dirty far more than 64,000 pages' worth of WAL frames: without checkpoints that reach
    // the database file and a WAL that starts over, it would be several hundred MB.
    expect(fs.statSync(`${file}-wal`).size).to.be.below(128 * 1024 * 1024);
    const before = await store.audience.stats('s');
    expect(before).to.deep.include({ accepted, pending: accepted });
    await store.close();
    store = openSqliteStore(file);
    expect(await store.audience.stats('s')).to.deep.include({ accepted, pending: accepted });
    const { keys } = joinScattered(59999, 1);
    let seen = 0;
    await store.audience.updateMemberships('s', keys, (cur) => { seen = cur.size; return []; }, 99999);
    expect(seen).to.equal(1);
  });

  it('hands checkpoints back to SQLite when the worker fails, so the WAL still stays bounded', async () => {
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('wal_autocheckpoint = 0');
    db.exec('CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID');
    const errors: string[] = [];
    // The worker cannot open this file, as when the disk or the driver fails it.
    const ck = new BackgroundCheckpointer(db, path.join(dir, 'missing', 'nowhere.db'), { onError: (m) => errors.push(m) });
    try {
      for (let i = 0; i < 100 && errors.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(errors).to.have.length(1);
      const put = db.prepare('INSERT OR REPLACE INTO t VALUES (?, ?)');
      for (let i = 0; i < 60; i++) {
        db.transaction(() => { for (let k = 0; k < 1000; k++) put.run(`k${((i * 1000 + k) * 2654435761) >>> 0}`, 'x'.repeat(100)); })();
      }
      // 60,000 scattered rows: without any checkpoint the WAL would hold every page written, about 100 MB.
      expect(fs.statSync(`${file}-wal`).size).to.be.below(40 * 1024 * 1024);
    } finally {
      await ck.close();
      db.close();
    }
  });

  it('stops checkpointing on the main thread once the WAL is all copied back and nothing is written', async () => {
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('wal_autocheckpoint = 0');
    db.exec('CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID');
    // Counts the checkpoints this connection (the main thread's) runs.
    let mainCheckpoints = 0;
    const pragma = db.pragma.bind(db);
    db.pragma = ((source: string, options?: Database.PragmaOptions) => {
      if (source.startsWith('wal_checkpoint')) mainCheckpoints += 1;
      return pragma(source, options);
    }) as typeof db.pragma;
    const ck = new BackgroundCheckpointer(db, file, { restartFrames: 200 });
    try {
      const put = db.prepare('INSERT OR REPLACE INTO t VALUES (?, ?)');
      db.transaction(() => { for (let k = 0; k < 20000; k++) put.run(`k${(k * 2654435761) >>> 0}`, 'x'.repeat(100)); })();
      // The worker copies the WAL back, then the main thread finds it all copied (once).
      for (let i = 0; i < 100 && mainCheckpoints === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(mainCheckpoints, 'the main thread checked the copied WAL').to.equal(1);
      // Nothing written for 600 ms: the WAL cannot start over, so there is nothing to do (it used to run every 50 ms).
      await new Promise((r) => setTimeout(r, 600));
      expect(mainCheckpoints).to.equal(1);
      // A write starts the WAL over; a new stretch of writes is checked again.
      for (let i = 0; i < 5; i++) db.transaction(() => { for (let k = 0; k < 3000; k++) put.run(`n${i}-${(k * 2654435761) >>> 0}`, 'y'.repeat(100)); })();
      for (let i = 0; i < 100 && mainCheckpoints === 1; i++) await new Promise((r) => setTimeout(r, 20));
      expect(mainCheckpoints).to.be.above(1);
    } finally {
      await ck.close();
      db.close();
    }
  });

  it('closing folds every log into its table: a file closed cleanly reads complete without them (older versions)', async () => {
    // Nothing is folded while open (foldAt far above what is written): everything waits in the logs until close.
    store = openSqliteStore(file, { foldAt: 1_000_000 });
    const { keys, compute } = joinScattered(0, 50);
    await store.audience.updateMemberships('s', keys, compute, 1);
    await store.cohorts.stageMembersPage('p/c', 'S', 1, 2, [{ distinctId: 'x' }, { distinctId: 'y', mpid: '5' }], 1);
    await store.identities.learn([{ mpid: '7', customer_id: 'c7', email: 'a@x.y' }], 1);
    const count = (db: Database.Database, table: string) => (db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
    const read = () => {
      const db = new Database(file, { readonly: true });
      try {
        return ['aud_members_log', 'aud_members', 'coh_members_log', 'coh_members', 'id_log', 'id_links', 'id_profiles']
          .map((t) => `${t} ${count(db, t)}`);
      } finally {
        db.close();
      }
    };
    expect(read()).to.deep.equal(['aud_members_log 50', 'aud_members 0', 'coh_members_log 2', 'coh_members 0', 'id_log 4', 'id_links 0', 'id_profiles 0']);
    await store.close();
    store = undefined;
    expect(read()).to.deep.equal(['aud_members_log 0', 'aud_members 50', 'coh_members_log 0', 'coh_members 2', 'id_log 0', 'id_links 3', 'id_profiles 1']);
  });
});
