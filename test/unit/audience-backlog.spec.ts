import path from 'node:path';
import { expect } from 'chai';
import { forwardAudienceMessage, inputWeight } from '../../src/audience/forwarder';
import { GroupCommit } from '../../src/audience/group-commit';
import { AudienceSender } from '../../src/audience/sender';
import type { EngageOutcome } from '../../src/mixpanel/engage-client';
import { AudienceOutSettings } from '../../src/schemas/settings';
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
