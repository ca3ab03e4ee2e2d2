import path from 'node:path';
import { expect } from 'chai';
import { StoreSettings } from '../../src/schemas/settings';
import { acquireStore } from '../../src/store/open';
import { FakeMixpanel } from '../helpers/fake-mixpanel';
import { cleanupTempDirs, collect, helper, nextMessage, nodeModules, tempDir, waitFor } from '../helpers/node-red';

/**
 * mixpanel-audience-out inside a real Node-RED runtime, sending to a local server that answers like Mixpanel.
 * The backoff is shrunk through settings.js tuning so retry paths run in milliseconds.
 */
const TOKEN = 'test-project-token';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

function flow(mixpanelUrl: string, opts: Record<string, unknown> = {}, storeOpts: Record<string, unknown> = { backend: 'memory' }) {
  return [
    { id: 'tab', type: 'tab' },
    { id: 'cfg', type: 'mixpanel-config', region: 'custom', apiHost: mixpanelUrl, dryRun: false },
    { id: 'st', type: 'mixpanel-sync-store', ...storeOpts },
    { id: 'out', type: 'mixpanel-audience-out', z: 'tab', mixpanel: 'cfg', store: 'st', flushMs: 20, wires: [['h']], ...opts },
    { id: 'h', type: 'helper', z: 'tab' },
    { id: 'c', type: 'catch', z: 'tab', scope: ['out'], uncaught: false, wires: [['ch']] },
    { id: 'ch', type: 'helper', z: 'tab' },
  ];
}

const MODULES = () => nodeModules('mixpanel-config', 'mixpanel-sync-store', 'mixpanel-audience-out');
const CREDS = { cfg: { token: TOKEN } };

async function load(mp: FakeMixpanel, opts: Record<string, unknown> = {}, storeOpts?: Record<string, unknown>) {
  await helper.load(MODULES(), flow(mp.url, opts, storeOpts), CREDS);
}

function send(payload: unknown, extra: Record<string, unknown> = {}) {
  helper.getNode('out').receive({ payload, ...extra });
}

const user = (customer_id: string, audiences: Array<{ id: number | string; name?: string; action: 'add' | 'remove' }>) => ({
  user: { customer_id },
  audiences,
});

describe('mixpanel-audience-out', function () {
  const mp = new FakeMixpanel();

  before(async () => {
    await mp.start();
    helper.settings({ mixpanelSync: { backoff: { baseMs: 5, maxMs: 40, jitterMinMs: 0, jitterMaxMs: 2 }, authRetryMs: 60000 } });
  });
  after(async () => {
    await mp.stop();
    helper.settings({});
  });
  beforeEach(() => {
    mp.requests.length = 0;
    mp.profiles.clear();
    mp.script = [];
    mp.poison.clear();
    mp.maxBytes = Infinity;
  });
  afterEach(async () => {
    await helper.unload();
    cleanupTempDirs();
  });

  it("writes the seed's SegmentMembership: a member of 11036 then 11034 gets '11036','11034'", async () => {
    await load(mp);
    send(user('ABC123', [{ id: 11036, name: 'Aspiring Athenians', action: 'add' }]));
    await nextMessage('h');
    send(user('ABC123', [{ id: 11034, name: 'Ibiza Dreamers', action: 'add' }]));
    const msg = await nextMessage('h');
    expect(msg.result.sent).to.deep.equal(['ABC123']);
    expect(mp.profiles.get('ABC123')).to.deep.equal({ SegmentMembership: "'11036','11034'" });
    const req = mp.requests[mp.requests.length - 1];
    expect(req.url).to.equal('/engage?verbose=1&ip=0');
    expect(req.updates[0]).to.include({ $token: TOKEN, $distinct_id: 'ABC123' });
  });

  it('removes an audience again, down to an empty SegmentMembership', async () => {
    await load(mp);
    send(user('u1', [{ id: 1, action: 'add' }, { id: 2, action: 'add' }]));
    await nextMessage('h');
    expect(mp.profiles.get('u1')).to.deep.equal({ SegmentMembership: "'1','2'" });
    send(user('u1', [{ id: 1, action: 'remove' }]));
    await nextMessage('h');
    expect(mp.profiles.get('u1')).to.deep.equal({ SegmentMembership: "'2'" });
    send(user('u1', [{ id: 2, action: 'remove' }]));
    await nextMessage('h');
    expect(mp.profiles.get('u1')).to.deep.equal({ SegmentMembership: '' });
  });

  it('sets In <Audience> true on add and false on removal when one attribute per audience is on', async () => {
    await load(mp, { perAudienceAttribute: true });
    send(user('u1', [{ id: 11040, name: 'Possible Parisians', action: 'add' }]));
    await nextMessage('h');
    expect(mp.profiles.get('u1')).to.deep.equal({ SegmentMembership: "'11040'", 'In Possible Parisians': true });
    send(user('u1', [{ id: 11040, name: 'Possible Parisians', action: 'remove' }]));
    await nextMessage('h');
    expect(mp.profiles.get('u1')).to.deep.equal({ SegmentMembership: '', 'In Possible Parisians': false });
  });

  it('coalesces many changes to one profile inside the flush window into one update', async () => {
    await load(mp, { flushMs: 300 });
    const done = collect('h');
    for (let i = 1; i <= 50; i++) send(user('busy', [{ id: i, action: 'add' }]));
    await waitFor(() => done.length === 50, 5000, '50 results');
    const updates = mp.requests.flatMap((r) => r.updates).filter((u) => u.$distinct_id === 'busy');
    expect(updates).to.have.length(1);
    expect((updates[0].$set as Any).SegmentMembership).to.equal(Array.from({ length: 50 }, (_, i) => `'${i + 1}'`).join(','));
  });

  it('sends at most 2000 updates per request', async () => {
    await load(mp);
    const users = Array.from({ length: 4500 }, (_, i) => user(`c${i}`, [{ id: 7, action: 'add' }]));
    send(users);
    const msg = await nextMessage('h', 15000);
    expect(msg.result.sent).to.have.length(4500);
    expect(mp.requests.map((r) => r.updates.length)).to.deep.equal([2000, 2000, 500]);
    expect(mp.profiles.size).to.equal(4500);
  });

  it('keeps every node sending to one project under the project\'s rate limit, together', async () => {
    const RATE = 5000;
    const nodes = flow(mp.url, { batchSize: 1000, concurrency: 4 }).map((n) => (n.id === 'cfg' ? { ...n, rateLimit: RATE } : n));
    nodes.push({ id: 'out2', type: 'mixpanel-audience-out', z: 'tab', mixpanel: 'cfg', store: 'st', flushMs: 20, batchSize: 1000, concurrency: 4, wires: [['h2']] } as Any);
    nodes.push({ id: 'h2', type: 'helper', z: 'tab' } as Any);
    await helper.load(MODULES(), nodes, CREDS);
    const done = Promise.all([nextMessage('h', 15000), nextMessage('h2', 15000)]);
    send(Array.from({ length: 2500 }, (_, i) => user(`a${i}`, [{ id: 7, action: 'add' }])));
    helper.getNode('out2').receive({ payload: Array.from({ length: 2500 }, (_, i) => user(`b${i}`, [{ id: 7, action: 'add' }])) });
    await done;
    expect(mp.profiles.size).to.equal(5000);
    // Each request may leave only once the updates before it fit the shared budget: n updates need n / RATE s, less
    // the quarter second a pacer may catch up, less 50 ms for when each request reaches the fake Mixpanel (times are
    // taken on arrival; 15 ms was once 1 ms short on a loaded machine). A rate broken by one batch is 200 ms off.
    const first = mp.requests[0].at;
    let before = 0;
    for (const r of mp.requests) {
      expect(r.at - first, `request after ${before} updates`).to.be.at.least((before / RATE) * 1000 - 250 - 50);
      before += r.updates.length;
    }
    expect(new Set(mp.requests.map((r) => r.updates[0].$distinct_id.toString()[0]))).to.have.members(['a', 'b']);
  });

  it('under a steady trickle of messages, waits out the flush window for fuller batches instead of sending each trickle', async () => {
    await load(mp, { flushMs: 100, concurrency: 1 });
    // Mixpanel takes 60 ms per request, so each answer comes while new updates are already due.
    mp.script = Array.from({ length: 40 }, () => ({ delayMs: 60 }));
    const t0 = Date.now();
    for (let m = 0; m < 20; m++) {
      send(Array.from({ length: 50 }, (_, i) => user(`t${m}-${i}`, [{ id: 7, action: 'add' }])));
      await new Promise((r) => setTimeout(r, 30));
    }
    const elapsed = Date.now() - t0;
    await waitFor(() => mp.profiles.size === 1000, 10000, 'every update delivered');
    // One request per flush window at most (plus the first and the last); sent as they came, one per answer, ~10.
    expect(mp.requests.length, `${mp.requests.length} requests in ${elapsed} ms`).to.be.at.most(Math.ceil(elapsed / 160) + 2);
  });

  it('under a steady stream, sends full batches: a short batch waits out the flush window and is topped up', async () => {
    await load(mp, { flushMs: 400, batchSize: 100, concurrency: 2 });
    mp.script = Array.from({ length: 100 }, () => ({ delayMs: 20 }));
    // 1,000 updates a second for 1.2 s: each wake-up finds a few full batches and the start of the next one.
    for (let m = 0; m < 48; m++) {
      send(Array.from({ length: 25 }, (_, i) => user(`s${m}-${i}`, [{ id: 7, action: 'add' }])));
      await new Promise((r) => setTimeout(r, 25));
    }
    await waitFor(() => mp.profiles.size === 1200, 10000, 'every update delivered');
    const sizes = mp.requests.map((r) => r.updates.length);
    // Only the end of the stream may go out short (its last update has nothing left to wait for).
    expect(sizes.slice(0, -1).filter((n) => n < 100), `batch sizes ${sizes.join(' ')}`).to.deep.equal([]);
    expect(sizes.reduce((a, b) => a + b, 0)).to.equal(1200);
  });

  it('writes one update per target identity present, or only the first with targetMode first', async () => {
    await load(mp);
    const profile = {
      mpid: '-3512045978116385270',
      user_identities: [{ type: 'customer', encoding: 'raw', value: 'ABC123' }, { type: 'email', encoding: 'raw', value: 'e@x.io' }],
      device_identities: [
        { type: 'ios_advertising_id', encoding: 'raw', value: 'IDFA-1' },
        { type: 'ios_vendor_id', encoding: 'raw', value: 'IDFV-1' },
        { type: 'android_id', encoding: 'raw', value: 'AID-1' },
      ],
      audiences: [{ audience_id: 11034, audience_name: 'Ibiza Dreamers', action: 'add' }],
    };
    send({ type: 'audience_membership_change_request', id: 'r1', user_profiles: [profile] });
    const msg = await nextMessage('h');
    expect(msg.result.sent).to.have.members(['ABC123', 'AID-1', 'IDFA-1', 'IDFV-1']);
    expect([...mp.profiles.keys()]).to.have.members(['ABC123', 'AID-1', 'IDFA-1', 'IDFV-1']);

    await helper.unload();
    mp.profiles.clear();
    await load(mp, { identityTargets: ['email', 'mpid', 'customer_id'], targetMode: 'first' });
    send({ type: 'audience_membership_change_request', id: 'r2', user_profiles: [profile] });
    await nextMessage('h');
    expect([...mp.profiles.keys()]).to.deep.equal(['e@x.io']);
  });

  it('completes a user from the identities identity-resolve learnt in the same store, when asked', async () => {
    await load(mp, { resolveIdentities: true });
    // The very store the node uses (the registry hands out one per store node), as identity-resolve would fill it.
    const handle = acquireStore(StoreSettings.parse({ backend: 'memory' }), { userDir: '/', ownerId: 'st' });
    try {
      await handle.store.identities.learn([{ mpid: '8546325437751190000', customer_id: 'CUST-9', email: 'ann@example.com' }], Date.now());
      send({ user: { email: 'Ann@Example.com' }, audiences: [{ id: 5, action: 'add' }] });
      const msg = await nextMessage('h');
      expect(msg.result.sent).to.deep.equal(['CUST-9']);
      expect(mp.profiles.get('CUST-9')).to.deep.equal({ SegmentMembership: "'5'" });
      send({ user: { mpid: '8546325437751190000' }, audiences: [{ id: 6, action: 'add' }] });
      await nextMessage('h');
      expect(mp.profiles.get('CUST-9')).to.deep.equal({ SegmentMembership: "'5','6'" }); // one membership state per person
    } finally {
      await handle.release();
    }
  });

  it('keeps MPIDs as strings and answers mParticle with the matching response', async () => {
    await load(mp, { identityTargets: ['mpid'] });
    const mpid = '9223372036854775807'; // 2^63-1: a JS number would round it
    send({
      type: 'audience_membership_change_request', id: 'req-7', firehose_version: '3.2.0', timestamp_ms: 1,
      user_profiles: [{ mpid, audiences: [{ audience_id: 5, audience_name: 'Five', action: 'add' }] }],
    });
    const msg = await nextMessage('h');
    expect(msg.payload).to.include({ type: 'audience_membership_change_response', id: 'req-7', suspend_subscription: false });
    expect(mp.profiles.has(mpid)).to.equal(true);
  });

  it('answers a keep-alive request without sending anything', async () => {
    await load(mp);
    send({ type: 'audience_membership_change_request', id: 'ka', account: { account_id: 1 } });
    const msg = await nextMessage('h');
    expect(msg.payload).to.include({ type: 'audience_membership_change_response', id: 'ka' });
    expect(mp.requests).to.have.length(0);
  });

  it('replaces the membership with a full snapshot', async () => {
    await load(mp, { perAudienceAttribute: true });
    send(user('s1', [{ id: 1, name: 'One', action: 'add' }, { id: 2, name: 'Two', action: 'add' }]));
    await nextMessage('h');
    send({ user: { customer_id: 's1' }, memberships: [{ id: 2, name: 'Two' }, { id: 3, name: 'Three' }] });
    await nextMessage('h');
    expect(mp.profiles.get('s1')).to.deep.equal({
      SegmentMembership: "'2','3'", 'In One': false, 'In Two': true, 'In Three': true,
    });
  });

  it('cleans up every member when an audience subscription is removed', async () => {
    await load(mp, { perAudienceAttribute: true });
    send([user('a', [{ id: 9, name: 'Nine', action: 'add' }, { id: 8, name: 'Eight', action: 'add' }]), user('b', [{ id: 9, name: 'Nine', action: 'add' }])]);
    await nextMessage('h');
    send({ type: 'audience_subscription_request', id: 'sub', audience_id: 9, audience_name: 'Nine', action: 'remove' });
    const msg = await nextMessage('h');
    expect(msg.payload).to.include({ type: 'audience_subscription_response', id: 'sub' });
    expect(mp.profiles.get('a')).to.deep.include({ SegmentMembership: "'8'", 'In Nine': false });
    expect(mp.profiles.get('b')).to.deep.include({ SegmentMembership: '', 'In Nine': false });
  });

  it('treats 200 with status 0 as a failure, and isolates the bad update so the rest still land', async () => {
    await load(mp);
    mp.poison.add('bad');
    const users = ['g1', 'g2', 'bad', 'g3'].map((id) => user(id, [{ id: 1, action: 'add' }]));
    const caught = nextMessage('ch');
    send(users);
    const msg = await nextMessage('h');
    expect(msg.result.sent).to.have.members(['g1', 'g2', 'g3']);
    expect(msg.result.failed).to.have.length(1);
    expect(msg.result.failed[0]).to.include({ distinctId: 'bad', code: 'MIXPANEL_REJECTED' });
    const err = await caught;
    expect(err.error.code).to.equal('MIXPANEL_REJECTED');
    expect(err.error.message).to.contain('bad');
    expect([...mp.profiles.keys()]).to.have.members(['g1', 'g2', 'g3']);
  });

  it('retries 503, a dropped connection and 429 with Retry-After, then succeeds', async () => {
    await load(mp);
    mp.script = [{ status: 503, body: 'unavailable' }, 'drop', { status: 429, body: '{"error":"rate","status":0}', headers: { 'Retry-After': '0' } }];
    send(user('r1', [{ id: 3, action: 'add' }]));
    const msg = await nextMessage('h');
    expect(msg.result.sent).to.deep.equal(['r1']);
    expect(mp.requests.map((r) => r.reply)).to.deep.equal([503, 0, 429, 200]);
    expect(mp.profiles.get('r1')).to.deep.equal({ SegmentMembership: "'3'" });
  });

  it('does not retry a 400', async () => {
    await load(mp);
    mp.script = [{ status: 400, body: '{"error":"Engage API error: bad","status":0}' }];
    const caught = nextMessage('ch');
    send(user('x', [{ id: 3, action: 'add' }]));
    const msg = await nextMessage('h');
    expect(msg.result.failed[0]).to.include({ distinctId: 'x', code: 'MIXPANEL_REJECTED' });
    expect((await caught).error.code).to.equal('MIXPANEL_REJECTED');
    await new Promise((r) => setTimeout(r, 100));
    expect(mp.requests).to.have.length(1);
  });

  it('splits a batch Mixpanel answers 413 to', async () => {
    await load(mp);
    const users = Array.from({ length: 40 }, (_, i) => user(`big${i}`, [{ id: 1, action: 'add' }]));
    mp.maxBytes = 2000; // about 12 updates
    send(users);
    const msg = await nextMessage('h');
    expect(msg.result.sent).to.have.length(40);
    expect(mp.requests.some((r) => r.reply === 413)).to.equal(true);
    expect(mp.profiles.size).to.equal(40);
  });

  it('pauses on 401: status red, one error to Catch, updates kept', async () => {
    await load(mp);
    mp.script = [{ status: 401, body: '{"error":"Invalid token","status":"error"}' }];
    const statuses: Any[] = [];
    helper.getNode('out').on('call:status', (call: Any) => statuses.push(call.args[0]));
    const caught = nextMessage('ch');
    send(user('p', [{ id: 3, action: 'add' }]));
    const err = await caught;
    expect(err.error.code).to.equal('MIXPANEL_AUTH');
    expect(err.error.message).to.not.contain(TOKEN);
    await waitFor(() => statuses.some((s) => s.fill === 'red' && /paused/.test(s.text)), 3000, 'a red paused status');
    expect(statuses.every((s) => !String(s.text).includes(TOKEN))).to.equal(true);
    const stats = await new Promise<Any>((resolve) => {
      helper.getNode('h').once('input', (m: Any) => resolve(m.payload));
      send(undefined, { topic: 'stats' });
    });
    expect(stats).to.include({ accepted: 1, acked: 0, dead: 0, pending: 1 });
    expect(mp.requests).to.have.length(1);
  });

  it('reports bad input to Catch once, naming the field, and lets the rest of the batch through', async () => {
    await load(mp);
    const errors = collect('ch');
    send([user('ok1', [{ id: 1, action: 'add' }]), { user: { customer_id: 'x' }, audiences: [{ name: 'no id', action: 'add' }] }, { user: { email: 'e@x.io' }, audiences: [{ id: 1, action: 'add' }] }]);
    const msg = await nextMessage('h');
    expect(msg.result.sent).to.deep.equal(['ok1']);
    expect(msg.result.rejected.map((r: Any) => r.field)).to.deep.equal(['payload[1].audiences[0].id', 'payload[2]']);
    await waitFor(() => errors.length === 1, 2000, 'one Catch message');
    expect(errors[0].error.code).to.equal('INVALID_INPUT');
    expect(errors[0].error.message).to.contain('payload[1].audiences[0].id');
    await new Promise((r) => setTimeout(r, 100));
    expect(errors).to.have.length(1);
  });

  it('gives each of several messages arriving together its own result, and a bad one only its own error', async () => {
    await load(mp);
    const results = collect('h');
    const errors = collect('ch');
    send(user('m1', [{ id: 1, action: 'add' }]), { topic: 'one' });
    send({ user: {}, audiences: [{ id: 1, action: 'add' }] }, { topic: 'bad' });
    send(user('m2', [{ id: 2, action: 'add' }]), { topic: 'two' });
    send(user('m1', [{ id: 3, action: 'add' }]), { topic: 'three' });
    await waitFor(() => results.length === 3 && errors.length === 1, 5000, 'three results and one error');
    const byTopic = Object.fromEntries(results.map((m: Any) => [m.topic, m.result.sent]));
    expect(byTopic).to.deep.equal({ one: ['m1'], two: ['m2'], three: ['m1'] });
    expect(errors[0].topic).to.equal('bad');
    expect(errors[0].error.code).to.equal('NO_IDENTITY');
    expect(mp.profiles.get('m1')).to.deep.equal({ SegmentMembership: "'1','3'" });
  });

  it('rejects a payload that matches no shape with INVALID_INPUT and keeps running', async () => {
    await load(mp);
    const caught = nextMessage('ch');
    send('hello');
    const err = await caught;
    expect(err.error.code).to.equal('INVALID_INPUT');
    expect(err.error.message).to.contain('payload');
    send(user('after', [{ id: 1, action: 'add' }]));
    expect((await nextMessage('h')).result.sent).to.deep.equal(['after']);
  });

  it('rejects an MPID given as a JSON number, naming the field', async () => {
    await load(mp);
    const caught = nextMessage('ch');
    send({ type: 'audience_membership_change_request', user_profiles: [{ mpid: 7346244611012968789, audiences: [] }] });
    const err = await caught;
    expect(err.error.message).to.contain('payload.user_profiles[0].mpid');
  });

  it('sends nothing and says so when Use Mixpanel People is off', async () => {
    await load(mp, { useMixpanelPeople: false });
    send(user('u', [{ id: 1, action: 'add' }]));
    const msg = await nextMessage('h');
    expect(msg.payload.skipped).to.match(/Use Mixpanel People/);
    expect(mp.requests).to.have.length(0);
  });

  it('in dry run builds the requests but sends nothing', async () => {
    await helper.load(MODULES(), flow(mp.url).map((n) => (n.id === 'cfg' ? { ...n, dryRun: true } : n)), {});
    send(user('dry', [{ id: 11036, action: 'add' }]));
    const msg = await nextMessage('h');
    expect(msg.result.sent).to.deep.equal(['dry']);
    expect(msg.dryRun.updates[0]).to.deep.include({ $distinct_id: 'dry', $set: { SegmentMembership: "'11036'" } });
    expect(mp.requests).to.have.length(0);
  });

  it('keeps queued updates in SQLite across a restart and delivers them after it', async () => {
    const dir = tempDir();
    const store = { backend: 'sqlite', path: path.join(dir, 'state.db') };
    await load(mp, { outputWhen: 'queued' }, store);
    mp.script = Array.from({ length: 1000 }, () => ({ status: 503, body: 'down' }));
    send(user('kept', [{ id: 42, action: 'add' }]));
    await nextMessage('h');
    await waitFor(() => mp.requests.length >= 1, 3000, 'a first (failing) attempt');
    await helper.unload();
    mp.script = [];
    await load(mp, {}, store);
    await waitFor(() => mp.profiles.has('kept'), 5000, 'delivery after restart');
    expect(mp.profiles.get('kept')).to.deep.equal({ SegmentMembership: "'42'" });
  });
});
