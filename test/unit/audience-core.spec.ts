import { expect } from 'chai';
import { applyUserChange, segmentMembership } from '../../src/audience/membership';
import { parseAudienceInput } from '../../src/audience/parse-input';
import { chooseTargets, userKey } from '../../src/audience/targets';
import { backoffDelay, MIXPANEL_BACKOFF, parseRetryAfter } from '../../src/mixpanel/backoff';
import { classifyReply } from '../../src/mixpanel/engage-client';
import { forwardAudienceMessage } from '../../src/audience/forwarder';
import { AudienceSender, encodeEngageUpdate, toEngageUpdate } from '../../src/audience/sender';
import { AudienceOutSettings } from '../../src/schemas/settings';
import { openMemoryStore } from '../../src/store/memory';
import { StoredOutboxItem } from '../../src/store/stored-outbox-item';
import { normalizeIdentityName, normalizeMpid } from '../../src/identity/names';

describe('audience core', () => {
  describe('SegmentMembership', () => {
    it('quotes IDs, separates with commas and no spaces, keeps join order', () => {
      expect(segmentMembership([{ id: '11036', name: 'A' }, { id: '11034', name: 'I' }])).to.equal("'11036','11034'");
      expect(segmentMembership([])).to.equal('');
    });

    it('a re-add keeps the audience in its place; a removal closes the gap', () => {
      let m = applyUserChange(undefined, { changes: [{ id: '1', action: 'add' }, { id: '2', action: 'add' }, { id: '3', action: 'add' }] }, ['t'], false);
      m = applyUserChange(m.membership, { changes: [{ id: '1', action: 'add' }, { id: '2', action: 'remove' }] }, ['t'], false);
      expect(m.props).to.deep.equal({ SegmentMembership: "'1','3'" });
    });

    it('names In <Audience> after the stored name when a removal carries none', () => {
      const m = applyUserChange(undefined, { changes: [{ id: '7', name: 'Seven', action: 'add' }] }, ['t'], true);
      const r = applyUserChange(m.membership, { changes: [{ id: '7', action: 'remove' }] }, ['t'], true);
      expect(r.props).to.deep.equal({ SegmentMembership: '', 'In Seven': false });
    });

    it('remembers every target profile written, for clean-up', () => {
      const a = applyUserChange(undefined, { changes: [{ id: '1', action: 'add' }] }, ['x'], false);
      const b = applyUserChange(a.membership, { changes: [{ id: '2', action: 'add' }] }, ['y'], false);
      expect(b.membership.targets).to.deep.equal(['x', 'y']);
    });
  });

  describe('input shapes', () => {
    it('normalises Firehose identity spellings to the canonical names', () => {
      const parsed = parseAudienceInput({
        type: 'audience_membership_change_request',
        user_profiles: [{
          mpid: '-42',
          user_identities: [{ type: 'customer', value: 'C' }],
          device_identities: [{ type: 'ios_vendor_id', value: 'V' }, { type: 'android_id', value: 'A' }, { type: 'google_advertising_id', value: 'G' }],
          audiences: [{ audience_id: 1, audience_name: 'One', action: 'add' }, { audience_id: 2, audience_name: 'Two', action: 'attribute_update' }],
        }],
      });
      expect(parsed.kind).to.equal('changes');
      if (parsed.kind !== 'changes') return;
      const u = parsed.users[0];
      expect(Object.fromEntries(u.identities)).to.deep.equal({ mpid: '-42', customer_id: 'C', ios_idfv: 'V', android_uuid: 'A', android_advertising_id: 'G' });
      expect(u.changes).to.deep.equal([{ id: '1', name: 'One', action: 'add' }]);
    });

    it('names an unknown identity key in the plain form', () => {
      const parsed = parseAudienceInput({ user: { customerNumber: '1' }, audiences: [{ id: 1, action: 'add' }] });
      expect(parsed.kind).to.equal('changes');
      if (parsed.kind !== 'changes') return;
      expect(parsed.issues[0].field).to.equal('payload.user.customerNumber');
    });

    it('rejects a message type it does not handle, naming payload.type', () => {
      const parsed = parseAudienceInput({ type: 'event_processing_request' });
      expect(parsed).to.deep.include({ kind: 'invalid' });
      if (parsed.kind === 'invalid') expect(parsed.issues[0].field).to.equal('payload.type');
    });

    it('requires either changes or a snapshot', () => {
      const parsed = parseAudienceInput({ user: { customer_id: '1' } });
      if (parsed.kind !== 'changes') throw new Error(parsed.kind);
      expect(parsed.issues[0].field).to.equal('payload.audiences');
    });
  });

  describe('identities', () => {
    it('accepts every spelling of the same identity', () => {
      for (const n of ['customer', 'customerid', 'customer_id', 'CustomerID', 1, '1']) expect(normalizeIdentityName(n)).to.equal('customer_id');
      for (const n of ['ios_idfa', 'ios_advertising_id', 'idfa']) expect(normalizeIdentityName(n)).to.equal('ios_advertising_id');
      expect(normalizeIdentityName('$mparticle_user_id')).to.equal('mpid');
      expect(normalizeIdentityName('$distinct_id')).to.equal('distinct_id');
      expect(normalizeIdentityName('other7')).to.equal('other_id_7');
      expect(normalizeIdentityName('shoe_size')).to.equal(undefined);
    });

    it('keeps MPIDs as exact 64-bit strings and refuses lossy numbers', () => {
      expect(normalizeMpid('9223372036854775807')).to.equal('9223372036854775807');
      expect(normalizeMpid('-9223372036854775808')).to.equal('-9223372036854775808');
      expect(normalizeMpid('9223372036854775808')).to.equal(undefined);
      expect(normalizeMpid(7346244611012968789)).to.equal(undefined);
      expect(normalizeMpid(12345)).to.equal('12345');
      expect(normalizeMpid('0')).to.equal(undefined);
    });

    it('chooses targets in list order, each or first', () => {
      const ids = new Map([['ios_idfv', 'V'], ['customer_id', 'C']] as const);
      expect(chooseTargets(new Map(ids), ['customer_id', 'android_uuid', 'ios_advertising_id', 'ios_idfv'], 'each')).to.deep.equal(['C', 'V']);
      expect(chooseTargets(new Map(ids), ['ios_idfv', 'customer_id'], 'first')).to.deep.equal(['V']);
      expect(userKey(new Map(ids))).to.equal('customer_id:C');
    });
  });

  describe('request encoding', () => {
    it('writes stored props JSON into the update: the same bytes as encoding the parsed object', () => {
      const props = { SegmentMembership: "'11036','11034'", 'In Ibiza "Dreamers"': true, 'In \u00e9t\u00e9 😀': false };
      const token = 'a"b\\c';
      const stored = new StoredOutboxItem('cust-"1"\\', JSON.stringify(props), 3, 1, 0, 0);
      const plain = { distinctId: 'cust-"1"\\', props, version: 3, count: 1, attempts: 0, queuedAt: 0 };
      const bytes = JSON.stringify(toEngageUpdate(token, plain));
      expect(encodeEngageUpdate(token, JSON.stringify(token), stored)).to.equal(bytes);
      expect(encodeEngageUpdate(token, JSON.stringify(token), plain)).to.equal(bytes);
      expect(stored.props).to.deep.equal(props);
    });
  });

  describe('sender', () => {
    it('hands a short batch it is holding for the flush window back to the store when it closes', async () => {
      const { audience } = openMemoryStore();
      const posted: string[] = [];
      const sender = new AudienceSender({
        store: audience, scope: 's', token: () => 't', post: async (body) => { posted.push(body); return { kind: 'ok' }; },
        batchSize: 2000, flushMs: 60000, concurrency: 2, retryWindowMs: 3600000, authRetryMs: 1000,
        backoff: { baseMs: 20, maxMs: 50, jitterMinMs: 0, jitterMaxMs: 1, retryAfterCapMs: 100 },
        events: { acked() {}, dead() {}, state() {} },
      });
      await forwardAudienceMessage({ store: audience, scope: 's', settings: AudienceOutSettings.parse({}), now: Date.now },
        [{ user: { customer_id: 'c1' }, audiences: [{ id: 1, action: 'add' }] }]);
      await sender.start(); // claims the one update at once and holds it: it has not waited out the flush window
      await new Promise((r) => setTimeout(r, 30));
      expect(await audience.claimDue('s', 10, Date.now(), 1000), 'held, so leased').to.deep.equal([]);
      await sender.close();
      expect(posted).to.deep.equal([]);
      // Not left leased behind a closed sender (a shared Redis store would only free it when the lease ran out).
      expect((await audience.claimDue('s', 10, Date.now(), 1000)).map((i) => i.distinctId)).to.deep.equal(['c1']);
    });
  });

  describe('Mixpanel replies', () => {
    it('reads the verbose body: status 0 is a rejection even with HTTP 200', () => {
      expect(classifyReply(200, '{"status":1,"error":null}', undefined, 0)).to.deep.equal({ kind: 'ok' });
      expect(classifyReply(200, '{"status":0,"error":"bad"}', undefined, 0)).to.deep.include({ kind: 'rejected' });
      expect(classifyReply(200, '0', undefined, 0)).to.deep.include({ kind: 'rejected' });
    });

    it('classifies statuses the way Mixpanel asks clients to', () => {
      expect(classifyReply(400, '', undefined, 0).kind).to.equal('rejected');
      expect(classifyReply(404, '', undefined, 0).kind).to.equal('rejected');
      expect(classifyReply(501, '', undefined, 0).kind).to.equal('rejected');
      expect(classifyReply(401, '', undefined, 0).kind).to.equal('auth');
      expect(classifyReply(403, '', undefined, 0).kind).to.equal('auth');
      expect(classifyReply(413, '', undefined, 0).kind).to.equal('too-large');
      expect(classifyReply(429, '', '7', 0)).to.deep.include({ kind: 'retry', retryAfterMs: 7000 });
      expect(classifyReply(502, '', undefined, 0).kind).to.equal('retry');
      expect(classifyReply(503, '', undefined, 0).kind).to.equal('retry');
    });

    it('backs off from 2 s doubling to 60 s with 1–5 s jitter, honouring a longer Retry-After', () => {
      expect(backoffDelay(MIXPANEL_BACKOFF, 0, undefined, () => 0)).to.equal(3000);
      expect(backoffDelay(MIXPANEL_BACKOFF, 1, undefined, () => 1)).to.equal(9000);
      expect(backoffDelay(MIXPANEL_BACKOFF, 10, undefined, () => 0)).to.equal(61000);
      expect(backoffDelay(MIXPANEL_BACKOFF, 0, 30000, () => 0)).to.equal(30000);
      expect(backoffDelay(MIXPANEL_BACKOFF, 0, 3600000, () => 0)).to.equal(600000);
      expect(parseRetryAfter('Wed, 21 Oct 2015 07:28:10 GMT', Date.parse('Wed, 21 Oct 2015 07:28:00 GMT'))).to.equal(10000);
    });
  });
});
