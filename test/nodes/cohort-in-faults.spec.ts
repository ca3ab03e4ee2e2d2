import path from 'node:path';
import { expect } from 'chai';
import { cleanupTempDirs, collect, helper, httpNodeUrl, nodeModules, tempDir, waitFor } from '../helpers/node-red';
import { cohortFlow } from '../helpers/cohort-flow';

/**
 * Webhook rows of the reliability matrix (reference/reliability-perf-anchors.md §5.4) that test/nodes/cohort-in.spec.ts
 * does not already cover, in a real Node-RED over real HTTP, on a SQLite file:
 * - row 11: a wrong Content-Type (endpoint and `http in` input mode);
 * - row 13: a huge members array (200 000 members in one page): 413 under the cap, a clear 400 above it; heap flat;
 * - row 14: the same page POSTed 5× in parallel: all 200, effect once;
 * - row 15: a `members` export that never completes (a page is missing): nothing is removed;
 * - row 16: a `members` export restarted from the top, with the same and with a new session id.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const USER = 'mixpanel';
const PASS = 'pw-faults-123';
const AUTH = `Basic ${Buffer.from(`${USER}:${PASS}`).toString('base64')}`;
const COHORT = '2195193/5471208';

const flow = cohortFlow;

async function load(opts: Record<string, unknown> = {}) {
  await helper.load(nodeModules('mixpanel-sync-store', 'mixpanel-cohort-in'),
    flow(opts, { backend: 'sqlite', path: path.join(tempDir(), 'cohorts.db') }), { in: { username: USER, password: PASS } });
}

interface Reply { status: number; body: Any }

async function post(body: unknown, opts: { contentType?: string; raw?: string } = {}): Promise<Reply> {
  const res = await fetch(`${await httpNodeUrl()}/mixpanel/cohorts`, {
    method: 'POST',
    headers: { 'content-type': opts.contentType ?? 'application/json', authorization: AUTH },
    body: opts.raw ?? JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try { parsed = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: parsed };
}

const member = (i: number) => ({ mixpanel_distinct_id: `u${i}`, email: `u${i}@example.com`, $mparticle_user_id: String(i) });

function page(action: string, session: string, pageNo: number, total: number, members: number[]) {
  return {
    action,
    parameters: {
      mixpanel_project_id: '2195193', mixpanel_cohort_id: '5471208', mixpanel_cohort_name: 'Churn risk',
      mixpanel_session_id: session, page_info: { total_pages: total, page_count: pageNo }, members: members.map(member),
    },
  };
}

/** Every [mpid, value] emitted on output 1, in order. */
function emitted(msgs: Any[]): Array<[number, boolean]> {
  return msgs.flatMap((m) => (Array.isArray(m.payload) ? m.payload : [m.payload]))
    .map((b: Any): [number, boolean] => [Number(b.mpid), b.user_attributes['Churn risk']]);
}
const trues = (msgs: Any[]) => emitted(msgs).filter(([, v]) => v).map(([m]) => m).sort((a, b) => a - b);
const falses = (msgs: Any[]) => emitted(msgs).filter(([, v]) => !v).map(([m]) => m).sort((a, b) => a - b);

/** The cohort's members as the store holds them (through the store node the cohort node uses). */
async function storedMembers(): Promise<number[]> {
  const h = (helper.getNode('st') as Any).acquire();
  try {
    const refs = await h.store.cohorts.members(COHORT, undefined, 100000);
    return refs.map((r: Any) => Number(r.mpid)).sort((a: number, b: number) => a - b);
  } finally {
    await h.release();
  }
}

const settle = () => new Promise((r) => setTimeout(r, 50));

function heapMb(): number {
  (global as Any).gc?.();
  (global as Any).gc?.();
  return process.memoryUsage().heapUsed / 1024 / 1024;
}

describe('mixpanel-cohort-in: webhook faults (real Node-RED, real HTTP, SQLite)', function () {
  this.timeout(60000);
  afterEach(async () => {
    await helper.unload();
    cleanupTempDirs();
  });

  it('row 11: a body that is not declared as JSON gets 400 naming the Content-Type; nothing is read or stored', async () => {
    await load();
    const out1 = collect('out1');
    const caught = collect('caught');
    const body = page('add_members', 'CT', 1, 1, [1]);
    for (const contentType of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml']) {
      const r = await post(body, { contentType });
      expect(r.status, contentType).to.equal(400);
      expect(r.body, contentType).to.deep.equal({ action: 'unknown', status: 'failure',
        error: { message: `Content-Type must be application/json, not ${contentType.split(';')[0]}`, code: 400 } });
    }
    const form = await post(undefined, { contentType: 'application/x-www-form-urlencoded', raw: 'action=members&parameters=x' });
    expect(form.status).to.equal(400);
    await settle();
    expect(out1).to.have.length(0);
    expect(await storedMembers()).to.deep.equal([]);
    expect(caught.map((m) => m.error.code ?? m.error.message)).to.have.length(5);
    // The same page with a charset parameter (what most clients send) is fine, and new: nothing was recorded.
    expect((await post(body, { contentType: 'application/json; charset=utf-8' })).status).to.equal(200);
    await waitFor(() => out1.length === 1, 2000, 'accepted page');
    expect(await storedMembers()).to.deep.equal([1]);
  });

  it('row 11 (input mode): the same check applies to requests from an http in node', async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const httpNodes = require('@node-red/nodes/core/network/21-httpin.js');
    await helper.load([...nodeModules('mixpanel-sync-store', 'mixpanel-cohort-in'), httpNodes], ([
      { id: 'tab', type: 'tab' },
      { id: 'st', type: 'mixpanel-sync-store', backend: 'memory' },
      { id: 'hin', type: 'http in', z: 'tab', url: '/hooks/cohorts', method: 'post', upload: false, wires: [['in']] },
      { id: 'in', type: 'mixpanel-cohort-in', z: 'tab', store: 'st', path: '', wires: [['hres'], ['out2']] },
      { id: 'hres', type: 'http response', z: 'tab' },
      { id: 'out2', type: 'helper', z: 'tab' },
    ] as Any[]), { in: { username: USER, password: PASS } });
    const res = await fetch(`${await httpNodeUrl()}/hooks/cohorts`, {
      method: 'POST', headers: { 'content-type': 'text/plain', authorization: AUTH }, body: JSON.stringify(page('add_members', 'X', 1, 1, [1])),
    });
    expect(res.status).to.equal(400);
    expect(((await res.json()) as Any).error.message).to.equal('Content-Type must be application/json, not text/plain');
  });

  it('row 13: 200 000 members in one page: 413 under the default cap, a clear 400 under a raised one; heap stays flat', async () => {
    const members = Array.from({ length: 200000 }, (_, i) => ({ mixpanel_distinct_id: `u${i}` }));
    const raw = JSON.stringify({ action: 'members', parameters: { mixpanel_cohort_id: '5471208', mixpanel_project_id: '2195193',
      mixpanel_session_id: 'HUGE', page_info: { total_pages: 1, page_count: 1 }, members } });
    members.length = 0;
    expect(raw.length).to.be.greaterThan(5 * 1024 * 1024);

    await load();
    const out1 = collect('out1');
    const before = heapMb();
    for (let i = 0; i < 3; i++) {
      const r = await post(undefined, { raw });
      expect(r.status).to.equal(413);
      expect(r.body.error).to.deep.equal({ message: `request body is larger than ${5 * 1024 * 1024} bytes`, code: 413 });
    }
    expect(heapMb() - before, 'heap growth after three 7 MB bodies refused (MB)').to.be.lessThan(15);
    await helper.unload();

    await load({ maxBodyMb: 50 });
    const out1b = collect('out1');
    const before2 = heapMb();
    for (let i = 0; i < 3; i++) {
      const r = await post(undefined, { raw });
      expect(r.status).to.equal(400);
      expect(r.body).to.deep.equal({ action: 'members', status: 'failure',
        error: { message: 'parameters.members: Too big: expected array to have <=10000 items', code: 400 } });
    }
    expect(heapMb() - before2, 'heap growth after three 200k-member pages refused (MB)').to.be.lessThan(15);
    await settle();
    expect(out1.length + out1b.length).to.equal(0);
    expect(await storedMembers()).to.deep.equal([]);
    // The receiver still works.
    expect((await post(page('members', 'OK', 1, 1, [1]))).status).to.equal(200);
    expect(await storedMembers()).to.deep.equal([1]);
  });

  it('row 14: the same page POSTed 5× in parallel: all 200, applied and emitted once (members, its last page, and diffs)', async () => {
    await load();
    const out1 = collect('out1');
    const five = (body: unknown) => Promise.all(Array.from({ length: 5 }, () => post(body)));
    const first = await five(page('members', 'P', 1, 2, [1, 2]));
    expect(first.map((r) => r.status)).to.deep.equal([200, 200, 200, 200, 200]);
    expect(first.every((r) => r.body.status === 'success' && r.body.action === 'members')).to.equal(true);
    await waitFor(() => out1.length >= 1, 2000, 'first page');
    await settle();
    expect(emitted(out1)).to.deep.equal([[1, true], [2, true]]);

    const last = await five(page('members', 'P', 2, 2, [3]));
    expect(last.map((r) => r.status)).to.deep.equal([200, 200, 200, 200, 200]);
    await settle();
    expect(emitted(out1)).to.deep.equal([[1, true], [2, true], [3, true]]);

    // The next export drops 1 and 2: the completing page comes 5× at once, the removals go out once.
    await five(page('members', 'Q', 1, 1, [3]));
    await settle();
    expect(falses(out1)).to.deep.equal([1, 2]);

    await five(page('add_members', 'D', 1, 1, [4]));
    await five(page('remove_members', 'D', 1, 1, [3]));
    await settle();
    expect(emitted(out1).slice(-2)).to.deep.equal([[4, true], [3, false]]);
    expect(emitted(out1)).to.have.length(7);
    expect(await storedMembers()).to.deep.equal([4]);
  });

  it('row 15: an export whose page 2 never arrives removes nothing; the next complete export settles it', async () => {
    await load();
    const out1 = collect('out1');
    await post(page('members', 'A', 1, 1, [1, 2, 3, 4]));
    await waitFor(() => out1.length === 1, 2000, 'first export');
    // Export B = {2, 5, 6} over three pages; page 2 (member 5) is lost for good.
    expect((await post(page('members', 'B', 3, 3, [6]))).status).to.equal(200);
    expect((await post(page('members', 'B', 1, 3, [2]))).status).to.equal(200);
    expect((await post(page('members', 'B', 1, 3, [2]))).status).to.equal(200);
    await settle();
    expect(falses(out1), 'nothing removed by an incomplete export').to.deep.equal([]);
    expect(trues(out1)).to.deep.equal([1, 2, 3, 4, 6]);
    expect(await storedMembers(), 'add-only until complete').to.deep.equal([1, 2, 3, 4, 6]);
    const n = helper.getNode('in') as Any;
    expect(n.status.lastCall.args[0].text).to.match(/1\/3/);
    // The next sync is a fresh export C = {2, 5}: it completes and removes everything else, once.
    await post(page('members', 'C', 2, 2, [5]));
    await post(page('members', 'C', 1, 2, [2]));
    await settle();
    expect(falses(out1)).to.deep.equal([1, 3, 4, 6]);
    expect(await storedMembers()).to.deep.equal([2, 5]);
  });

  it('row 16: an export restarted from the top under the same session id ends at the snapshot, each change once', async () => {
    await load();
    const out1 = collect('out1');
    await post(page('members', 'A', 1, 1, [1, 2, 3]));
    // Export B = {3, 4, 5, 6} in three pages; Mixpanel fails after page 1 and starts again from the top.
    await post(page('members', 'B', 1, 3, [3, 4]));
    for (const [p, m] of [[1, [3, 4]], [2, [5]], [3, [6]]] as Array<[number, number[]]>) {
      const r = await post(page('members', 'B', p, 3, m));
      expect(r).to.deep.equal({ status: 200, body: { action: 'members', status: 'success' } });
    }
    await settle();
    expect(emitted(out1).filter(([m]) => m >= 4)).to.deep.equal([[4, true], [5, true], [6, true]]);
    expect(falses(out1)).to.deep.equal([1, 2]);
    expect(emitted(out1)).to.have.length(8); // 1,2,3 true; 4,5,6 true; 1,2 false
    expect(await storedMembers()).to.deep.equal([3, 4, 5, 6]);
  });

  it('row 16: an export restarted under a new session id ends at the snapshot; the abandoned one finishing late removes nothing', async () => {
    await load();
    const out1 = collect('out1');
    await post(page('members', 'A', 1, 1, [1, 2, 3]));
    // Attempt B1 delivers pages 1 and 3 of {3, 4, 5, 6}, then Mixpanel restarts as B2 with all three pages.
    await post(page('members', 'B1', 1, 3, [3, 4]));
    await post(page('members', 'B1', 3, 3, [6]));
    await post(page('members', 'B2', 2, 3, [5]));
    await post(page('members', 'B2', 3, 3, [6]));
    await post(page('members', 'B2', 1, 3, [3, 4]));
    await settle();
    expect(falses(out1)).to.deep.equal([1, 2]);
    expect(emitted(out1)).to.have.length(8);
    expect(await storedMembers()).to.deep.equal([3, 4, 5, 6]);
    // The abandoned B1's missing page turns up after all: it completes B1, which is older than B2: no second sweep.
    expect((await post(page('members', 'B1', 2, 3, [5]))).status).to.equal(200);
    await settle();
    expect(emitted(out1)).to.have.length(8);
    expect(await storedMembers()).to.deep.equal([3, 4, 5, 6]);
  });
});
