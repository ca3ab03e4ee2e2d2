import { expect } from 'chai';
import { cleanupTempDirs, helper, nextMessage, nodeModules, tempDir } from '../helpers/node-red';

/** identity-resolve inside a real Node-RED runtime, on the memory, SQLite and Redis stores. */
type Any = any;

const BIG_MPID = '7346244611012968789';

function flow(opts: Record<string, unknown>, storeOpts: Record<string, unknown>) {
  return [
    { id: 'tab', type: 'tab' },
    { id: 'st', type: 'mixpanel-sync-store', ...storeOpts },
    { id: 'lrn', type: 'identity-resolve', z: 'tab', store: 'st', mode: 'learn', wires: [['l1'], ['l2']] },
    { id: 'ir', type: 'identity-resolve', z: 'tab', store: 'st', wires: [['o1'], ['o2']], ...opts },
    { id: 'l1', type: 'helper', z: 'tab' },
    { id: 'l2', type: 'helper', z: 'tab' },
    { id: 'o1', type: 'helper', z: 'tab' },
    { id: 'o2', type: 'helper', z: 'tab' },
    { id: 'c', type: 'catch', z: 'tab', scope: ['ir', 'lrn'], uncaught: false, wires: [['ch']] },
    { id: 'ch', type: 'helper', z: 'tab' },
  ];
}

const MODULES = () => nodeModules('mixpanel-sync-store', 'identity-resolve');

const stores: Array<[string, () => Record<string, unknown>]> = [
  ['memory', () => ({ backend: 'memory' })],
  ['sqlite', () => ({ backend: 'sqlite', path: `${tempDir()}/ids.db` })],
  ['redis', () => ({ backend: 'redis', url: process.env.REDIS_URL ?? 'redis://127.0.0.1:16379', keyPrefix: `node-test:${process.pid}:${Date.now()}:${Math.random()}:` })],
];

for (const [backend, storeOpts] of stores) {
  describe(`identity-resolve (${backend} store)`, function () {
    this.timeout(20000);
    afterEach(async () => {
      await helper.unload();
      cleanupTempDirs();
    });

    async function load(opts: Record<string, unknown> = {}) {
      await helper.load(MODULES(), flow(opts, storeOpts()), {});
    }

    async function learn(payload: unknown) {
      const got = nextMessage('l1');
      helper.getNode('lrn').receive({ payload });
      return got;
    }

    it('learns a user (learn mode passes the message on) and resolves it by any identity, MPID as a string', async () => {
      await load({ mode: 'resolve' });
      const passed = await learn({ $mparticle_user_id: BIG_MPID, customerid: 'ABC123', email: 'Ed@Example.com', ios_idfa: '613ff528-afd1-4c1b-9628-e6ed25ece9c0' });
      expect(passed.identity).to.equal(undefined);
      expect(passed.payload.customerid).to.equal('ABC123');
      const got = nextMessage('o1');
      helper.getNode('ir').receive({ payload: { email: 'ed@example.com' }, topic: 't' });
      const msg = await got;
      expect(msg.topic).to.equal('t');
      expect(msg.identity).to.deep.equal({
        index: 0, key: BIG_MPID, mpid: BIG_MPID, distinctId: 'ABC123', distinctIdFrom: 'customer_id', matchedBy: 'email',
        identities: { customer_id: 'ABC123', email: 'ed@example.com', ios_advertising_id: '613FF528-AFD1-4C1B-9628-E6ED25ECE9C0' },
      });
    });

    it('resolves an array in one message: resolved users on output 1, the others on output 2 with the reason', async () => {
      await load({ mode: 'resolve', distinctIdFrom: 'mpid' });
      await learn([{ mpid: '1', customer_id: 'c1' }, { mpid: '2', ios_idfv: 'v2' }]);
      const o1 = nextMessage('o1');
      const o2 = nextMessage('o2');
      helper.getNode('ir').receive({ payload: [{ customer_id: 'nope' }, { customer_id: 'c1' }, { name: 'no ids' }, { device_identities: [{ type: 'ios_vendor_id', value: 'V2' }] }] });
      const [ok, bad] = await Promise.all([o1, o2]);
      expect(ok.payload).to.deep.equal([{ customer_id: 'c1' }, { device_identities: [{ type: 'ios_vendor_id', value: 'V2' }] }]);
      expect(ok.identity.map((i: Any) => [i.index, i.mpid, i.distinctId, i.matchedBy])).to.deep.equal([[1, '1', '1', 'customer_id'], [3, '2', '2', 'ios_idfv']]);
      expect(bad.payload).to.deep.equal([{ customer_id: 'nope' }, { name: 'no ids' }]);
      expect(bad.unresolved.map((u: Any) => [u.index, u.reason])).to.deep.equal([[0, 'not-found'], [2, 'no-identity']]);
    });

    it('both: learns and answers with the profile; an anonymous device joins the MPID profile later', async () => {
      await load({ mode: 'both', distinctIdFrom: 'customer_id' });
      let got = nextMessage('o1');
      helper.getNode('ir').receive({ payload: { ios_idfv: 'dev-1', $device_id: 'abc' } });
      let msg = await got;
      expect(msg.identity.key).to.match(/^anon:/);
      expect(msg.identity.distinctId).to.equal('$device:abc');
      got = nextMessage('o1');
      helper.getNode('ir').receive({ payload: { mpid: 42, user_identities: { customer_id: 'C42' }, device_identities: [{ type: 'ios_vendor_id', value: 'DEV-1' }] } });
      msg = await got;
      expect(msg.identity).to.deep.include({ key: '42', mpid: '42', distinctId: 'C42' });
      expect(msg.identity.identities).to.deep.equal({ customer_id: 'C42', ios_idfv: 'DEV-1', distinct_id: '$device:abc' });
    });

    it('a value with a lone surrogate (a cut emoji) is learnt and found again', async () => {
      await load({ mode: 'resolve' });
      await learn({ mpid: '9', customer_id: 'cut\ud83d' });
      const got = nextMessage('o1');
      helper.getNode('ir').receive({ payload: { customer_id: 'cut\ud83d' } });
      const msg = await got;
      expect(msg.identity).to.deep.include({ key: '9', matchedBy: 'customer_id', distinctId: 'cut\ufffd' });
    });

    it('bad input: one error to Catch naming the field, with a stable code, nothing sent', async () => {
      await load({ mode: 'both' });
      const caught = nextMessage('ch');
      helper.getNode('ir').receive({ payload: [{ customer_id: 'ok' }, { mpid: 7346244611012968789 }] });
      const err = await caught;
      expect(err.error.message).to.contain('payload[1].mpid');
      expect(err.error.code).to.equal('INVALID_INPUT');
      const caught2 = nextMessage('ch');
      helper.getNode('ir').receive({ payload: 'just a string' });
      expect((await caught2).error.code).to.equal('INVALID_INPUT');
    });

    it('an unknown setting value is a configuration error reported on every message', async () => {
      await load({ mode: 'guess' });
      const caught = nextMessage('ch');
      helper.getNode('ir').receive({ payload: { customer_id: 'x' } });
      const err = await caught;
      expect(err.error.message).to.contain('mode');
    });
  });
}
