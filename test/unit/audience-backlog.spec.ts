import path from 'node:path';
import { expect } from 'chai';
import { forwardAudienceMessage, forwardAudienceMessages, inputWeight, SLICE_USERS } from '../../src/audience/forwarder';
import { GroupCommit } from '../../src/audience/group-commit';
import { AudienceSender } from '../../src/audience/sender';
import type { EngageOutcome } from '../../src/mixpanel/engage-client';
import { AudienceOutSettings } from '../../src/schemas/settings';
import type { AudienceStore } from '../../src/store/audience-store';
import { openMemoryStore } from '../../src/store/memory';
import { openSqliteStore } from '../../src/store/sqlite';
import { cleanupTempDirs, tempDir, waitFor } from '../helpers/node-red';

/**
 * A backlog built while Mixpanel is down lives on disk, not in memory, and drains at the sender's pace afterwards
 * (never more requests in flight than configured, full batches). The benchmark measures the 1M-update version.
 */
describe('backlog while Mixpanel is down', function () {
  this.timeout(120000);
  after(() => cleanupTempDirs());

  it('keeps 100k queued updates on disk with a flat heap, then drains them in full batches at the configured concurrency', async () => {
    const store = openSqliteStore(path.join(tempDir(), 'backlog.db'));
    const settings = AudienceOutSettings.parse({});
    let down = true;
    let inflight = 0;
    let maxInflight = 0;
    const sizes: number[] = [];
    const post = async (body: string): Promise<EngageOutcome> => {
      inflight += 1;
      maxInflight = Math.max(maxInflight, inflight);
      await new Promise((r) => setTimeout(r, 2));
      inflight -= 1;
      if (down) return { kind: 'retry', status: 503, reason: 'HTTP 503' };
      sizes.push((JSON.parse(body) as unknown[]).length);
      return { kind: 'ok' };
    };
    const sender = new AudienceSender({
      store: store.audience, scope: 'b', token: () => 't', post, batchSize: 2000, flushMs: 5, concurrency: 2,
      retryWindowMs: 3600000, backoff: { baseMs: 20, maxMs: 50, jitterMinMs: 0, jitterMaxMs: 1, retryAfterCapMs: 100 },
      authRetryMs: 1000, events: { acked() {}, dead() {}, state() {} },
    });
    await sender.start();

    global.gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    const TOTAL = 100000;
    for (let start = 0; start < TOTAL; start += 5000) {
      const batch = Array.from({ length: 5000 }, (_, i) => ({ user: { customer_id: `c${start + i}` }, audiences: [{ id: 1, action: 'add' }] }));
      await forwardAudienceMessage({ store: store.audience, scope: 'b', settings, now: Date.now }, batch);
      sender.kick();
    }
    global.gc?.();
    const heapGrowthMb = (process.memoryUsage().heapUsed - heapBefore) / 1048576;
    if (process.env.VERBOSE_TESTS) console.log(`heap growth ${heapGrowthMb.toFixed(1)} MB`);
    const queued = await store.audience.stats('b');
    expect(queued.pending).to.equal(TOTAL);
    // The status reads the counters instead of counting the rows: the two must agree.
    expect((await store.audience.stats('b', { quick: true })).pending).to.equal(TOTAL);
    expect(heapGrowthMb, `heap grew ${heapGrowthMb.toFixed(1)} MB`).to.be.below(60);

    down = false;
    await waitFor(async () => (await store.audience.stats('b')).pending === 0, 90000, 'the backlog to drain');
    await sender.close();
    const s = await store.audience.stats('b');
    expect(s).to.include({ accepted: TOTAL, acked: TOTAL, dead: 0, pending: 0 });
    expect((await store.audience.stats('b', { quick: true })).pending).to.equal(0);
    expect(maxInflight).to.be.at.most(2);
    expect(sizes.reduce((a, b) => a + b, 0)).to.equal(TOTAL);
    expect(sizes.length).to.equal(TOTAL / 2000); // full batches: 0.5 requests per 1000 updates
    await store.close();
  });
});

/**
 * Group commit under a backlog: what a group parses and writes stays alive until its transaction ends, so groups are
 * cut by users (the benchmark's 1M-update burst peaked at 462 MB RSS with sixteen 1000-user messages per group).
 */
describe('group commit limits', () => {
  it('cuts groups by weight and count, in order; an item heavier than the limit goes alone', async () => {
    const groups: number[][] = [];
    const gc = new GroupCommit<number, number>(async (items) => {
      groups.push(items);
      return items.map((w) => w * 10);
    }, { maxItems: 3, maxWeight: 1000, weight: (w) => w });
    const weights = [1000, 400, 400, 400, 1, 1, 1, 1, 5000, 1];
    const results = await Promise.all(weights.map((w) => gc.submit(w)));
    expect(results).to.deep.equal(weights.map((w) => w * 10));
    expect(groups).to.deep.equal([[1000], [400, 400], [400, 1, 1], [1, 1], [5000], [1]]);
  });

  it('weighs a message by its users', () => {
    expect(inputWeight({ type: 'audience_membership_change_request', user_profiles: new Array(1000).fill({}) })).to.equal(1000);
    expect(inputWeight([{}, {}, {}])).to.equal(3);
    expect(inputWeight({ user: { customer_id: 'a' }, audiences: [] })).to.equal(1);
    expect(inputWeight({ type: 'audience_membership_change_request' })).to.equal(1);
    expect(inputWeight(null)).to.equal(1);
  });
});

/**
 * Users go to the store in slices of SLICE_USERS (one transaction each): a 1000-user message parsed and written at
 * once kept everything alive until its one transaction ended, and V8 promoted it to the old generation as garbage.
 */
describe('forwarding in slices', () => {
  const settings = AudienceOutSettings.parse({ perAudienceAttribute: true });
  /** The memory store, counting the users of each updateMemberships call. */
  function countingStore(): { audience: AudienceStore; calls: number[] } {
    const audience = openMemoryStore().audience;
    const calls: number[] = [];
    const update = audience.updateMemberships.bind(audience);
    audience.updateMemberships = (scope, keys, compute, now) => {
      calls.push(keys.length);
      return update(scope, keys, compute, now);
    };
    return { audience, calls };
  }
  const profile = (i: number, action = 'add') => ({ mpid: String(1000 + i), user_identities: [{ type: 'customer', value: `c${i}` }], audiences: [{ audience_id: 7, audience_name: 'Seven', action }] });

  it('writes a large message slice by slice, answering it as one: every user queued in order, issues in user order', async () => {
    const { audience, calls } = countingStore();
    const n = SLICE_USERS * 2 + 100;
    const users: unknown[] = Array.from({ length: n }, (_, i) => profile(i));
    users[3] = { ...profile(3), mpid: 2 ** 60 }; // a JSON number past 2^53: rejected while parsing
    users[SLICE_USERS + 5] = { mpid: '77', user_identities: [], audiences: [] }; // no target identity
    users[SLICE_USERS * 2 + 1] = { ...profile(SLICE_USERS * 2 + 1), mpid: 'x' };
    users[n - 1] = profile(0, 'delete'); // the first user again, in another slice: leaves again
    const [out] = await forwardAudienceMessages({ store: audience, scope: 's', settings, now: Date.now }, [{ type: 'audience_membership_change_request', user_profiles: users }]);
    if (out.kind !== 'queued') throw new Error(out.kind);
    expect(calls.length).to.equal(3);
    expect(Math.max(...calls)).to.be.at.most(SLICE_USERS);
    expect(out.queued.map((q) => q.distinctId)).to.deep.equal(
      users.map((_, i) => `c${i === n - 1 ? 0 : i}`).filter((_, i) => ![3, SLICE_USERS + 5, SLICE_USERS * 2 + 1].includes(i)));
    expect(out.profileSets.map((p) => p.distinctId)).to.deep.equal(out.queued.map((q) => q.distinctId));
    expect(out.issues.map((i) => i.field)).to.deep.equal([
      'payload.user_profiles[3].mpid', `payload.user_profiles[${SLICE_USERS * 2 + 1}].mpid`, `payload.user_profiles[${SLICE_USERS + 5}]`,
    ]);
    expect(out.profileSets[out.profileSets.length - 1].props).to.deep.equal({ SegmentMembership: '', 'In Seven': false });
    const s = await audience.stats('s');
    expect(s.accepted).to.equal(n - 3);
    expect(s.profiles).to.equal(n - 4); // c0 twice: merged in the outbox
  });

  it('groups one-user messages into slices, each with its own outcome', async () => {
    const { audience, calls } = countingStore();
    const payloads = Array.from({ length: SLICE_USERS + 10 }, (_, i) => ({ user: { customer_id: `p${i}` }, audiences: [{ id: 1, action: 'add' }] }));
    payloads[4] = { user: {}, audiences: [] } as never;
    const outs = await forwardAudienceMessages({ store: audience, scope: 's', settings, now: Date.now, keepProfileSets: false }, payloads);
    expect(calls).to.deep.equal([SLICE_USERS - 1, 10]); // the user with no identity took a place in the first slice
    expect(outs[4].kind).to.equal('invalid');
    outs.forEach((o, i) => {
      if (i === 4) return;
      if (o.kind !== 'queued') throw new Error(o.kind);
      expect(o.queued.map((q) => q.distinctId)).to.deep.equal([`p${i}`]);
      expect(o.profileSets).to.deep.equal([]); // not kept unless asked (dry runs)
    });
  });
});
