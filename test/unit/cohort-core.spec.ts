import { PassThrough } from 'node:stream';
import type { IncomingMessage } from 'node:http';
import { expect } from 'chai';
import { checkAuth, parseBasic } from '../../src/cohort/auth';
import { memberMpid, resolveMembers } from '../../src/cohort/identity';
import { processWebhook, type WebhookContext } from '../../src/cohort/protocol';
import { readBody } from '../../src/cohort/read-body';
import { parseJsonSafely, sanitizeJson } from '../../src/cohort/safe-json';
import { CohortInSettings } from '../../src/cohort/settings';
import type { CohortStore } from '../../src/store/cohort-store';
import { MemoryCohortStore } from '../../src/store/memory/cohorts';
import { MemoryIdentityStore } from '../../src/store/memory/identities';
import type { IdentityMap } from '../../src/identity/types';

/** The pure protocol core: (request, settings, store) → reply and messages, with no Node-RED and no HTTP server. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

function ctx(store: CohortStore = new MemoryCohortStore(), settings: Record<string, unknown> = {}): WebhookContext {
  return { settings: CohortInSettings.parse(settings), secrets: { username: 'u', password: 'p' }, store, now: 1000 };
}
const req = (body: unknown, auth = basic('u', 'p')) => ({ headers: { authorization: auth }, rawBody: JSON.stringify(body) });
const page = (action: string, members: unknown[], params: Record<string, unknown> = {}) => ({
  action, parameters: { mixpanel_cohort_id: 7, mixpanel_cohort_name: 'VIP', mixpanel_session_id: 's', members, ...params },
});

describe('cohort core: protocol', () => {
  it('a single members page with numeric ids replies success and sets the attribute true', async () => {
    const r = await processWebhook(req(page('members', [{ mixpanel_distinct_id: 'a', $mparticle_user_id: 99 }])), ctx());
    expect(r.status).to.equal(200);
    expect(r.reply).to.deep.equal({ action: 'members', status: 'success' });
    expect(r.updates[0].payload).to.deep.equal([{ environment: 'production', mpid: '99', user_identities: {}, user_attributes: { VIP: true } }]);
    expect(r.updates[0].cohort).to.include({ id: '7', page: 1, totalPages: 1, complete: true });
  });

  it('checks auth before the body: a bad password is 401 even for garbage, and the store is not touched', async () => {
    const store = { applyDiffPage: () => { throw new Error('touched'); }, stageMembersPage: () => { throw new Error('touched'); } } as unknown as CohortStore;
    const r = await processWebhook({ headers: { authorization: basic('u', 'x') }, rawBody: 'garbage' }, ctx(store));
    expect(r.status).to.equal(401);
    expect(r.headers['WWW-Authenticate']).to.match(/^Basic/);
    expect(r.error?.code).to.equal('WEBHOOK_AUTH');
  });

  it('maps a store failure to 503 STORE_UNAVAILABLE with the action echoed', async () => {
    const store = { applyDiffPage: async () => { throw new TypeError('The database connection is not open'); } } as unknown as CohortStore;
    const r = await processWebhook(req(page('add_members', [{ mixpanel_distinct_id: 'a' }])), ctx(store));
    expect(r.status).to.equal(503);
    expect(r.reply).to.deep.equal({ action: 'add_members', status: 'failure', error: { message: 'store unavailable, please retry', code: 503 } });
    expect(r.error?.code).to.equal('STORE_UNAVAILABLE');
  });

  it('names the field in 400 replies', async () => {
    const cases: Array<[unknown, string]> = [
      [{ action: 'members' }, 'parameters is required'],
      [page('members', [], { mixpanel_cohort_id: undefined }), 'parameters.mixpanel_cohort_id is required'],
      [page('add_members', [{ email: 'x' }]), 'parameters.members[0].mixpanel_distinct_id is required'],
      [page('members', [], { page_info: { total_pages: 2, page_count: 1 }, mixpanel_session_id: undefined }),
        'parameters.mixpanel_session_id is required for a members export of several pages'],
    ];
    for (const [body, message] of cases) {
      const r = await processWebhook(req(body), ctx());
      expect(r.status, message).to.equal(400);
      expect((r.reply as Any).error.message).to.equal(message);
      expect(r.error?.code).to.equal('WEBHOOK_INVALID');
    }
  });

  it('keeps unknown extra fields and a null email without complaint', async () => {
    const r = await processWebhook(req(page('add_members', [{ mixpanel_distinct_id: 'a', email: null, plan: 'pro', $mparticle_user_id: '5' }], { extra: { x: 1 } })), ctx());
    expect(r.status).to.equal(200);
  });

  it('an empty diff emits nothing', async () => {
    const r = await processWebhook(req(page('remove_members', [])), ctx());
    expect(r.status).to.equal(200);
    expect(r.updates).to.deep.equal([]);
    expect(r.unmatched).to.deep.equal([]);
  });

  it('splits large removals into page-sized messages', async () => {
    const store = new MemoryCohortStore();
    const many = Array.from({ length: 2500 }, (_, i) => ({ mixpanel_distinct_id: `u${i}`, $mparticle_user_id: String(i + 1) }));
    await processWebhook(req(page('members', many, { mixpanel_session_id: 'A' })), ctx(store));
    const r = await processWebhook(req(page('members', [], { mixpanel_session_id: 'B' })), ctx(store));
    expect(r.updates.map((m) => (m.payload as unknown[]).length)).to.deep.equal([1000, 1000, 500]);
    expect(r.updates.every((m) => m.cohort.change === 'remove' && m.cohort.complete)).to.equal(true);
  });
});

describe('cohort core: identity', () => {
  it('finds $mparticle_user_id flat or nested, validates it and keeps it a string', () => {
    expect(memberMpid({ $mparticle_user_id: '8553083063767933171' })).to.equal('8553083063767933171');
    expect(memberMpid({ properties: { $mparticle_user_id: '-12' } })).to.equal('-12');
    expect(memberMpid({ customProperties: { mparticle_user_id: 34 } })).to.equal('34');
    expect(memberMpid({ $mparticle_user_id: 'abc' })).to.equal(undefined);
    expect(memberMpid({ $mparticle_user_id: 2 ** 60 })).to.equal(undefined); // already rounded: refused
  });

  it('update-only leaves members without MPID unmatched; create-and-update uses customer_id and email, never $device: ids', async () => {
    const refs = [{ distinctId: 'a', mpid: '1' }, { distinctId: 'b', email: 'b@x' }, { distinctId: '$device:abc' }];
    expect(await resolveMembers(refs, 'update-only')).to.deep.equal([
      { matched: true, mpid: '1', userIdentities: {}, via: 'member' }, { matched: false }, { matched: false }]);
    expect(await resolveMembers(refs, 'create-and-update')).to.deep.equal([
      { matched: true, mpid: '1', userIdentities: {}, via: 'member' },
      { matched: true, userIdentities: { customer_id: 'b', email: 'b@x' }, via: 'created' }, { matched: false }]);
  });

  it('asks the identity store once for the whole page, with normalised distinct IDs and e-mails', async () => {
    const store = new MemoryIdentityStore();
    await store.learn([
      { mpid: '8553083063767933171', customer_id: 'C-1', email: 'ann@example.com', ios_idfv: 'AAA' },
      { distinct_id: 'dev-only', ios_idfv: 'BBB' },
      { mpid: '99', distinct_id: 'other-user', customer_id: 'C-99' },
    ], 1);
    const calls: IdentityMap[][] = [];
    const lookup = async (l: IdentityMap[]) => { calls.push(l); return store.resolve(l); };
    const refs = [
      { distinctId: 'u-1', email: ' Ann@Example.COM ' }, // known by e-mail only
      { distinctId: 'dev-only' }, // anonymous profile known by device ID
      { distinctId: 'other-user', mpid: '5' }, // the member's MPID wins over a profile with another MPID
      { distinctId: 'nobody' },
    ];
    const r = await resolveMembers(refs, 'update-only', lookup);
    expect(calls).to.have.length(1);
    expect(calls[0]).to.deep.equal([
      { distinct_id: 'u-1', email: 'ann@example.com' }, { distinct_id: 'dev-only' }, { mpid: '5', distinct_id: 'other-user' }, { distinct_id: 'nobody' }]);
    expect(r).to.deep.equal([
      { matched: true, mpid: '8553083063767933171', userIdentities: { customer_id: 'C-1', email: 'ann@example.com' }, via: 'store' },
      { matched: true, userIdentities: {}, deviceInfo: { ios_idfv: 'BBB' }, via: 'store' },
      { matched: true, mpid: '5', userIdentities: {}, via: 'member' },
      { matched: false },
    ]);
    expect(typeof (r[0] as Any).mpid).to.equal('string');
  });

  it('a member MPID the store knows gets the profile\'s user identities; a failing lookup throws', async () => {
    const store = new MemoryIdentityStore();
    await store.learn([{ mpid: '7', customer_id: 'C-7' }], 1);
    const r = await resolveMembers([{ distinctId: 'x', mpid: '7' }], 'update-only', (l) => store.resolve(l));
    expect(r).to.deep.equal([{ matched: true, mpid: '7', userIdentities: { customer_id: 'C-7' }, via: 'member' }]);
    let failed: unknown;
    try { await resolveMembers([{ distinctId: 'x' }], 'update-only', async () => { throw new Error('down'); }); } catch (e) { failed = e; }
    expect((failed as Error).message).to.equal('down');
  });

  it('a completing members page resolves additions and removals in one lookup; a failed lookup loses nothing', async () => {
    const cohorts = new MemoryCohortStore();
    const ids = new MemoryIdentityStore();
    await ids.learn([{ mpid: '11', distinct_id: 'a' }, { mpid: '12', distinct_id: 'b' }], 1);
    let calls = 0;
    const c = { ...ctx(cohorts), lookup: async (l: IdentityMap[]) => { calls++; return ids.resolve(l); } };
    await processWebhook(req(page('members', [{ mixpanel_distinct_id: 'a' }], { mixpanel_session_id: 'A' })), c);
    calls = 0;
    const r = await processWebhook(req(page('members', [{ mixpanel_distinct_id: 'b' }], { mixpanel_session_id: 'B' })), c);
    expect(calls).to.equal(1);
    expect(r.updates.map((m) => (m.payload as Any[]).map((b) => [b.mpid, b.user_attributes.VIP]))).to.deep.equal([[['12', true]], [['11', false]]]);
    const down = { ...ctx(new MemoryCohortStore(), { protection: 'create-and-update' }), lookup: async () => { throw new Error('redis down'); } };
    const r2 = await processWebhook(req(page('add_members', [{ mixpanel_distinct_id: 'x', $mparticle_user_id: '3' }, { mixpanel_distinct_id: 'y' }])), down);
    expect(r2.status).to.equal(200);
    expect(r2.error?.code).to.equal('STORE_UNAVAILABLE');
    expect((r2.updates[0].payload as Any[]).map((b) => b.mpid)).to.deep.equal(['3']);
    expect((r2.unmatched[0].payload as Any).members.map((m: Any) => m.mixpanel_distinct_id)).to.deep.equal(['y']);
  });

  it('removals beyond one message are resolved 1000 at a time, letting the event loop turn in between; a failing chunk loses nothing', async () => {
    const cohorts = new MemoryCohortStore();
    const ids = new MemoryIdentityStore();
    const old = Array.from({ length: 2500 }, (_, i) => ({ mixpanel_distinct_id: `old-${i}`, $mparticle_user_id: String(1000 + i) }));
    await ids.learn([{ mpid: '1', distinct_id: 'new' }], 1);
    await processWebhook(req(page('members', old, { mixpanel_session_id: 'A' })), ctx(cohorts));
    // The next export lists one member: it completes with 1 addition and 2,500 removals.
    const sizes: number[] = [];
    const turned: boolean[] = [];
    let turn = false;
    const c = {
      ...ctx(cohorts),
      lookup: async (l: IdentityMap[]) => {
        sizes.push(l.length);
        turned.push(turn);
        turn = false;
        setImmediate(() => { turn = true; }); // set only if the event loop gets a turn before the next lookup
        if (sizes.length === 2) throw new Error('redis down');
        return ids.resolve(l);
      },
    };
    const r = await processWebhook(req(page('members', [{ mixpanel_distinct_id: 'new' }], { mixpanel_session_id: 'B' })), c);
    expect(sizes).to.deep.equal([1000, 1000, 501]);
    expect(turned).to.deep.equal([false, true, true]);
    expect(r.status).to.equal(200);
    expect(r.error?.code).to.equal('STORE_UNAVAILABLE');
    const out = r.updates.map((m) => [m.cohort.change, (m.payload as Any[]).map((b) => b.mpid)]);
    expect(out.map(([change, mpids]) => [change, mpids.length])).to.deep.equal([['add', 1], ['remove', 1000], ['remove', 1000], ['remove', 500]]);
    // Every member is there once, in order, the failed chunk included (members carry their own MPID).
    expect(out.flatMap(([, mpids]) => mpids)).to.deep.equal(['1', ...old.map((m) => m.$mparticle_user_id)]);
    expect(r.counts).to.include({ added: 1, removed: 2500, complete: true });
  });
});

describe('cohort core: auth', () => {
  const secrets = { username: 'user', password: 'pa:ss' };
  it('accepts only the exact Basic pair (password may contain a colon)', () => {
    expect(checkAuth('basic', secrets, { authorization: basic('user', 'pa:ss') }, undefined)).to.equal('ok');
    expect(checkAuth('basic', secrets, { authorization: basic('user', 'pa:sS') }, undefined)).to.equal('wrong');
    expect(checkAuth('basic', secrets, { authorization: basic('use', 'pa:ss') }, undefined)).to.equal('wrong');
    expect(checkAuth('basic', secrets, {}, undefined)).to.equal('missing');
    expect(checkAuth('basic', {}, { authorization: basic('', '') }, undefined)).to.equal('wrong');
    expect(parseBasic('Bearer abc')).to.equal(undefined);
  });
  it('token mode compares the path segment', () => {
    expect(checkAuth('token', { token: 'abc' }, {}, 'abc')).to.equal('ok');
    expect(checkAuth('token', { token: 'abc' }, {}, 'abcd')).to.equal('wrong');
    expect(checkAuth('token', { token: 'abc' }, {}, undefined)).to.equal('missing');
    expect(checkAuth('token', {}, {}, '')).to.equal('missing');
  });
});

describe('cohort core: hostile JSON and body reading', () => {
  it('drops __proto__/constructor keys into null-prototype copies', () => {
    const v = parseJsonSafely('{"a":{"__proto__":{"p":1},"constructor":{"prototype":{"q":1}},"b":[{"__proto__":{"r":1}}]}}') as Any;
    expect(Object.getPrototypeOf(v)).to.equal(null);
    expect(Object.keys(v.a)).to.deep.equal(['b']);
    expect(({} as Any).p).to.equal(undefined);
    const spread = { ...v.a.b[0] };
    expect(Object.getPrototypeOf(spread)).to.equal(Object.prototype);
  });
  it('bounds nesting and value count', () => {
    expect(() => parseJsonSafely('['.repeat(100) + ']'.repeat(100))).to.throw(/nested/);
    expect(() => sanitizeJson(new Array(50).fill(1), { maxDepth: 5, maxValues: 10 })).to.throw(/more than 10/);
  });
  it('uses req.body when Node-RED already parsed the stream (req._body), else reads with a cap', async () => {
    const parsed = Object.assign(new PassThrough(), { headers: {}, _body: true, body: { a: 1 } }) as unknown as IncomingMessage;
    expect(await readBody(parsed, 10)).to.deep.equal({ kind: 'parsed', value: { a: 1 } });
    const small = Object.assign(new PassThrough(), { headers: {} });
    small.end('{"a":1}');
    expect(await readBody(small as unknown as IncomingMessage, 100)).to.deep.equal({ kind: 'raw', text: '{"a":1}' });
    const big = Object.assign(new PassThrough(), { headers: {} });
    big.write('x'.repeat(60));
    big.write('x'.repeat(60));
    expect(await readBody(big as unknown as IncomingMessage, 100)).to.deep.equal({ kind: 'too-large' });
    const declared = Object.assign(new PassThrough(), { headers: { 'content-length': '1000' } });
    expect(await readBody(declared as unknown as IncomingMessage, 100)).to.deep.equal({ kind: 'too-large' });
  });
});
