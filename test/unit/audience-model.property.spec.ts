import path from 'node:path';
import { expect } from 'chai';
import fc from 'fast-check';
import { forwardAudienceMessage } from '../../src/audience/forwarder';
import { segmentMembership } from '../../src/audience/membership';
import { AudienceSender } from '../../src/audience/sender';
import type { EngageOutcome } from '../../src/mixpanel/engage-client';
import { AudienceOutSettings } from '../../src/schemas/settings';
import { openMemoryStore } from '../../src/store/memory';
import { openSqliteStore } from '../../src/store/sqlite';
import type { SyncStore } from '../../src/store/types';
import { cleanupTempDirs, tempDir, waitFor } from '../helpers/node-red';

/**
 * Random sequences of audience changes, snapshots, duplicates, injected failures (503, 429, dropped connections) and
 * sender restarts, run against the real forwarder + outbox + sender, compared with a plain model: after the dust
 * settles, every profile holds exactly the model's SegmentMembership and accepted = acked + dead + pending.
 */
type Cmd =
  | { t: 'change'; user: number; audience: number; add: boolean }
  | { t: 'snapshot'; user: number; audiences: number[] }
  | { t: 'duplicate' }
  | { t: 'fail'; kind: 'e503' | 'e429' | 'drop'; times: number }
  | { t: 'restart' }
  | { t: 'wait'; ms: number };

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant('change' as const), user: fc.nat(4), audience: fc.integer({ min: 1, max: 5 }), add: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('snapshot' as const), user: fc.nat(4), audiences: fc.uniqueArray(fc.integer({ min: 1, max: 5 }), { maxLength: 4 }) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'duplicate' as const }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('fail' as const), kind: fc.constantFrom('e503' as const, 'e429' as const, 'drop' as const), times: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'restart' as const }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 3 }) }) },
);

async function runScenario(store: SyncStore, cmds: Cmd[]): Promise<void> {
  const scope = 'prop';
  const settings = AudienceOutSettings.parse({});
  const profiles = new Map<string, Record<string, unknown>>();
  const failures: EngageOutcome[] = [];
  const post = async (body: string): Promise<EngageOutcome> => {
    // Mixpanel takes a moment: changes keep arriving while a request is in flight, as they do for real.
    await new Promise((r) => setTimeout(r, 1));
    const f = failures.shift();
    if (f) return f;
    for (const u of JSON.parse(body) as Array<{ $distinct_id: string; $set: Record<string, unknown> }>) {
      profiles.set(u.$distinct_id, { ...(profiles.get(u.$distinct_id) ?? {}), ...u.$set });
    }
    return { kind: 'ok' };
  };
  const newSender = () => new AudienceSender({
    store: store.audience, scope, token: () => 't', post, batchSize: 3, flushMs: 0, concurrency: 2, retryWindowMs: 3600000,
    backoff: { baseMs: 1, maxMs: 2, jitterMinMs: 0, jitterMaxMs: 1, retryAfterCapMs: 5 }, authRetryMs: 1000,
    events: { acked() {}, dead() {}, state() {} },
  });
  let sender = newSender();
  await sender.start();

  const model = new Map<number, number[]>();
  let last: unknown;
  const deliver = async (payload: unknown) => {
    const out = await forwardAudienceMessage({ store: store.audience, scope, settings, now: Date.now }, payload);
    expect(out.kind).to.equal('queued');
    sender.kick(0);
  };
  for (const c of cmds) {
    if (c.t === 'change') {
      const cur = model.get(c.user) ?? [];
      model.set(c.user, c.add ? (cur.includes(c.audience) ? cur : [...cur, c.audience]) : cur.filter((a) => a !== c.audience));
      last = { user: { customer_id: `u${c.user}` }, audiences: [{ id: c.audience, action: c.add ? 'add' : 'remove' }] };
      await deliver(last);
    } else if (c.t === 'snapshot') {
      const cur = (model.get(c.user) ?? []).filter((a) => c.audiences.includes(a));
      for (const a of c.audiences) if (!cur.includes(a)) cur.push(a);
      model.set(c.user, cur);
      last = { user: { customer_id: `u${c.user}` }, memberships: c.audiences.map((id) => ({ id })) };
      await deliver(last);
    } else if (c.t === 'duplicate') {
      if (last) await deliver(last); // a replayed message: the same state again, harmless
    } else if (c.t === 'fail') {
      for (let i = 0; i < c.times; i++) {
        failures.push(c.kind === 'e503' ? { kind: 'retry', status: 503, reason: '503' }
          : c.kind === 'e429' ? { kind: 'retry', status: 429, reason: '429', retryAfterMs: 1 }
          : { kind: 'retry', reason: 'network error: ECONNRESET' });
      }
    } else if (c.t === 'wait') {
      await new Promise((r) => setTimeout(r, c.ms)); // lets the sender run between changes: requests overlap changes
    } else {
      await sender.close();
      sender = newSender();
      await sender.start();
    }
  }
  await waitFor(async () => (await store.audience.stats(scope)).pending === 0, 10000, 'the outbox to drain');
  await sender.close();

  for (const [user, audiences] of model) {
    expect(profiles.get(`u${user}`)?.SegmentMembership, `u${user}`).to.equal(segmentMembership(audiences.map((id) => ({ id: String(id), name: '' }))));
  }
  const s = await store.audience.stats(scope);
  expect(s.accepted).to.equal(s.acked + s.dead + s.pending);
  expect(s.dead).to.equal(0);
}

describe('property: audience changes, duplicates, failures and restarts end in the model state', function () {
  this.timeout(120000);
  afterEach(() => cleanupTempDirs());

  it('with the memory store', async () => {
    await fc.assert(fc.asyncProperty(fc.array(cmd, { minLength: 1, maxLength: 40 }), async (cmds) => {
      await runScenario(openMemoryStore(), cmds);
    }), { numRuns: 60 });
  });

  for (const [label, opts] of [
    ['', {}],
    // Five users at most: the outbox moves between memory and its index as the backlog crosses 3 and 2 rows.
    [' whose outbox switches to its index from 3 rows', { outboxIndexAt: 3, outboxDropIndexAt: 2 }],
  ] as const) {
    it(`with a SQLite file${label}`, async () => {
      const dir = tempDir();
      let n = 0;
      await fc.assert(fc.asyncProperty(fc.array(cmd, { minLength: 1, maxLength: 40 }), async (cmds) => {
        const store = openSqliteStore(path.join(dir, `p${n++}.db`), opts);
        try {
          await runScenario(store, cmds);
        } finally {
          await store.close();
        }
      }), { numRuns: 40 });
    });
  }
});
