import path from 'node:path';
import { expect } from 'chai';
import { cleanupTempDirs, collect, helper, httpNodeUrl, nodeModules, tempDir, waitFor } from '../helpers/node-red';
import { cohortFlow } from '../helpers/cohort-flow';

/**
 * mixpanel-cohort-in inside a real Node-RED runtime: real HTTP requests to its RED.httpNode route, a real SQLite
 * file for the store (memory where the test is about something else).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const USER = 'mixpanel';
const PASS = 'correct horse battery staple';
const AUTH = `Basic ${Buffer.from(`${USER}:${PASS}`).toString('base64')}`;
const MODULES = () => nodeModules('mixpanel-sync-store', 'mixpanel-cohort-in');

const flow = cohortFlow;

async function load(opts: Record<string, unknown> = {}, store?: Record<string, unknown>, creds: Record<string, string> = { username: USER, password: PASS }) {
  await helper.load(MODULES(), flow(opts, store), { in: creds });
}

interface Reply { status: number; body: Any; headers: Headers }

async function post(body: unknown, opts: { auth?: string | null; path?: string; raw?: string } = {}): Promise<Reply> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const auth = opts.auth === undefined ? AUTH : opts.auth;
  if (auth) headers.authorization = auth;
  const res = await fetch(`${await httpNodeUrl()}${opts.path ?? '/mixpanel/cohorts'}`, {
    method: 'POST', headers, body: opts.raw ?? JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try { parsed = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: parsed, headers: res.headers };
}

const member = (id: string, mpid?: string) => ({
  email: `${id}@example.com`, mixpanel_distinct_id: id, first_name: 'A', last_name: 'B', phone_number: '',
  ...(mpid ? { $mparticle_user_id: mpid } : {}),
});

function page(action: string, session: string, pageNo: number, total: number, members: unknown[], extra: Record<string, unknown> = {}) {
  return {
    action,
    parameters: {
      mixpanel_project_id: '2195193', mixpanel_cohort_id: '5471208', mixpanel_cohort_name: 'Churn risk',
      mixpanel_cohort_description: 'No login in 14 days', mixpanel_session_id: session,
      page_info: { total_pages: total, page_count: pageNo }, members, ...extra,
    },
  };
}

/** `{mpid: value}` of every batch on output 1. */
function changes(msgs: Any[]): Record<string, boolean> {
  const out: Record<string, boolean> = {};
  for (const m of msgs) for (const b of (Array.isArray(m.payload) ? m.payload : [m.payload])) out[b.mpid] = b.user_attributes['Churn risk'];
  return out;
}

describe('mixpanel-cohort-in (real Node-RED, real HTTP)', function () {
  afterEach(async () => {
    await helper.unload();
    cleanupTempDirs();
  });

  it('answers the documented example with success and emits one Events-API batch per member', async () => {
    await load();
    const out = collect('out1');
    const res = await post(page('members', 's1', 1, 1, [member('user-123', '8553083063767933171'), member('user-456', '42')]));
    expect(res.status).to.equal(200);
    expect(res.body).to.deep.equal({ action: 'members', status: 'success' });
    await waitFor(() => out.length === 1, 2000, 'output 1');
    expect(out[0].payload).to.deep.equal([
      { environment: 'production', mpid: '8553083063767933171', user_identities: {}, user_attributes: { 'Churn risk': true } },
      { environment: 'production', mpid: '42', user_identities: {}, user_attributes: { 'Churn risk': true } },
    ]);
    expect(out[0].cohort).to.include({ id: '5471208', name: 'Churn risk', action: 'members', sessionId: 's1', page: 1, totalPages: 1, projectId: '2195193', complete: true });
  });

  it('a 3-page export, pages out of order and one twice, replaces the previous one: removals come out false', async () => {
    const file = path.join(tempDir(), 'cohorts.db');
    await load({}, { backend: 'sqlite', path: file });
    const out = collect('out1');
    // First export: members 1..4.
    await post(page('members', 'A', 1, 2, [member('u1', '1'), member('u2', '2')]));
    await post(page('members', 'A', 2, 2, [member('u3', '3'), member('u4', '4')]));
    await waitFor(() => out.length === 2, 2000, 'first export');
    expect(changes(out)).to.deep.equal({ 1: true, 2: true, 3: true, 4: true });
    out.length = 0;
    // Second export: 2, 4, 5, 6 in three pages, sent 3, 1, 3 (again), 2.
    expect((await post(page('members', 'B', 3, 3, [member('u6', '6')]))).status).to.equal(200);
    expect((await post(page('members', 'B', 1, 3, [member('u2', '2')]))).status).to.equal(200);
    const again = await post(page('members', 'B', 3, 3, [member('u6', '6')]));
    expect(again.body).to.deep.equal({ action: 'members', status: 'success' });
    expect(changes(out), 'nothing removed before the export is complete').to.deep.equal({ 6: true });
    await post(page('members', 'B', 2, 3, [member('u4', '4'), member('u5', '5')]));
    await waitFor(() => Object.keys(changes(out)).length === 4, 2000, 'completion');
    expect(changes(out)).to.deep.equal({ 6: true, 5: true, 1: false, 3: false });
    const removal = out.find((m) => m.cohort.change === 'remove');
    expect(removal.cohort).to.include({ page: 2, totalPages: 3, complete: true, sessionId: 'B' });
    // Replaying the completed export changes nothing.
    const before = out.length;
    for (const p of [1, 2, 3]) expect((await post(page('members', 'B', p, 3, [member('u2', '2')]))).status).to.equal(200);
    await new Promise((r) => setTimeout(r, 50));
    expect(out.length).to.equal(before);
  });

  it('a completing page with 2,500 removals sends them in order, 1000 per message, each message on objects of its own', async () => {
    await load();
    const out = collect('out1');
    const old = Array.from({ length: 2500 }, (_, i) => member(`old-${i}`, String(1000 + i)));
    expect((await post(page('members', 'A', 1, 1, old))).status).to.equal(200);
    await waitFor(() => out.length === 3, 5000, 'first export');
    out.length = 0;
    expect((await post(page('members', 'B', 1, 1, [member('new', '1')]))).status).to.equal(200);
    await waitFor(() => out.length === 4, 5000, 'completion');
    expect(out.map((m) => [m.cohort.change, m.payload.length])).to.deep.equal([['add', 1], ['remove', 1000], ['remove', 1000], ['remove', 500]]);
    expect(out.flatMap((m) => m.payload.map((b: Any) => b.mpid))).to.deep.equal(['1', ...old.map((m) => m.$mparticle_user_id)]);
    // A flow that changes one message changes no other.
    out[1].cohort.page = 99;
    out[1].payload[0].user_identities.customer_id = 'changed';
    expect(out[2].cohort.page).to.equal(1);
    expect(out[2].payload.some((b: Any) => b.user_identities.customer_id)).to.equal(false);
  });

  it('keeps membership across a restart on the same SQLite file', async () => {
    const file = path.join(tempDir(), 'cohorts.db');
    await load({}, { backend: 'sqlite', path: file });
    await post(page('members', 'A', 1, 1, [member('u1', '1'), member('u2', '2')]));
    await helper.unload();
    await load({}, { backend: 'sqlite', path: file });
    const out = collect('out1');
    // A page of the next export arrives, Node-RED restarts, the last page arrives.
    await post(page('members', 'B', 1, 2, [member('u2', '2')]));
    await helper.unload();
    await load({}, { backend: 'sqlite', path: file });
    const out2 = collect('out1');
    await post(page('members', 'B', 2, 2, [member('u3', '3')]));
    await waitFor(() => Object.keys(changes(out2)).length === 2, 2000, 'after restart');
    expect(changes(out)).to.deep.equal({});
    expect(changes(out2)).to.deep.equal({ 3: true, 1: false });
  });

  it('add_members and remove_members apply page by page; empty diffs answer success and emit nothing', async () => {
    await load();
    const out = collect('out1');
    const add = await post(page('add_members', 'D1', 1, 1, [member('u7', '7')]));
    expect(add.body).to.deep.equal({ action: 'add_members', status: 'success' });
    const rem = await post(page('remove_members', 'D1', 1, 1, [member('u1', '1')]));
    expect(rem.body).to.deep.equal({ action: 'remove_members', status: 'success' });
    await waitFor(() => out.length === 2, 2000, 'diffs');
    expect(changes(out)).to.deep.equal({ 7: true, 1: false });
    expect(out[1].cohort).to.include({ action: 'remove_members', change: 'remove' });
    const emptyAdd = await post(page('add_members', 'D2', 1, 1, []));
    const emptyRemove = await post(page('remove_members', 'D2', 1, 1, []));
    expect([emptyAdd.status, emptyRemove.status]).to.deep.equal([200, 200]);
    expect(emptyRemove.body).to.deep.equal({ action: 'remove_members', status: 'success' });
    // A replayed diff page is applied once.
    await post(page('add_members', 'D1', 1, 1, [member('u7', '7')]));
    await new Promise((r) => setTimeout(r, 50));
    expect(out).to.have.length(2);
  });

  it('refuses wrong, missing and non-Basic credentials with 401 and WWW-Authenticate, emitting nothing', async () => {
    await load();
    const out = collect('out1');
    const caught = collect('caught');
    const body = page('add_members', 'X', 1, 1, [member('u1', '1')]);
    const wrongPass = await post(body, { auth: `Basic ${Buffer.from(`${USER}:nope`).toString('base64')}` });
    const wrongUser = await post(body, { auth: `Basic ${Buffer.from(`other:${PASS}`).toString('base64')}` });
    const missing = await post(body, { auth: null });
    const bearer = await post(body, { auth: `Bearer ${PASS}` });
    for (const r of [wrongPass, wrongUser, missing, bearer]) {
      expect(r.status).to.equal(401);
      expect(r.headers.get('www-authenticate')).to.match(/^Basic/);
      expect(r.body.status).to.equal('failure');
      expect(JSON.stringify(r.body)).not.to.contain(PASS);
    }
    // The same page with the right credentials is new: nothing was recorded by the refused ones.
    expect((await post(body)).status).to.equal(200);
    await waitFor(() => out.length === 1, 2000, 'accepted page');
    expect(caught).to.have.length(0);
  });

  it('token mode: only <path>/<token> is accepted', async () => {
    await load({ auth: 'token' }, undefined, { token: 's3cr3t-t0ken-abcdef' });
    const body = page('add_members', 'T', 1, 1, [member('u1', '1')]);
    expect((await post(body, { auth: null, path: '/mixpanel/cohorts/s3cr3t-t0ken-abcdef' })).status).to.equal(200);
    expect((await post(body, { auth: null, path: '/mixpanel/cohorts/s3cr3t-t0ken-abcdeX' })).status).to.equal(401);
    expect((await post(body, { auth: null, path: '/mixpanel/cohorts' })).status).to.equal(404);
  });

  it('basic auth without credentials keeps the endpoint closed; "none" warns in yellow', async () => {
    await load({}, undefined, {});
    expect((await post(page('add_members', 'N', 1, 1, []))).status).to.equal(404);
    await helper.unload();
    await load({ auth: 'none' }, undefined, {});
    const n = helper.getNode('in') as Any;
    expect((await post(page('add_members', 'N', 1, 1, []), { auth: null })).status).to.equal(200);
    const statuses = n.status.args.map((a: Any[]) => a[0]);
    expect(statuses[0]).to.deep.equal({ fill: 'yellow', shape: 'ring', text: 'listening, no auth!' });
    expect(statuses[statuses.length - 1].fill).to.equal('yellow');
    expect(n.warn.args.map((a: Any[]) => String(a[0]))).to.include('authentication is off: anyone who finds this URL can change cohort membership');
  });

  it('malformed JSON and wrong shapes get 400 naming the field, and nothing is stored', async () => {
    await load();
    const out = collect('out1');
    const bad = await post(undefined, { raw: '{"action":"members", "parameters": {' });
    expect(bad.status).to.equal(400);
    expect(bad.body.error.message).to.match(/not valid JSON/);
    const noId = page('members', 'S', 1, 1, [member('u1', '1')]);
    delete (noId.parameters as Any).mixpanel_cohort_id;
    const r1 = await post(noId);
    expect(r1.status).to.equal(400);
    expect(r1.body).to.deep.equal({ action: 'members', status: 'failure', error: { message: 'parameters.mixpanel_cohort_id is required', code: 400 } });
    const r2 = await post(page('members', 'S', 1, 1, [{ email: 'x@example.com' }]));
    expect(r2.body.error.message).to.equal('parameters.members[0].mixpanel_distinct_id is required');
    const r3 = await post({ action: 'sync_everything', parameters: {} });
    expect(r3.status).to.equal(400);
    expect(r3.body.error.message).to.match(/^action/);
    const r4 = await post(page('members', 'S', 5, 3, []));
    expect(r4.body.error.message).to.match(/parameters\.page_info\.page_count/);
    await new Promise((r) => setTimeout(r, 50));
    expect(out).to.have.length(0);
  });

  it('answers 413 to a body over the cap, with or without Content-Length', async () => {
    await load({ maxBodyMb: 0.01 });
    const big = page('add_members', 'L', 1, 1, Array.from({ length: 200 }, (_, i) => member(`u${i}`, String(i + 1))));
    const res = await post(big);
    expect(res.status).to.equal(413);
    expect(res.body.error.code).to.equal(413);
    // Chunked upload: no Content-Length, the cap is enforced while streaming.
    const chunked = await fetch(`${await httpNodeUrl()}/mixpanel/cohorts`, {
      method: 'POST', headers: { authorization: AUTH, 'content-type': 'application/json' }, duplex: 'half',
      body: new ReadableStream({ start(c) { const s = JSON.stringify(big); for (let i = 0; i < s.length; i += 1000) c.enqueue(new TextEncoder().encode(s.slice(i, i + 1000))); c.close(); } }),
    } as Any);
    expect(chunked.status).to.equal(413);
  });

  it('answers 503 when the store fails, and the runtime keeps running', async () => {
    const file = path.join(tempDir(), 'cohorts.db');
    await load({}, { backend: 'sqlite', path: file });
    const caught = collect('caught');
    const h = (helper.getNode('st') as Any).acquire();
    await h.store.close(); // the shared SQLite handle is closed under the node
    const res = await post(page('members', 'Z', 1, 1, [member('u1', '1')]));
    expect(res.status).to.equal(503);
    expect(res.body).to.deep.include({ action: 'members', status: 'failure' });
    await waitFor(() => caught.length === 1, 2000, 'catch');
    expect(caught[0].error.source.id).to.equal('in');
    await h.release();
  });

  it('update-only: members without an MPID go to output 2 with a count, never to output 1', async () => {
    await load();
    const out1 = collect('out1');
    const out2 = collect('out2');
    await post(page('add_members', 'P', 1, 1, [member('u1', '1'), member('anon-1'), member('anon-2')]));
    await waitFor(() => out1.length === 1 && out2.length === 1, 2000, 'both outputs');
    expect(out1[0].payload).to.have.length(1);
    expect(out2[0].payload.count).to.equal(2);
    expect(out2[0].payload.members.map((m: Any) => m.mixpanel_distinct_id)).to.deep.equal(['anon-1', 'anon-2']);
    expect(out2[0].cohort).to.include({ id: '5471208', action: 'add_members' });
  });

  it('create-and-update: members without an MPID go out with customer_id and email; prefix and split apply', async () => {
    await load({ protection: 'create-and-update', attributePrefix: 'MP: ', splitMembers: true, environment: 'development' });
    const out1 = collect('out1');
    const out2 = collect('out2');
    await post(page('add_members', 'P', 1, 1, [member('u1', '1'), member('anon-1')]));
    await waitFor(() => out1.length === 2, 2000, 'two messages');
    expect(out1[0].payload).to.deep.equal({ environment: 'development', mpid: '1', user_identities: {}, user_attributes: { 'MP: Churn risk': true } });
    expect(out1[1].payload).to.deep.equal({ environment: 'development', user_identities: { customer_id: 'anon-1', email: 'anon-1@example.com' }, user_attributes: { 'MP: Churn risk': true } });
    expect(out2).to.have.length(0);
  });

  it('hostile JSON (__proto__, constructor, deep nesting) pollutes nothing', async () => {
    await load();
    const out = collect('out1');
    const raw = `{"action":"add_members","__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted2":"yes"}},
      "parameters":{"mixpanel_cohort_id":"9","mixpanel_cohort_name":"Evil","__proto__":{"isAdmin":true},
      "members":[{"mixpanel_distinct_id":"u1","$mparticle_user_id":"5","__proto__":{"polluted3":"yes"}}]}}`;
    const res = await post(undefined, { raw });
    expect(res.status).to.equal(200);
    await waitFor(() => out.length === 1, 2000, 'page');
    expect(({} as Any).polluted).to.equal(undefined);
    expect(({} as Any).polluted2).to.equal(undefined);
    expect(({} as Any).polluted3).to.equal(undefined);
    expect(({} as Any).isAdmin).to.equal(undefined);
    const deep = `{"action":"members","parameters":${'['.repeat(5000)}${']'.repeat(5000)}}`;
    const r2 = await post(undefined, { raw: deep });
    expect(r2.status).to.equal(400);
    expect(r2.body.error.message).to.match(/nested/);
  });

  it('removes its route on close', async () => {
    await load();
    expect((await post(page('add_members', 'R', 1, 1, []))).status).to.equal(200);
    await helper.unload();
    expect((await post(page('add_members', 'R', 2, 2, []))).status).to.equal(404);
  });
});
