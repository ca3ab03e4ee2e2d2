import { expect } from 'chai';
import { cleanupTempDirs, collect, helper, httpNodeUrl, nextMessage, nodeModules, tempDir, waitFor } from '../helpers/node-red';
import { cohortFlow } from '../helpers/cohort-flow';

/**
 * mixpanel-cohort-in resolving members through the identity graph that identity-resolve learns, in a real Node-RED
 * with both nodes on one store and real HTTP requests to the webhook route.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const AUTH = `Basic ${Buffer.from('mixpanel:pw-1234567').toString('base64')}`;
const BIG_MPID = '8553083063767933171'; // above 2^53: would change if it ever went through a JS number

/** The shared cohort flow plus an identity-resolve node (learn mode) on the same store. */
function flow(opts: Record<string, unknown>, store: Record<string, unknown>) {
  return [
    ...cohortFlow(opts, store),
    { id: 'lrn', type: 'identity-resolve', z: 'tab', store: 'st', mode: 'learn', wires: [['l1'], []] },
    { id: 'l1', type: 'helper', z: 'tab' },
  ];
}

async function post(body: unknown) {
  const res = await fetch(`${await httpNodeUrl()}/mixpanel/cohorts`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: AUTH }, body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() as Any };
}

function page(action: string, session: string, pageNo: number, total: number, members: unknown[]) {
  return {
    action,
    parameters: {
      mixpanel_project_id: '2195193', mixpanel_cohort_id: '5471208', mixpanel_cohort_name: 'Churn risk',
      mixpanel_session_id: session, page_info: { total_pages: total, page_count: pageNo }, members,
    },
  };
}

const batches = (msgs: Any[]): Any[] => msgs.flatMap((m) => (Array.isArray(m.payload) ? m.payload : [m.payload]));

const stores: Array<[string, () => Record<string, unknown>]> = [
  ['memory', () => ({ backend: 'memory' })],
  ['sqlite', () => ({ backend: 'sqlite', path: `${tempDir()}/sync.db` })],
];

for (const [backend, storeOpts] of stores) {
  describe(`mixpanel-cohort-in + identity-resolve on one ${backend} store`, function () {
    afterEach(async () => {
      await helper.unload();
      cleanupTempDirs();
    });

    async function load(opts: Record<string, unknown> = {}) {
      await helper.load(nodeModules('mixpanel-sync-store', 'mixpanel-cohort-in', 'identity-resolve'), flow(opts, storeOpts()),
        { in: { username: 'mixpanel', password: 'pw-1234567' } });
    }

    async function learn(payload: unknown) {
      const got = nextMessage('l1');
      helper.getNode('lrn').receive({ payload });
      await got;
    }

    it('update-only: members learnt by distinct ID or e-mail get their MPID (a string) and identities; the rest go to output 2', async () => {
      await load();
      await learn([
        { $mparticle_user_id: BIG_MPID, customerid: 'C-1', email: 'Ann@Example.com' },
        { $distinct_id: 'mp-user-2', mpid: '42', customer_id: 'C-42' },
      ]);
      const out1 = collect('out1');
      const out2 = collect('out2');
      const caught = collect('caught');
      // Count identity-store round trips: one per page, whatever the number of members.
      const h = (helper.getNode('st') as Any).acquire();
      const ids = h.store.identities;
      const resolve = ids.resolve;
      let calls = 0;
      ids.resolve = (l: unknown[]) => { calls++; return resolve.call(ids, l); };
      await h.release();
      const res = await post(page('add_members', 'D1', 1, 1, [
        { mixpanel_distinct_id: 'some-mixpanel-id', email: 'ANN@example.com ' }, // known by e-mail only
        { mixpanel_distinct_id: 'mp-user-2', email: 'different@example.com' }, // known by distinct ID
        { mixpanel_distinct_id: 'stranger', email: 'stranger@example.com' },
      ]));
      expect(res).to.deep.equal({ status: 200, body: { action: 'add_members', status: 'success' } });
      await waitFor(() => out1.length === 1 && out2.length === 1, 3000, 'both outputs');
      expect(out1[0].payload).to.deep.equal([
        { environment: 'production', mpid: BIG_MPID, user_identities: { customer_id: 'C-1', email: 'ann@example.com' }, user_attributes: { 'Churn risk': true } },
        { environment: 'production', mpid: '42', user_identities: { customer_id: 'C-42' }, user_attributes: { 'Churn risk': true } },
      ]);
      expect(typeof out1[0].payload[0].mpid).to.equal('string');
      expect(out2[0].payload).to.deep.equal({ count: 1, members: [{ mixpanel_distinct_id: 'stranger', email: 'stranger@example.com', value: true }] });
      expect(calls).to.equal(1);
      expect(caught).to.have.length(0);
    });

    it('a member learnt after it joined is matched when it leaves (the removal is resolved at the end of the export)', async () => {
      await load();
      const out1 = collect('out1');
      const out2 = collect('out2');
      await post(page('members', 'A', 1, 1, [{ mixpanel_distinct_id: 'late' }, { mixpanel_distinct_id: 'stays', $mparticle_user_id: '5' }]));
      await waitFor(() => out1.length === 1 && out2.length === 1, 3000, 'first export');
      expect(out2[0].payload.members.map((m: Any) => m.mixpanel_distinct_id)).to.deep.equal(['late']);
      await learn({ $distinct_id: 'late', $mparticle_user_id: '-7346244611012968789' });
      await post(page('members', 'B', 1, 1, [{ mixpanel_distinct_id: 'stays', $mparticle_user_id: '5' }]));
      await waitFor(() => out1.length === 2, 3000, 'second export');
      expect(out1[1].payload).to.deep.equal([
        { environment: 'production', mpid: '-7346244611012968789', user_identities: {}, user_attributes: { 'Churn risk': false } },
      ]);
      expect(out1[1].cohort).to.include({ change: 'remove', complete: true });
      expect(out2).to.have.length(1);
    });

    it('create-and-update: known members by MPID and identities, unknown ones with customer_id and e-mail (store.identities.learn directly)', async () => {
      await load({ protection: 'create-and-update' });
      const h = (helper.getNode('st') as Any).acquire();
      try {
        await h.store.identities.learn([{ distinct_id: 'mp-9', mpid: '9', email: 'nine@example.com' }], Date.now());
      } finally {
        await h.release();
      }
      const out1 = collect('out1');
      const out2 = collect('out2');
      await post(page('add_members', 'D2', 1, 1, [
        { mixpanel_distinct_id: 'mp-9' },
        { mixpanel_distinct_id: 'new-user', email: 'New@Example.com' },
        { mixpanel_distinct_id: '$device:abc' },
      ]));
      await waitFor(() => out1.length === 1 && out2.length === 1, 3000, 'outputs');
      expect(batches(out1)).to.deep.equal([
        { environment: 'production', mpid: '9', user_identities: { email: 'nine@example.com' }, user_attributes: { 'Churn risk': true } },
        { environment: 'production', user_identities: { customer_id: 'new-user', email: 'new@example.com' }, user_attributes: { 'Churn risk': true } },
      ]);
      expect(out2[0].payload.count).to.equal(1);
    });
  });
}
