import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import Database from 'better-sqlite3';
import type { MembershipCompute, OutboxItem, UserMembership } from '../../src/store/audience-store';
import type { SyncStore } from '../../src/store/types';
import { openMemoryStore } from '../../src/store/memory';
import { openSqliteStore } from '../../src/store/sqlite';
import { openRedisStore } from '../../src/store/redis';
import { IDENTITY_NAMES, type IdentityName } from '../../src/identity/names';
import type { IdentityMap } from '../../src/identity/types';
import { redisTestUrl } from '../helpers/redis';
import { encodeEngageUpdate, toEngageUpdate } from '../../src/audience/sender';

/**
 * One contract, three backends. Each backend factory opens stores on the same data: `open()` twice gives two
 * Redis connections (what two Node-RED instances do); SQLite and memory are one-process stores, so there the
 * second handle is the same store and the concurrency tests exercise concurrent calls of one process.
 */
export interface BackendFactory {
  name: string;
  open(): Promise<SyncStore>;
  /** A fresh, empty data set for the next test. */
  reset(): Promise<void>;
  after?(): Promise<void>;
}

// ---- Redis for tests: test/helpers/redis.ts ---------------------------------------------------------------------

let prefixSeq = 0;
const runId = `${process.pid}-${Date.now().toString(36)}`;

export const factories: BackendFactory[] = (() => {
  const opened: SyncStore[] = [];
  const track = (s: SyncStore) => { opened.push(s); return s; };
  const closeAll = async () => { for (const s of opened.splice(0)) await s.close(); };

  let mem: SyncStore | undefined;
  let dir = '';
  let file = '';
  let url = '';
  let prefix = '';
  return [
    {
      name: 'memory',
      async open() { return (mem ??= openMemoryStore()); },
      async reset() { mem = undefined; },
    },
    ...([
      ['sqlite', {}],
      // The same, with every threshold tiny: logs folded every two keys (LogFold), the outbox switching between memory
      // and its index at every other row (OutboxLocator).
      ['sqlite, tiny thresholds', { foldAt: 2, outboxIndexAt: 2, outboxDropIndexAt: 1 }],
    ] as const).map(([name, opts]): BackendFactory => ({
      name,
      // One handle per file (the SQLite store locks its file against a second process): "two handles" share it.
      async open() { return opened[0] ?? track(openSqliteStore(file, opts)); },
      async reset() {
        await closeAll();
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
        dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpsync-store-'));
        file = path.join(dir, 'store.db');
      },
      async after() { await closeAll(); if (dir) fs.rmSync(dir, { recursive: true, force: true }); },
    })),
    {
      name: 'redis',
      async open() {
        url ||= await redisTestUrl();
        const s = track(openRedisStore({ url, keyPrefix: prefix }));
        await s.ping(); // fail, do not skip, when REDIS_URL is set but nothing answers
        return s;
      },
      async reset() { await closeAll(); prefix = `test:${runId}:${++prefixSeq}:`; },
      async after() { await closeAll(); },
    },
  ];
})();

// ---- helpers ----------------------------------------------------------------------------------------------------
const T0 = 1_700_000_000_000;

function addAudience(userKey: string, id: string, targets: string[]): MembershipCompute {
  return (current) => {
    // Pure, as the contract asks (the compute may run again): never mutate `current`.
    const m: UserMembership = structuredClone(current.get(userKey)) ?? { audiences: [], targets: [] };
    if (!m.audiences.some((a) => a.id === id)) m.audiences.push({ id, name: `A${id}` });
    for (const t of targets) if (!m.targets.includes(t)) m.targets.push(t);
    const seg = m.audiences.map((a) => `'${a.id}'`).join(',');
    return [{ userKey, membership: m, profileSets: targets.map((t) => ({ distinctId: t, props: { SegmentMembership: seg, [`In A${id}`]: true } })) }];
  };
}

function removeAudience(userKey: string, id: string): MembershipCompute {
  return (current) => {
    const m: UserMembership = structuredClone(current.get(userKey)) ?? { audiences: [], targets: [] };
    m.audiences = m.audiences.filter((a) => a.id !== id);
    const seg = m.audiences.map((a) => `'${a.id}'`).join(',');
    return [{ userKey, membership: m, profileSets: m.targets.map((t) => ({ distinctId: t, props: { SegmentMembership: seg, [`In A${id}`]: false } })) }];
  };
}

async function checkIdentity(store: SyncStore, scope: string) {
  const s = await store.audience.stats(scope);
  expect(s.accepted, JSON.stringify(s)).to.equal(s.acked + s.dead + s.pending);
  return s;
}

function sampleValue(name: IdentityName, i: number): string {
  if (name === 'mpid') return String(7346244611012968789n + BigInt(i));
  if (name === 'email') return `user${i}@example.com`;
  if (name === 'ios_advertising_id' || name === 'ios_idfv') return `AAAAAAAA-0000-4000-8000-${String(i).padStart(12, '0')}`;
  if (name === 'android_advertising_id') return `bbbbbbbb-0000-4000-8000-${String(i).padStart(12, '0')}`;
  return `${name}-${i}`;
}

// ---- the contract -----------------------------------------------------------------------------------------------
export function storeContract(f: BackendFactory): void {
  describe(`store contract: ${f.name}`, function () {
    this.timeout(30000);
    let store: SyncStore;
    beforeEach(async () => {
      await f.reset();
      store = await f.open();
    });
    after(async () => { await f.after?.(); });

    describe('audience', () => {
      it('stores membership, computes against the stored state and lists members in key order', async () => {
        await store.audience.updateMemberships('s', ['u2'], addAudience('u2', '11', ['d2']), T0);
        await store.audience.updateMemberships('s', ['u1'], addAudience('u1', '11', ['d1']), T0);
        await store.audience.updateMemberships('s', ['u1'], addAudience('u1', '12', ['d1']), T0);
        let seen: Map<string, UserMembership> | undefined;
        await store.audience.updateMemberships('s', ['u1', 'nobody'], (cur) => { seen = cur; return []; }, T0);
        expect(seen!.has('nobody')).to.equal(false);
        expect(seen!.get('u1')!.audiences.map((a) => a.id)).to.deep.equal(['11', '12']);
        expect(seen!.get('u1')!.targets).to.deep.equal(['d1']);
        expect(await store.audience.membersOfAudience('s', '11', undefined, 10)).to.deep.equal(['u1', 'u2']);
        expect(await store.audience.membersOfAudience('s', '11', 'u1', 10)).to.deep.equal(['u2']);
        expect(await store.audience.membersOfAudience('s', '11', undefined, 1)).to.deep.equal(['u1']);
        expect(await store.audience.membersOfAudience('s', '12', undefined, 10)).to.deep.equal(['u1']);
        await store.audience.updateMemberships('s', ['u1'], removeAudience('u1', '11'), T0);
        expect(await store.audience.membersOfAudience('s', '11', undefined, 10)).to.deep.equal(['u2']);
        expect(await store.audience.membersOfAudience('other-scope', '11', undefined, 10)).to.deep.equal([]);
      });

      it('forgets a user whose membership and targets are empty', async () => {
        await store.audience.updateMemberships('s', ['u1'], addAudience('u1', '11', []), T0);
        await store.audience.updateMemberships('s', ['u1'], removeAudience('u1', '11'), T0);
        let seen: Map<string, UserMembership> | undefined;
        await store.audience.updateMemberships('s', ['u1'], (cur) => { seen = cur; return []; }, T0);
        expect(seen!.size).to.equal(0);
        expect(await store.audience.membersOfAudience('s', '11', undefined, 10)).to.deep.equal([]);
      });

      it('coalesces profile sets: one row per profile, last write wins per property, versions increase', async () => {
        const v1 = await store.audience.updateMemberships('s', ['u1'], addAudience('u1', '11', ['d1']), T0);
        const v2 = await store.audience.updateMemberships('s', ['u1'], addAudience('u1', '12', ['d1']), T0 + 5);
        expect(v1).to.have.length(1);
        expect(v2[0].version).to.be.greaterThan(v1[0].version);
        const s = await checkIdentity(store, 's');
        expect(s).to.deep.include({ accepted: 2, pending: 2, profiles: 1 });
        const [item] = await store.audience.claimDue('s', 10, T0 + 10, 1000);
        expect(item.props).to.deep.equal({ SegmentMembership: "'11','12'", 'In A11': true, 'In A12': true });
        expect(item).to.deep.include({ distinctId: 'd1', version: v2[0].version, count: 2, attempts: 0, queuedAt: T0 });
      });

      it('a claimed item encodes to exactly the update its props make, whatever the characters', async () => {
        const odd = 'quote " backslash \\ slash / </script> tab \t NUL \u0000 é 日本 😀 \u2028';
        const props = { SegmentMembership: "'11'", [`In ${odd}`]: true, 'In other': false, [odd]: odd, __proto__x: 'y' };
        await store.audience.updateMemberships('s', ['u1'], () => [
          { userKey: 'u1', membership: { audiences: [{ id: '11', name: 'x' }], targets: [odd] }, profileSets: [{ distinctId: odd, props }] },
        ], T0);
        const [item] = await store.audience.claimDue('s', 10, T0, 1000);
        const token = 'tok"en\\';
        const expected = toEngageUpdate(token, { distinctId: odd, props });
        const text = encodeEngageUpdate(token, JSON.stringify(token), item);
        expect(JSON.parse(text)).to.deep.equal(expected);
        expect(Object.keys(JSON.parse(text) as object)).to.deep.equal(Object.keys(expected)); // same field order
        expect(item.props).to.deep.equal(props);
      });

      it('claims due items oldest first, leases them, and gives them out again after the lease', async () => {
        await store.audience.updateMemberships('s', ['u1'], addAudience('u1', '11', ['d1']), T0);
        await store.audience.updateMemberships('s', ['u2'], addAudience('u2', '11', ['d2']), T0 + 1);
        await store.audience.updateMemberships('s', ['u3'], addAudience('u3', '11', ['d3']), T0 + 50);
        expect(await store.audience.claimDue('s', 10, T0 - 1, 1000)).to.deep.equal([]);
        const first = await store.audience.claimDue('s', 2, T0 + 100, 1000);
        expect(first.map((i) => i.distinctId)).to.deep.equal(['d1', 'd2']);
        const second = await store.audience.claimDue('s', 10, T0 + 100, 1000);
        expect(second.map((i) => i.distinctId)).to.deep.equal(['d3']);
        expect(await store.audience.claimDue('s', 10, T0 + 500, 1000)).to.deep.equal([]);
        expect(await store.audience.nextDueAt('s')).to.equal(T0 + 1100);
        const again = await store.audience.claimDue('s', 10, T0 + 1100, 1000);
        expect(again.map((i) => i.distinctId).sort()).to.deep.equal(['d1', 'd2', 'd3']);
        expect(await store.audience.nextDueAt('empty-scope')).to.equal(undefined);
      });

      it('ack removes an unchanged item and keeps a newer version due now', async () => {
        await store.audience.updateMemberships('s', ['u1'], addAudience('u1', '11', ['d1', 'd2']), T0);
        const items = await store.audience.claimDue('s', 10, T0, 60000);
        expect(items).to.have.length(2);
        await store.audience.updateMemberships('s', ['u1'], addAudience('u1', '12', ['d2']), T0 + 10);
        await store.audience.ack('s', items, T0 + 20);
        let s = await checkIdentity(store, 's');
        expect(s).to.deep.include({ accepted: 3, acked: 2, pending: 1, profiles: 1 });
        const [rest] = await store.audience.claimDue('s', 10, T0 + 20, 60000);
        expect(rest).to.deep.include({ distinctId: 'd2', count: 1, attempts: 0, queuedAt: T0 + 20 });
        expect(rest.props.SegmentMembership).to.equal("'11','12'");
        await store.audience.ack('s', [rest], T0 + 30);
        await store.audience.ack('s', [rest], T0 + 30); // acknowledged twice: counts once
        s = await checkIdentity(store, 's');
        expect(s).to.deep.include({ accepted: 3, acked: 3, pending: 0, profiles: 0 });
        expect(await store.audience.nextDueAt('s')).to.equal(undefined);
      });

      it('retryLater counts an attempt and makes the item due at the given time', async () => {
        await store.audience.updateMemberships('s', ['u1'], addAudience('u1', '11', ['d1']), T0);
        const items = await store.audience.claimDue('s', 10, T0, 60000);
        await store.audience.retryLater('s', items, T0 + 2000);
        expect(await store.audience.nextDueAt('s')).to.equal(T0 + 2000);
        expect(await store.audience.claimDue('s', 10, T0 + 1999, 60000)).to.deep.equal([]);
        const [again] = await store.audience.claimDue('s', 10, T0 + 2000, 60000);
        expect(again.attempts).to.equal(1);
        await checkIdentity(store, 's');
      });

      it('bury dead-letters the sent version and keeps a newer one pending', async () => {
        await store.audience.updateMemberships('s', ['u1'], addAudience('u1', '11', ['d1', 'd2']), T0);
        const items = await store.audience.claimDue('s', 10, T0, 60000);
        await store.audience.updateMemberships('s', ['u1'], addAudience('u1', '12', ['d2']), T0 + 1);
        await store.audience.bury('s', items.map((item) => ({ item, reason: 'rejected: 400' })), T0 + 5);
        const s = await checkIdentity(store, 's');
        expect(s).to.deep.include({ accepted: 3, acked: 0, dead: 2, pending: 1, profiles: 1 });
        const dead = await store.audience.deadLetters('s', 10);
        expect(dead).to.have.length(2);
        expect(dead[0]).to.deep.include({ reason: 'rejected: 400', at: T0 + 5 });
        expect(dead.map((d) => d.distinctId).sort()).to.deep.equal(['d1', 'd2']);
        expect(await store.audience.deadLetters('s', 1)).to.have.length(1);
        const [left] = await store.audience.claimDue('s', 10, T0 + 5, 60000);
        expect(left).to.deep.include({ distinctId: 'd2', count: 1 });
      });

      it('keeps accepted = acked + dead + pending through a mixed run', async () => {
        for (let i = 0; i < 30; i++) {
          await store.audience.updateMemberships('s', [`u${i % 7}`], addAudience(`u${i % 7}`, String(i % 3), [`d${i % 5}`]), T0 + i);
        }
        let now = T0 + 100;
        for (let round = 0; round < 6; round++) {
          const items = await store.audience.claimDue('s', 3, now, 10);
          if (round % 3 === 0) await store.audience.ack('s', items, now);
          else if (round % 3 === 1) await store.audience.retryLater('s', items, now + 5);
          else await store.audience.bury('s', items.map((item) => ({ item, reason: 'x' })), now);
          await store.audience.updateMemberships('s', ['u1'], addAudience('u1', String(round + 10), ['d1']), now);
          await checkIdentity(store, 's');
          now += 20;
        }
        const s = await checkIdentity(store, 's');
        expect(s.accepted).to.equal(36);
      });

      if (f.name !== 'redis') {
        it('recoverLeases (embedded: one process per file) makes every lease due now', async () => {
          await store.audience.updateMemberships('s', ['u1'], addAudience('u1', '11', ['d1']), T0);
          await store.audience.claimDue('s', 10, T0, 60000);
          await store.audience.recoverLeases('s', T0 + 1);
          expect(await store.audience.claimDue('s', 10, T0 + 1, 60000)).to.have.length(1);
        });
      }

      it('50 parallel updateMemberships on one user from two handles keep every change', async () => {
        const other = await f.open();
        const jobs = [];
        for (let i = 0; i < 50; i++) {
          const s = i % 2 ? other : store;
          jobs.push(s.audience.updateMemberships('s', ['u1'], addAudience('u1', `a${i}`, ['d1']), T0 + i));
        }
        const versions = (await Promise.all(jobs)).flat();
        expect(new Set(versions.map((v) => v.version)).size).to.equal(50);
        let seen: UserMembership | undefined;
        await store.audience.updateMemberships('s', ['u1'], (cur) => { seen = cur.get('u1'); return []; }, T0);
        expect(seen!.audiences.map((a) => a.id).sort()).to.deep.equal(Array.from({ length: 50 }, (_, i) => `a${i}`).sort());
        const s = await checkIdentity(store, 's');
        expect(s).to.deep.include({ accepted: 50, pending: 50, profiles: 1 });
        const [item] = await other.audience.claimDue('s', 10, T0 + 100, 1000);
        expect(item.count).to.equal(50);
        expect(Object.keys(item.props).filter((k) => k.startsWith('In '))).to.have.length(50);
      });

      it('two senders never claim the same item', async () => {
        const other = await f.open();
        for (let i = 0; i < 40; i++) await store.audience.updateMemberships('s', [`u${i}`], addAudience(`u${i}`, '1', [`d${i}`]), T0);
        const claims = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? other : store).audience.claimDue('s', 7, T0 + 1, 60000)));
        const ids = claims.flat().map((it: OutboxItem) => it.distinctId);
        expect(ids).to.have.length(40);
        expect(new Set(ids).size).to.equal(40);
      });
    });

    describe('identities', () => {
      it('links the identities seen together and finds the profile by each of them', async () => {
        const all: IdentityMap = {};
        for (const n of IDENTITY_NAMES) all[n] = sampleValue(n, 1);
        const [p] = await store.identities.learn([all], T0);
        expect(p!.key).to.equal(all.mpid);
        expect(p!.mpid).to.equal(all.mpid);
        for (const n of IDENTITY_NAMES) {
          const [m] = await store.identities.resolve([{ [n]: all[n] }]);
          expect(m, n).to.not.equal(undefined);
          expect(m!.profile.key, n).to.equal(all.mpid);
          expect(m!.matchedBy).to.equal(n);
        }
        const [none] = await store.identities.resolve([{ email: 'nobody@example.com' }]);
        expect(none).to.equal(undefined);
        expect(await store.identities.profileCount()).to.equal(1);
      });

      it('keys a profile without an MPID as anon:<uuid> and re-keys it by MPID when one arrives', async () => {
        const [anon] = await store.identities.learn([{ ios_idfv: 'IDFV-1', email: 'a@example.com' }], T0);
        expect(anon!.key).to.match(/^anon:[0-9a-f-]{36}$/);
        expect(anon!.mpid).to.equal(undefined);
        const [known] = await store.identities.learn([{ mpid: '-42', customer_id: 'c1', ios_idfv: 'IDFV-1' }], T0 + 1);
        expect(known).to.deep.equal({ key: '-42', mpid: '-42', identities: { customer_id: 'c1', email: 'a@example.com', ios_idfv: 'IDFV-1' } });
        expect(await store.identities.profileCount()).to.equal(1);
        const [m] = await store.identities.resolve([{ email: 'a@example.com' }]);
        expect(m!.profile.key).to.equal('-42');
      });

      it('merges two known anonymous profiles into the older one', async () => {
        const [a] = await store.identities.learn([{ ios_idfv: 'IDFV-A' }], T0);
        const [b] = await store.identities.learn([{ android_uuid: 'droid-b', email: 'b@example.com' }], T0 + 10);
        const [merged] = await store.identities.learn([{ ios_idfv: 'IDFV-A', email: 'b@example.com' }], T0 + 20);
        expect(merged!.key).to.equal(a!.key);
        expect(merged!.key).to.not.equal(b!.key);
        expect(merged!.identities).to.deep.equal({ ios_idfv: 'IDFV-A', email: 'b@example.com', android_uuid: 'droid-b' });
        const found = await store.identities.resolve([{ android_uuid: 'droid-b' }, { ios_idfv: 'IDFV-A' }]);
        expect(found.map((m) => m!.profile.key)).to.deep.equal([a!.key, a!.key]);
        expect(await store.identities.profileCount()).to.equal(1);
      });

      it('never merges two MPIDs: the identity moves to the profile that claimed it last', async () => {
        await store.identities.learn([{ mpid: '1', email: 'shared@example.com', customer_id: 'c1' }], T0);
        await store.identities.learn([{ mpid: '2', email: 'shared@example.com' }], T0 + 1);
        const [byEmail, byCustomer, one] = await store.identities.resolve([{ email: 'shared@example.com' }, { customer_id: 'c1' }, { mpid: '1' }]);
        expect(byEmail!.profile.mpid).to.equal('2');
        expect(byCustomer!.profile.mpid).to.equal('1');
        expect(one!.profile.identities).to.deep.equal({ customer_id: 'c1' });
        expect(await store.identities.profileCount()).to.equal(2);
      });

      it('an anonymous observation touching an MPID profile joins it; the newest value of a type wins, old ones still resolve', async () => {
        await store.identities.learn([{ mpid: '5', ios_idfv: 'OLD' }], T0);
        const [p] = await store.identities.learn([{ ios_idfv: 'OLD', push_token: 'tok' }, { mpid: '5', ios_idfv: 'NEW' }], T0 + 1);
        expect(p!.key).to.equal('5');
        const [old, fresh] = await store.identities.resolve([{ ios_idfv: 'OLD' }, { ios_idfv: 'NEW' }]);
        expect(old!.profile).to.deep.equal({ key: '5', mpid: '5', identities: { ios_idfv: 'NEW', push_token: 'tok' } });
        expect(fresh!.profile.key).to.equal('5');
      });

      it('resolves by the highest-priority known identity when a lookup points to two profiles', async () => {
        await store.identities.learn([{ mpid: '10', customer_id: 'c10' }, { mpid: '11', ios_idfv: 'V11' }], T0);
        const [m] = await store.identities.resolve([{ ios_idfv: 'V11', customer_id: 'c10' }]);
        expect(m).to.deep.include({ matchedBy: 'customer_id' });
        expect(m!.profile.key).to.equal('10');
      });

      it('learns and resolves arrays in order, later items seeing earlier ones', async () => {
        const obs: IdentityMap[] = [];
        for (let i = 0; i < 1000; i++) obs.push({ mpid: String(1000 + i), customer_id: `c${i}`, email: `u${i}@example.com` });
        obs.push({});
        obs.push({ customer_id: 'c1', ios_idfv: 'EXTRA' });
        const learned = await store.identities.learn(obs, T0);
        expect(learned).to.have.length(1002);
        expect(learned[1000]).to.equal(undefined);
        expect(learned[1001]!.key).to.equal('1001');
        const lookups: IdentityMap[] = [];
        for (let i = 0; i < 1000; i++) lookups.push(i % 2 ? { email: `u${i}@example.com` } : { customer_id: `missing${i}` });
        lookups.push({ ios_idfv: 'EXTRA' });
        const res = await store.identities.resolve(lookups);
        expect(res).to.have.length(1001);
        for (let i = 0; i < 1000; i++) {
          if (i % 2) expect(res[i]!.profile.mpid).to.equal(String(1000 + i));
          else expect(res[i]).to.equal(undefined);
        }
        expect(res[1000]!.profile.key).to.equal('1001');
        expect(await store.identities.profileCount()).to.equal(1000);
      });

      it('resolves large arrays of several identities each like one lookup at a time (priority, misses, repeats)', async () => {
        const obs: IdentityMap[] = [];
        for (let i = 0; i < 1500; i++) obs.push({ mpid: String(5000 + i), customer_id: `c${i}`, ios_idfv: `V${i}` });
        await store.identities.learn(obs, T0);
        await store.identities.learn([{ ios_idfv: 'ANON' }], T0 + 1);
        const lookups: IdentityMap[] = [];
        for (let i = 0; i < 3000; i++) {
          const j = (i * 7) % 1500;
          // two or three identities per lookup: known and unknown ones, pointing to the same or to another profile
          if (i % 4 === 0) lookups.push({ ios_idfv: `V${(j + 1) % 1500}`, customer_id: `c${j}` });
          else if (i % 4 === 1) lookups.push({ customer_id: `missing${i}`, ios_idfv: `V${j}`, email: `none${i}@x.y` });
          else if (i % 4 === 2) lookups.push({ email: `none${i}@x.y`, ios_idfv: i % 3 ? 'ANON' : `NOPE${i}` });
          else lookups.push({ ios_idfv: `V${j}`, mpid: String(5000 + j) });
        }
        const batch = await store.identities.resolve(lookups);
        expect(batch).to.have.length(lookups.length);
        for (let i = 0; i < lookups.length; i += 97) {
          const [one] = await store.identities.resolve([lookups[i]]);
          expect(batch[i], `lookup ${i}`).to.deep.equal(one);
        }
        expect(batch[0]).to.deep.equal({ matchedBy: 'customer_id', profile: { key: '5000', mpid: '5000', identities: { customer_id: 'c0', ios_idfv: 'V0' } } });
        expect(batch[1]!.matchedBy).to.equal('ios_idfv');
        expect(batch[2]).to.deep.include({ matchedBy: 'ios_idfv' });
        expect(batch[2]!.profile).to.deep.include({ identities: { ios_idfv: 'ANON' } });
        expect(batch[6]).to.equal(undefined);
        expect(batch[3]!.matchedBy).to.equal('mpid');
        // every result is the caller's own object
        const again = await store.identities.resolve([{ customer_id: 'c0' }, { customer_id: 'c0' }]);
        again[0]!.profile.identities.email = 'changed@x.y';
        expect(again[1]!.profile.identities).to.deep.equal({ customer_id: 'c0', ios_idfv: 'V0' });
        const [fresh] = await store.identities.resolve([{ customer_id: 'c0' }]);
        expect(fresh!.profile.identities).to.deep.equal({ customer_id: 'c0', ios_idfv: 'V0' });
      });

      it('finds values with unusual characters (quotes, NUL, control characters, emoji, U+FFFD)', async () => {
        // Normalised values, as the contract asks: a lone surrogate has become U+FFFD (normalizeIdentityValue).
        const values = ['a\ufffdz', 'nul\u0000x', 'emoji😀', 'quote"\\', 'tab\t', 'ctl\u0001', 'ü ß'];
        await store.identities.learn(values.map((v, i) => ({ mpid: String(i + 1), customer_id: v })), T0);
        const found = await store.identities.resolve(values.map((v) => ({ customer_id: v })));
        expect(found.map((m) => m?.profile.key)).to.deep.equal(values.map((_, i) => String(i + 1)));
      });

      it('parallel learns from two handles linking to one MPID keep every identity', async () => {
        const other = await f.open();
        await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? other : store).identities.learn([{ mpid: '77', email: `e${i}@example.com` }], T0 + i)));
        const res = await store.identities.resolve(Array.from({ length: 50 }, (_, i) => ({ email: `e${i}@example.com` })));
        expect(res.every((m) => m?.profile.key === '77')).to.equal(true);
        expect(await store.identities.profileCount()).to.equal(1);
      });

      it('parallel anonymous learns of one new device make one profile', async () => {
        const other = await f.open();
        await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? other : store).identities.learn([{ ios_idfv: 'SAME', other: `o${i}` }], T0 + i)));
        expect(await store.identities.profileCount()).to.equal(1);
        const [m] = await store.identities.resolve([{ other: 'o13' }]);
        expect(m!.profile.identities.ios_idfv).to.equal('SAME');
      });
    });
  });
}

for (const f of factories) storeContract(f);

describe('SQLite identity tables: files from before id_public', function () {
  this.timeout(30000);
  let dir = '';
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpsync-idmig-')); });
  afterEach(() => { fs.rmSync(dir, { recursive: true, force: true }); });

  /** A file as the earlier schema left it: links and whole-profile JSON only. */
  function oldFile(file: string, profiles: Array<{ key: string; mpid?: string; identities: IdentityMap }>): void {
    const db = new Database(file);
    db.exec(`CREATE TABLE id_links (link TEXT PRIMARY KEY, pkey TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE id_profiles (pkey TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;`);
    const link = db.prepare('INSERT INTO id_links VALUES (?, ?)');
    const prof = db.prepare('INSERT INTO id_profiles VALUES (?, ?)');
    for (const p of profiles) {
      const links = Object.entries(p.identities).map(([n, v]) => `${n}:${v}`);
      if (p.mpid) links.unshift(`mpid:${p.mpid}`);
      for (const l of links) link.run(l, p.key);
      prof.run(p.key, JSON.stringify({ key: p.key, identities: p.identities, links, createdAt: T0, updatedAt: T0, ...(p.mpid ? { mpid: p.mpid } : {}) }));
    }
    prof.run('broken', '{not json');
    link.run('customer_id:broken', 'broken');
    db.close();
  }

  it('opens an earlier file, resolves what it holds, and learns on top of it', async () => {
    const file = path.join(dir, 'old.db');
    oldFile(file, [
      { key: '1', mpid: '1', identities: { customer_id: 'c1', email: 'a@x.y' } },
      { key: 'anon:0b7c', identities: { ios_idfv: 'V9' } },
    ]);
    const store = openSqliteStore(file);
    try {
      const res = await store.identities.resolve([{ email: 'a@x.y' }, { ios_idfv: 'V9' }, { customer_id: 'broken' }, { mpid: '1' }]);
      expect(res[0]).to.deep.equal({ matchedBy: 'email', profile: { key: '1', mpid: '1', identities: { customer_id: 'c1', email: 'a@x.y' } } });
      expect(res[1]).to.deep.equal({ matchedBy: 'ios_idfv', profile: { key: 'anon:0b7c', identities: { ios_idfv: 'V9' } } });
      expect(res[2]).to.equal(undefined); // a row that is not JSON is skipped, not a crash at open
      expect(res[3]!.profile.key).to.equal('1');
      await store.identities.learn([{ mpid: '1', ios_idfv: 'V9', email: 'b@x.y' }], T0 + 5);
      const [m] = await store.identities.resolve([{ ios_idfv: 'V9' }]);
      expect(m!.profile).to.deep.equal({ key: '1', mpid: '1', identities: { customer_id: 'c1', email: 'b@x.y', ios_idfv: 'V9' } });
    } finally {
      await store.close();
    }
  });

  it('stays in step when something writes id_profiles the earlier way (an older version of the package)', async () => {
    const file = path.join(dir, 'mixed.db');
    let store = openSqliteStore(file);
    await store.identities.learn([{ mpid: '7', customer_id: 'c7' }, { mpid: '8', customer_id: 'c8' }], T0);
    await store.close();
    const db = new Database(file);
    db.prepare('INSERT OR REPLACE INTO id_profiles (pkey, data) VALUES (?, ?)').run('7', JSON.stringify({ key: '7', mpid: '7', identities: { customer_id: 'c7', email: 'new@x.y' }, links: ['mpid:7', 'customer_id:c7'], createdAt: T0, updatedAt: T0 + 1 }));
    db.prepare('DELETE FROM id_profiles WHERE pkey = ?').run('8');
    db.close();
    store = openSqliteStore(file);
    try {
      const [seven, eight] = await store.identities.resolve([{ customer_id: 'c7' }, { customer_id: 'c8' }]);
      expect(seven!.profile.identities).to.deep.equal({ customer_id: 'c7', email: 'new@x.y' });
      expect(eight).to.equal(undefined);
      expect(await store.identities.profileCount()).to.equal(1);
    } finally {
      await store.close();
    }
  });
});
