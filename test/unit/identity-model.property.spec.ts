import path from 'node:path';
import { expect } from 'chai';
import fc from 'fast-check';
import { parseIdentityInput } from '../../src/identity/parse';
import type { IdentityMatch } from '../../src/identity/types';
import { openMemoryStore } from '../../src/store/memory';
import { openSqliteStore } from '../../src/store/sqlite';
import type { SqliteIdentityStore } from '../../src/store/sqlite/identities';
import type { SyncStore } from '../../src/store/types';
import { cleanupTempDirs, tempDir } from '../helpers/node-red';

/**
 * Random histories of learnt observations over a few identities (so profiles merge, identities move between MPIDs and
 * anonymous profiles are re-keyed), run against the memory store and against a SQLite file (its log folded at once,
 * never, or now and then) that is closed and reopened along the way. Both apply the same rules (plan.ts), so after every step each
 * identity must resolve the same way in both: same profile (anonymous keys compared by shape), same MPID, same
 * identities, matched by the same name.
 */
const IDS = {
  mpid: ['11', '12', '13'],
  customer_id: ['c1', 'c2', 'c3'],
  email: ['a@x.io', 'b@x.io', 'c@x.io'],
  ios_idfv: ['6B1D0E3A-0000-4000-8000-000000000001', '6B1D0E3A-0000-4000-8000-000000000002'],
} as const;
type Name = keyof typeof IDS;
const NAMES = Object.keys(IDS) as Name[];

const observation = fc.record(
  Object.fromEntries(NAMES.map((n) => [n, fc.constantFrom(...IDS[n])])) as { [K in Name]: fc.Arbitrary<string> },
  { requiredKeys: [] },
).filter((o) => Object.keys(o).length > 0);

// A learn call holds one observation that may lack an MPID and up to two more that have one. Why: anonymous
// profiles made in the same call share createdAt, and a later merge of two of them is decided by their random keys,
// which differ between the two stores; with one per call the older one always wins, in both.
type Step = { t: 'learn'; observations: Array<Partial<Record<Name, string>>> } | { t: 'reopen' };
const withMpid = fc.tuple(observation, fc.constantFrom(...IDS.mpid)).map(([o, mpid]) => ({ ...o, mpid }));
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ t: fc.constant('learn' as const), observations: fc.tuple(observation, fc.array(withMpid, { maxLength: 2 })).map(([first, rest]) => [first, ...rest]) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'reopen' as const }) },
);

/** Every single identity of the universe as a lookup, normalised the way the node normalises input. */
const LOOKUPS = parseIdentityInput(NAMES.flatMap((n) => IDS[n].map((v) => ({ [n]: v })))).items;

/** Resolve results with anonymous keys numbered by first appearance, so two stores' random UUIDs compare equal. */
function canonical(matches: Array<IdentityMatch | undefined>): unknown[] {
  const anon = new Map<string, string>();
  return matches.map((m) => {
    if (!m) return null;
    const key = m.profile.key.startsWith('anon:') ? (anon.get(m.profile.key) ?? anon.set(m.profile.key, `anon#${anon.size}`).get(m.profile.key)) : m.profile.key;
    return { key, mpid: m.profile.mpid ?? null, identities: m.profile.identities, matchedBy: m.matchedBy };
  });
}

describe('property: the SQLite identity graph, folded and reopened, resolves like the memory store', function () {
  this.timeout(120000);
  afterEach(() => cleanupTempDirs());

  it('after every learn, every identity resolves the same way in both stores', async () => {
    const dir = tempDir();
    let run = 0;
    // foldAt 2: every learn is folded at once (reads hit the tables); 1,000,000: nothing is (reads hit memory, a
    // reopen replays the log); 8: both, so a link in the table can point to a profile changed in memory. With the
    // worker, every resolve reads the tables on the read worker (read-worker.ts) and memory on the main thread.
    await fc.assert(fc.asyncProperty(fc.constantFrom(2, 8, 1_000_000), fc.boolean(), fc.array(step, { minLength: 1, maxLength: 25 }), async (foldAt, worker, steps) => {
      const file = path.join(dir, `i${run++}.db`);
      const model = openMemoryStore();
      const openSqlite = async (): Promise<SyncStore> => {
        const store = openSqliteStore(file, { foldAt, readWorkerFrom: worker ? 1 : undefined });
        if (worker) expect(await (store.identities as SqliteIdentityStore).readerReady()).to.equal(true);
        return store;
      };
      let sqlite = await openSqlite();
      let onWorker = 0;
      try {
        let now = 1_700_000_000_000;
        for (const s of steps) {
          if (s.t === 'reopen') {
            onWorker += (sqlite.identities as SqliteIdentityStore).answeredByWorker;
            await sqlite.close();
            sqlite = await openSqlite();
            continue;
          }
          const items = parseIdentityInput(s.observations).items;
          now += 1000;
          const [a, b] = [await model.identities.learn(items, now), await sqlite.identities.learn(items, now)];
          expect(b.map((p) => p?.mpid ?? null)).to.deep.equal(a.map((p) => p?.mpid ?? null));
          expect(canonical(await sqlite.identities.resolve(LOOKUPS))).to.deep.equal(canonical(await model.identities.resolve(LOOKUPS)));
        }
        onWorker += (sqlite.identities as SqliteIdentityStore).answeredByWorker;
        expect(onWorker, 'resolves answered from the worker').to.equal(worker ? steps.filter((s) => s.t === 'learn').length : 0);
        expect(await sqlite.identities.profileCount()).to.equal(await model.identities.profileCount());
      } finally {
        await sqlite.close();
        await model.close();
      }
    }), { numRuns: 90 });
  });
});
