import path from 'node:path';
import { expect } from 'chai';
import Database from 'better-sqlite3';
import type { IdentityMap } from '../../src/identity/types';
import { parseIdentityInput } from '../../src/identity/parse';
import { openSqliteStore } from '../../src/store/sqlite';
import { IDENTITY_READS, SqliteIdentityStore } from '../../src/store/sqlite/identities';
import { SqliteReadWorker } from '../../src/store/sqlite/read-worker';
import { cleanupTempDirs, tempDir } from '../helpers/node-red';

const T0 = 1_700_000_000_000;

/**
 * Big resolves read on a worker thread (read-worker.ts), whose connection sees the file and not the store's memory.
 * What a user relies on: the same answers as reads on the main thread, whatever is folded or not, even when a learn
 * lands while the worker reads, and even when the worker dies.
 */
describe('SQLite identity resolve on the read worker', function () {
  this.timeout(60000);
  let file: string;
  let db: Database.Database | undefined;
  let reader: SqliteReadWorker | undefined;

  beforeEach(() => {
    file = path.join(tempDir('mp-read-worker-'), 'sync.db');
  });
  afterEach(async () => {
    await reader?.close();
    db?.close();
    reader = undefined;
    db = undefined;
    cleanupTempDirs();
  });

  /** The identity store on a WAL file, as openSqliteStore makes it, with a worker that every resolve uses. */
  function open(foldAt: number): SqliteIdentityStore {
    db = new Database(file);
    db.pragma('journal_mode = WAL');
    reader = new SqliteReadWorker(file, IDENTITY_READS);
    return new SqliteIdentityStore(db, { foldAt, readWorkerFrom: 1 }, reader);
  }

  const items = (maps: Array<Record<string, string>>): IdentityMap[] => parseIdentityInput(maps).items;

  it('answers a big array from the worker exactly as the main thread does, with links folded and not', async () => {
    const store = open(500);
    for (let from = 0; from < 1600; from += 400) {
      await store.learn(items(Array.from({ length: 400 }, (_, k) => ({ mpid: String(9000 + from + k), customer_id: `c${from + k}`, email: `u${from + k}@x.io` }))), T0 + from);
    }
    // Some profiles move on after their links were folded: a link in the table, the profile's latest part in memory.
    await store.learn(items(Array.from({ length: 50 }, (_, k) => ({ mpid: String(9000 + k * 3), ios_idfv: `V${k}` }))), T0 + 5000);
    // 3,270 link ids: two statements (RESOLVE_CHUNK is 2,000).
    const lookups = items([
      ...Array.from({ length: 1600 }, (_, k) => [{ email: `u${k}@x.io`, ios_idfv: `V${k % 70}` }, { customer_id: `c${k}` }]).flat(),
      { customer_id: 'nobody' },
    ]);

    const onMainThread = await store.resolve(lookups); // the first big resolve starts the worker and does not wait
    expect(store.answeredByWorker).to.equal(0);
    expect(await store.readerReady()).to.equal(true);
    const onWorker = await store.resolve(lookups);
    expect(store.answeredByWorker).to.equal(1);
    expect(onWorker).to.deep.equal(onMainThread);
    expect(onWorker[3200]).to.equal(undefined);
    expect(onWorker[0]).to.deep.equal({ matchedBy: 'email', profile: { key: '9000', mpid: '9000', identities: { customer_id: 'c0', email: 'u0@x.io', ios_idfv: 'V0' } } });
    expect(onWorker[7]).to.deep.equal({ matchedBy: 'customer_id', profile: { key: '9003', mpid: '9003', identities: { customer_id: 'c3', email: 'u3@x.io', ios_idfv: 'V1' } } });
    for (let k = 0; k < 1600; k++) expect(onWorker[2 * k + 1]!.profile.key, `c${k}`).to.equal(String(9000 + k));
  });

  it('reads again on the main thread when a learn lands while the worker reads', async () => {
    const store = open(2);
    await store.learn(items([{ mpid: '1', customer_id: 'c1' }]), T0);
    store.foldAll(); // c1 → profile 1 is in the table only
    expect(await store.readerReady()).to.equal(true);

    const pending = store.resolve(items([{ customer_id: 'c1' }]));
    // c1 moves to profile 2 before the worker's rows come back; the worker still sees c1 → 1 in the table.
    await store.learn(items([{ mpid: '2', customer_id: 'c1' }]), T0 + 1);
    const [match] = await pending;
    expect(match).to.deep.equal({ matchedBy: 'customer_id', profile: { key: '2', mpid: '2', identities: { customer_id: 'c1' } } });
    expect(store.answeredByWorker).to.equal(0);
    // With nothing landing meanwhile, the worker's rows are used.
    expect(await store.resolve(items([{ customer_id: 'c1' }]))).to.deep.equal([match]);
    expect(store.answeredByWorker).to.equal(1);
  });

  it('keeps answering on the main thread once the worker is gone, also the read it was doing', async () => {
    const store = open(2);
    await store.learn(items([{ mpid: '1', customer_id: 'c1' }, { mpid: '2', email: 'b@x.io' }]), T0);
    store.foldAll();
    expect(await store.readerReady()).to.equal(true);
    const lookups = items([{ email: 'b@x.io' }, { customer_id: 'c1' }, { customer_id: 'c9' }]);
    const pending = store.resolve(lookups);
    await reader!.crashForTest();
    const expected = [
      { matchedBy: 'email', profile: { key: '2', mpid: '2', identities: { email: 'b@x.io' } } },
      { matchedBy: 'customer_id', profile: { key: '1', mpid: '1', identities: { customer_id: 'c1' } } },
      undefined,
    ];
    expect(await pending).to.deep.equal(expected);
    expect(await store.resolve(lookups)).to.deep.equal(expected);
    expect(store.answeredByWorker).to.equal(0);
    expect(await store.readerReady()).to.equal(false);
  });

  it('starts with the first big resolve of an open store and stops when the store closes', async () => {
    const store = openSqliteStore(file, { readWorkerFrom: 1 });
    const identities = store.identities as SqliteIdentityStore;
    await identities.learn(items([{ mpid: '1', customer_id: 'c1' }]), T0);
    expect(await identities.readerReady()).to.equal(true);
    expect(await identities.resolve(items([{ customer_id: 'c1' }]))).to.have.nested.property('[0].profile.key', '1');
    expect(identities.answeredByWorker).to.equal(1);
    await store.close();
    expect(await identities.readerReady()).to.equal(false);
    // The file is whole after the close: a new store finds the profile.
    const again = openSqliteStore(file);
    try {
      expect(await again.identities.resolve(items([{ customer_id: 'c1' }]))).to.have.nested.property('[0].profile.key', '1');
    } finally {
      await again.close();
    }
  });
});
