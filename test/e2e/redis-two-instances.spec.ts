import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { openRedisStore } from '../../src/store/redis';
import { FakeMixpanel } from '../helpers/fake-mixpanel';
import { waitFor } from '../helpers/node-red';
import { makeUserDir, removeUserDir, startRed, type RedProcess } from '../helpers/red-process';
import { redisTestUrl } from '../helpers/redis';

/**
 * Two real Node-RED processes running the same flow (same node ids, as two instances behind a load balancer) with a
 * `mixpanel-sync-store` of backend `redis` on one redis-server:
 * (a) the pages of one cohort `members` export, split across both instances (and each page also delivered to the
 *     other one, as a retry would be), produce each addition once and the right removals once;
 * (b) audience changes for the same users arriving at both instances at once end in the right SegmentMembership at
 *     Mixpanel, no update lost, and no profile ever receives a state older than (or equal to) one it already got.
 * REDIS_URL when set (`npm test` starts one): unreachable fails the suite. Unset: a redis-server of our own.
 */

interface Collected {
  instance: string;
  output: number;
  cohort: { action: string; sessionId?: string; page: number; change: string; complete: boolean };
  batches: Array<{ mpid?: string; user_attributes: Record<string, boolean> }>;
}

/** Receives what both flows forward (each `http request` node posts here) and answers 200. */
class Collector {
  readonly items: Collected[] = [];
  private server: http.Server | undefined;
  async start(): Promise<string> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.items.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Collected);
        res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok');
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}/collect`;
  }
  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = undefined;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}


const USER = 'mixpanel';
const PASS = 'two-instances-secret';
const auth = `Basic ${Buffer.from(`${USER}:${PASS}`).toString('base64')}`;

describe('e2e: two Node-RED instances sharing one Redis', function () {
  this.timeout(180000);
  const mp = new FakeMixpanel();
  const collector = new Collector();
  const reds: RedProcess[] = [];
  const dirs: string[] = [];
  let url = '';
  let keyPrefix = '';

  before(async () => {
    url = await redisTestUrl();
    keyPrefix = `e2e2:${process.pid}-${Date.now().toString(36)}:`;
    await mp.start();
    const collect = await collector.start();
    // One flow, deployed on both instances: the instance's name comes from the environment.
    const flows = [
      { id: 'tab', type: 'tab', label: 'two instances' },
      { id: 'cfg', type: 'mixpanel-config', region: 'custom', apiHost: mp.url },
      { id: 'st', type: 'mixpanel-sync-store', backend: 'redis', url, keyPrefix },
      // (a) the cohort webhook; both outputs go to the collector, tagged with the instance and the output.
      { id: 'cin', type: 'mixpanel-cohort-in', z: 'tab', path: '/mixpanel/cohorts', auth: 'basic', protection: 'update-only', store: 'st', wires: [['tag1'], ['tag2']] },
      { id: 'tag1', type: 'function', z: 'tab', func: "msg.payload = { instance: env.get('INSTANCE'), output: 1, cohort: msg.cohort, batches: msg.payload };\nmsg.headers = { 'content-type': 'application/json' };\nreturn msg;", outputs: 1, wires: [['post']] },
      { id: 'tag2', type: 'function', z: 'tab', func: "msg.payload = { instance: env.get('INSTANCE'), output: 2, cohort: msg.cohort, batches: [] };\nmsg.headers = { 'content-type': 'application/json' };\nreturn msg;", outputs: 1, wires: [['post']] },
      { id: 'post', type: 'http request', z: 'tab', method: 'POST', ret: 'txt', url: collect, paytoqs: 'ignore', wires: [[]] },
      // (b) audience changes: http in → audience-out (answers once stored) → http response.
      { id: 'ain', type: 'http in', z: 'tab', url: '/aud', method: 'post', wires: [['out']] },
      { id: 'out', type: 'mixpanel-audience-out', z: 'tab', mixpanel: 'cfg', store: 'st', outputWhen: 'queued', batchSize: 50, concurrency: 2, flushMs: 5, wires: [['ares']] },
      { id: 'ares', type: 'http response', z: 'tab' },
    ];
    const creds = { cfg: { token: 'two-instances-token' }, cin: { username: USER, password: PASS } };
    for (const name of ['A', 'B']) {
      const dir = makeUserDir(`redis2-${name}`);
      dirs.push(dir);
      reds.push(await startRed(dir, flows, creds, { INSTANCE: name }));
    }
  });

  after(async () => {
    for (const r of reds) await r.stop();
    await collector.stop();
    await mp.stop();
    for (const d of dirs) removeUserDir(d);
  });

  const instance = (name: string) => reds[name === 'A' ? 0 : 1];

  async function postPage(to: string, session: string, page: number, total: number, members: Array<[string, string]>) {
    const body = {
      action: 'members',
      parameters: {
        mixpanel_project_id: '2195193', mixpanel_cohort_id: '5471208', mixpanel_cohort_name: 'Churn risk',
        mixpanel_session_id: session, page_info: { total_pages: total, page_count: page },
        members: members.map(([id, mpid]) => ({ mixpanel_distinct_id: id, $mparticle_user_id: mpid })),
      },
    };
    const res = await fetch(`${instance(to).url}/mixpanel/cohorts`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: auth }, body: JSON.stringify(body),
    });
    const reply = await res.json() as { status: string };
    expect(res.status, `${to} page ${page}: ${JSON.stringify(reply)}`).to.equal(200);
    expect(reply.status).to.equal('success');
  }

  /** Every (mpid, value) the two instances sent, with who sent it. */
  function sent(session: string) {
    const out: Array<{ mpid: string; value: boolean; instance: string; complete: boolean }> = [];
    for (const it of collector.items) {
      if (it.cohort.sessionId !== session) continue;
      expect(it.output, `unmatched members on ${it.instance}: ${JSON.stringify(it)}`).to.equal(1);
      for (const b of it.batches) out.push({ mpid: String(b.mpid), value: b.user_attributes['Churn risk'], instance: it.instance, complete: it.cohort.complete });
    }
    return out;
  }

  const members = (from: number, to: number): Array<[string, string]> =>
    Array.from({ length: to - from }, (_, i) => [`u${String(from + i).padStart(4, '0')}`, String(7346244611012968000n + BigInt(from + i))]);
  const mpids = (from: number, to: number) => members(from, to).map(([, m]) => m).sort();
  const quiet = () => new Promise((r) => setTimeout(r, 750)); // nothing more may arrive after the expected set

  it('(a) a members export whose pages are split across both instances sends each addition and each removal once', async () => {
    // Export 1 (u0000…u0299), pages alternating between the instances: every member is new.
    const first = members(0, 300);
    await Promise.all([0, 1, 2].map((p) => postPage(p % 2 ? 'B' : 'A', 'S1', p + 1, 3, first.slice(p * 100, (p + 1) * 100))));
    await waitFor(() => sent('S1').length >= 300, 20000, 'export 1 forwarded');
    await quiet();
    const s1 = sent('S1');
    expect(s1.filter((x) => x.value).map((x) => x.mpid).sort()).to.deep.equal(mpids(0, 300));
    expect(s1.filter((x) => !x.value)).to.deep.equal([]);
    expect(new Set(s1.map((x) => x.instance))).to.deep.equal(new Set(['A', 'B']));

    // Export 2 (u0100…u0399) in 4 pages, all at once: page p to one instance and, at the same time, to the other
    // (a retry crossing the load balancer). u0000…u0099 left the cohort, u0300…u0399 joined.
    const second = members(100, 400);
    const calls: Array<Promise<void>> = [];
    for (let p = 0; p < 4; p++) {
      const page = second.slice(p * 75, (p + 1) * 75);
      calls.push(postPage(p % 2 ? 'B' : 'A', 'S2', p + 1, 4, page), postPage(p % 2 ? 'A' : 'B', 'S2', p + 1, 4, page));
    }
    await Promise.all(calls);
    await waitFor(() => sent('S2').length >= 200, 20000, 'export 2 forwarded');
    await quiet();
    const s2 = sent('S2');
    expect(s2.filter((x) => x.value).map((x) => x.mpid).sort(), 'additions, once each').to.deep.equal(mpids(300, 400));
    const removals = s2.filter((x) => !x.value);
    expect(removals.map((x) => x.mpid).sort(), 'removals: the previous members missing from the new export, once each').to.deep.equal(mpids(0, 100));
    expect(new Set(removals.map((x) => x.instance)).size, 'one instance saw the export complete').to.equal(1);
    expect(removals.every((x) => x.complete)).to.equal(true);

    // What the shared store holds now is the new export.
    const store = openRedisStore({ url, keyPrefix });
    try {
      expect(await store.cohorts.memberCount('2195193/5471208')).to.equal(300);
    } finally {
      await store.close();
    }
  });

  it('(b) audience changes for the same users at both instances: right SegmentMembership, nothing lost, nothing stale', async () => {
    mp.delayMs = 20; // requests in flight on both instances while changes keep arriving
    const USERS = 40;
    const AUD = 8;
    const post = (to: string, user: number, id: number, action: 'add' | 'remove') =>
      fetch(`${instance(to).url}/aud`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ user: { customer_id: `c${user}` }, audiences: [{ id, name: `Aud ${id}`, action }] }),
      }).then(async (res) => { expect(res.status, await res.text()).to.equal(200); });
    const seg = (v: unknown) => new Set(String(v).split(',').filter(Boolean));
    const setOf = (ids: number[]) => new Set(ids.map((i) => `'${i}'`));
    const ids = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

    // Phase 1: every user joins audiences 1…8, the changes spread over both instances and sent all at once.
    await Promise.all(ids(0, USERS).flatMap((u) => ids(1, AUD + 1).map((a) => post((u + a) % 2 ? 'A' : 'B', u, a, 'add'))));
    const full = setOf(ids(1, AUD + 1));
    await waitFor(() => ids(0, USERS).every((u) => eqSet(seg(mp.profiles.get(`c${u}`)?.SegmentMembership), full)), 30000, 'every profile in all audiences');
    const phase1 = mp.acceptedUpdates.length;
    // Phase 2: every user leaves audiences 1…4, again from both instances at once.
    await Promise.all(ids(0, USERS).flatMap((u) => ids(1, 5).map((a) => post((u + a) % 2 ? 'B' : 'A', u, a, 'remove'))));
    const rest = setOf(ids(5, AUD + 1));
    await waitFor(() => ids(0, USERS).every((u) => eqSet(seg(mp.profiles.get(`c${u}`)?.SegmentMembership), rest)), 30000, 'every profile in audiences 5…8');
    await quiet();
    for (let u = 0; u < USERS; u++) expect(seg(mp.profiles.get(`c${u}`)?.SegmentMembership), `c${u}`).to.deep.equal(rest);

    // Each profile's accepted states: strictly growing in phase 1, strictly shrinking in phase 2. A stale state sent
    // after a newer one, or the same state sent twice (two instances sending one outbox item), breaks this.
    const updates = mp.acceptedUpdates;
    const check = (from: number, to: number, grow: boolean) => {
      const last = new Map<string, Set<string>>();
      for (const upd of updates.slice(from, to)) {
        const id = String(upd.$distinct_id);
        const now = seg((upd.$set as Record<string, unknown>).SegmentMembership);
        const prev = last.get(id);
        if (prev) {
          const [small, big] = grow ? [prev, now] : [now, prev];
          expect(big.size > small.size && [...small].every((x) => big.has(x)), `${id}: ${[...prev]} then ${[...now]}`).to.equal(true);
        }
        last.set(id, now);
      }
      expect(last.size).to.equal(USERS);
    };
    check(0, phase1, true);
    check(phase1, updates.length, false);

    // The shared outbox: everything accepted was acknowledged, nothing pending, nothing dead.
    const store = openRedisStore({ url, keyPrefix });
    try {
      const st = await store.audience.stats('out');
      expect(st, JSON.stringify(st)).to.deep.include({ accepted: USERS * AUD + USERS * 4, dead: 0, pending: 0 });
      expect(st.acked).to.equal(st.accepted);
    } finally {
      await store.close();
    }
    for (const r of reds) expect(r.proc.exitCode, r.log.join('')).to.equal(null);
  });
});

function eqSet(a: Set<string>, b: Set<string>): boolean {
  return a.size === b.size && [...a].every((x) => b.has(x));
}
