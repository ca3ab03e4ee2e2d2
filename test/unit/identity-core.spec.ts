import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { expect } from 'chai';
import { SyncError } from '../../src/errors';
import { chooseDistinctId } from '../../src/identity/distinct';
import { normalizeIdentityName } from '../../src/identity/names';
import { parseIdentityInput } from '../../src/identity/parse';
import { IDENTITY_PRIORITY, normalizeIdentityValue, orderedEntries } from '../../src/identity/values';
import { IdentityResolveSettings } from '../../src/schemas/identity';
import { openMemoryStore } from '../../src/store/memory';

type Any = any;

describe('identity core', () => {
  it('maps every spelling to the canonical name and never reaches Object.prototype', () => {
    const cases: Record<string, string | undefined> = {
      customerid: 'customer_id', customer: 'customer_id', CUSTOMER_ID: 'customer_id', other2: 'other_id_2', '1': 'customer_id',
      ios_idfa: 'ios_advertising_id', ios_vendor_id: 'ios_idfv', android_id: 'android_uuid', google_advertising_id: 'android_advertising_id',
      android_aaid: 'android_advertising_id', $distinct_id: 'distinct_id', $mparticle_user_id: 'mpid', $user_id: 'distinct_id',
      __proto__: undefined, constructor: undefined, toString: undefined, nonsense: undefined,
    };
    for (const [k, v] of Object.entries(cases)) expect(normalizeIdentityName(k), k).to.equal(v);
    expect(normalizeIdentityName('__proto__')).to.equal(undefined);
    expect(normalizeIdentityName(1.5)).to.equal(undefined);
  });

  it('normalises values: MPIDs as strings, case, zero ad IDs, absent values, bad types', () => {
    expect(normalizeIdentityValue('mpid', '7346244611012968789')).to.deep.equal({ value: '7346244611012968789' });
    expect(normalizeIdentityValue('mpid', -5)).to.deep.equal({ value: '-5' });
    expect(normalizeIdentityValue('mpid', 7346244611012968789)).to.have.property('error');
    expect(normalizeIdentityValue('mpid', '9223372036854775808')).to.have.property('error');
    expect(normalizeIdentityValue('email', ' A@B.COM ')).to.deep.equal({ value: 'a@b.com' });
    expect(normalizeIdentityValue('ios_idfv', 'abc-def')).to.deep.equal({ value: 'ABC-DEF' });
    expect(normalizeIdentityValue('ios_advertising_id', '00000000-0000-0000-0000-000000000000')).to.deep.equal({ skip: true });
    expect(normalizeIdentityValue('customer_id', '')).to.deep.equal({ skip: true });
    expect(normalizeIdentityValue('customer_id', null)).to.deep.equal({ skip: true });
    expect(normalizeIdentityValue('customer_id', 42)).to.deep.equal({ value: '42' });
    expect(normalizeIdentityValue('customer_id', { a: 1 })).to.have.property('error');
    expect(normalizeIdentityValue('customer_id', 'x'.repeat(2000))).to.have.property('error');
    expect(normalizeIdentityValue('customer_id', 'a\ud83dz')).to.deep.equal({ value: 'a\ufffdz' });
    expect(normalizeIdentityValue('email', 'X\udc00@Y.z')).to.deep.equal({ value: 'x\ufffd@y.z' });
    expect(normalizeIdentityValue('customer_id', 'emoji😀')).to.deep.equal({ value: 'emoji😀' });
  });

  it('parses flat, mParticle, Firehose and plain shapes', () => {
    expect(parseIdentityInput({ customerid: 'c', $device_id: 'd1', name: 'ignored' })).to.deep.equal({ many: false, items: [{ customer_id: 'c', distinct_id: '$device:d1' }] });
    expect(parseIdentityInput({ mpid: '5', user_identities: { customer_id: 'c' }, device_info: { ios_idfv: 'v' } }).items[0])
      .to.deep.equal({ mpid: '5', customer_id: 'c', ios_idfv: 'V' });
    expect(parseIdentityInput({ user_profiles: [{ mpid: '6', user_identities: [{ type: 'customer', value: 'c6' }, { type: 'email', encoding: 'sha256', value: 'ABCD' }] }] }))
      .to.deep.equal({ many: true, items: [{ mpid: '6', customer_id: 'c6', email: 'sha256:abcd' }] });
    expect(parseIdentityInput([{ user: { email: 'x@y.z' } }, {}]).items).to.deep.equal([{ email: 'x@y.z' }, {}]);
    expect(parseIdentityInput(JSON.parse('{"__proto__": {"customer_id": "evil"}, "email": "e@x.y"}')).items).to.deep.equal([{ email: 'e@x.y' }]);
  });

  it('bad input is one INVALID_INPUT error naming every field', () => {
    const err = (() => { try { parseIdentityInput([{ mpid: 1.5 }, { email: ['a'] }, 'x']); } catch (e) { return e as SyncError; } })()!;
    expect(err.code).to.equal('INVALID_INPUT');
    expect(err.issues.map((i) => i.field)).to.deep.equal(['payload[0].mpid', 'payload[1].email', 'payload[2]']);
    expect(() => parseIdentityInput(42)).to.throw(SyncError, /payload/);
    expect(() => parseIdentityInput({ user_identities: 'x' })).to.throw(SyncError, /payload.user_identities/);
  });

  it('orders a map\'s identities by priority, whatever the key order; skips absent values and unknown keys', () => {
    expect(orderedEntries({ ios_idfv: 'V', email: 'e', mpid: '5', customer_id: 'c' } as Any)).to.deep.equal([
      ['mpid', '5', 'mpid:5'], ['customer_id', 'c', 'customer_id:c'], ['email', 'e', 'email:e'], ['ios_idfv', 'V', 'ios_idfv:V'],
    ]);
    expect(orderedEntries({ push_token: 't:1', name: 'x', email: undefined } as Any)).to.deep.equal([['push_token', 't:1', 'push_token:t:1']]);
    expect(orderedEntries({})).to.deep.equal([]);
    // Every name, in reverse: the same order as the priority list.
    const all = Object.fromEntries([...IDENTITY_PRIORITY].reverse().map((n) => [n, `v-${n}`]));
    expect(orderedEntries(all).map((e) => e[0])).to.deep.equal([...IDENTITY_PRIORITY]);
  });

  it('chooses the distinct ID like External Identity Type, with a documented fallback', () => {
    const p = { key: '1', mpid: '1', identities: { email: 'e', ios_idfv: 'V' } };
    expect(chooseDistinctId(p, 'customer_id')).to.deep.equal({ distinctId: '1', from: 'mpid' });
    expect(chooseDistinctId(p, 'email')).to.deep.equal({ distinctId: 'e', from: 'email' });
    expect(chooseDistinctId({ key: 'anon:x', identities: { ios_idfv: 'V', distinct_id: '$device:d' } }, 'customer_id')).to.deep.equal({ distinctId: '$device:d', from: 'distinct_id' });
    expect(chooseDistinctId({ key: 'anon:x', identities: { push_token: 't' } }, 'customer_id')).to.deep.equal({ distinctId: 't', from: 'push_token' });
    expect(chooseDistinctId({ key: 'anon:x', identities: { push_token: 't', amp_id: 'a' } }, 'amp_id')).to.deep.equal({ distinctId: 'a', from: 'amp_id' });
    expect(chooseDistinctId({ key: 'anon:x', identities: { push_token: 't' } }, 'amp_id')).to.deep.equal({ distinctId: 't', from: 'push_token' });
    expect(chooseDistinctId({ key: 'anon:x', identities: {} }, 'customer_id')).to.equal(undefined);
  });

  it('the editor defaults agree with the settings schema', () => {
    const html = fs.readFileSync(path.join(__dirname, '..', '..', 'nodes', 'identity-resolve.html'), 'utf8');
    const defs: Record<string, Any> = {};
    const jq: Any = () => ({ length: 0, val: () => undefined, on: () => jq(), trigger: () => jq(), toggle: () => jq() });
    const RED = { nodes: { registerType: (t: string, d: Any) => { defs[t] = d; } }, validators: {}, _: (k: string) => k, settings: {} };
    for (const m of html.matchAll(/<script type="text\/javascript">([\s\S]*?)<\/script>/g)) vm.runInNewContext(m[1], { RED, $: jq });
    const d = defs['identity-resolve'];
    expect(d).to.include({ category: 'Mixpanel', color: '#B3A1FF', inputs: 1, outputs: 2 });
    const fromEditor = Object.fromEntries(Object.entries(d.defaults as Record<string, { value: unknown }>).map(([k, v]) => [k, v.value]));
    const fromSchema = IdentityResolveSettings.parse({});
    for (const [k, v] of Object.entries(fromSchema)) expect(fromEditor[k], k).to.deep.equal(v);
  });

  it('the example flow imports with a comment node and valid settings', () => {
    const flow = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'examples', 'identity-resolve.json'), 'utf8')) as Any[];
    expect(flow.some((n) => n.type === 'comment')).to.equal(true);
    for (const n of flow.filter((x) => x.type === 'identity-resolve')) IdentityResolveSettings.parse(n);
  });

  it('memory store: learn + resolve of 1000-user arrays is fast', async () => {
    const store = openMemoryStore();
    const obs = Array.from({ length: 1000 }, (_, i) => ({ mpid: String(i + 1), customer_id: `c${i}` }));
    await store.identities.learn(obs, 1);
    const res = await store.identities.resolve(obs.map((o) => ({ customer_id: o.customer_id })));
    expect(res.every((m, i) => m?.profile.mpid === String(i + 1))).to.equal(true);
  });
});
