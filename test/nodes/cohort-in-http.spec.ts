import { expect } from 'chai';
import { cleanupTempDirs, collect, helper, httpNodeUrl, nodeModules, waitFor } from '../helpers/node-red';

/**
 * Input mode: a core `http in` node receives the webhook (Node-RED's body parser has already parsed it), the cohort
 * node answers through msg.statusCode/msg.payload on output 1 into a core `http response` node, and the batches ride
 * on msg.updates.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const AUTH = `Basic ${Buffer.from('mp:pw-123456').toString('base64')}`;

function flow(opts: Record<string, unknown> = {}) {
  return [
    { id: 'tab', type: 'tab' },
    { id: 'st', type: 'mixpanel-sync-store', backend: 'memory' },
    { id: 'hin', type: 'http in', z: 'tab', url: '/hooks/cohorts', method: 'post', upload: false, wires: [['in']] },
    { id: 'in', type: 'mixpanel-cohort-in', z: 'tab', store: 'st', path: '', wires: [['hres', 'tap'], ['out2']], ...opts },
    { id: 'hres', type: 'http response', z: 'tab' },
    { id: 'tap', type: 'helper', z: 'tab' },
    { id: 'out2', type: 'helper', z: 'tab' },
  ];
}

async function post(body: unknown, auth: string | null = AUTH) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (auth) headers.authorization = auth;
  const res = await fetch(`${await httpNodeUrl()}/hooks/cohorts`, { method: 'POST', headers, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() as Any, headers: res.headers };
}

const body = (action: string, members: unknown[]) => ({
  action,
  parameters: { mixpanel_project_id: 1, mixpanel_cohort_id: 77, mixpanel_cohort_name: 'VIP', mixpanel_session_id: 'h1',
    page_info: { total_pages: 1, page_count: 1 }, members },
});

describe('mixpanel-cohort-in behind an http in node', function () {
  afterEach(async () => {
    await helper.unload();
    cleanupTempDirs();
  });

  async function load(opts: Record<string, unknown> = {}) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const httpNodes = require('@node-red/nodes/core/network/21-httpin.js');
    await helper.load([...nodeModules('mixpanel-sync-store', 'mixpanel-cohort-in'), httpNodes], flow(opts),
      { in: { username: 'mp', password: 'pw-123456' } });
  }

  it('answers through http response and puts the batches on msg.updates', async () => {
    await load();
    const tap = collect('tap');
    const out2 = collect('out2');
    const res = await post(body('add_members', [
      { mixpanel_distinct_id: 'a', $mparticle_user_id: '-8553083063767933171' },
      { mixpanel_distinct_id: 'b', properties: { $mparticle_user_id: '12' } },
      { mixpanel_distinct_id: 'c' },
    ]));
    expect(res.status).to.equal(200);
    expect(res.body).to.deep.equal({ action: 'add_members', status: 'success' });
    await waitFor(() => tap.length === 1 && out2.length === 1, 2000, 'messages');
    expect(tap[0].statusCode).to.equal(200);
    expect(tap[0].updates.map((b: Any) => b.mpid)).to.deep.equal(['-8553083063767933171', '12']);
    expect(tap[0].cohort).to.include({ id: '77', projectId: '1', name: 'VIP' });
    expect(out2[0].payload.count).to.equal(1);
  });

  it('checks Basic auth on the forwarded request: 401 with WWW-Authenticate, nothing emitted', async () => {
    await load();
    const out2 = collect('out2');
    const res = await post(body('add_members', [{ mixpanel_distinct_id: 'c' }]), null);
    expect(res.status).to.equal(401);
    expect(res.headers.get('www-authenticate')).to.match(/^Basic/);
    expect(res.body.status).to.equal('failure');
    await new Promise((r) => setTimeout(r, 50));
    expect(out2).to.have.length(0);
  });

  it('answers 400 naming the field for a wrong shape', async () => {
    await load();
    const res = await post({ action: 'members', parameters: { mixpanel_cohort_id: 1, members: 'everyone' } });
    expect(res.status).to.equal(400);
    expect(res.body.error.message).to.match(/^parameters\.members/);
  });
});
