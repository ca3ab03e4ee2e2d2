import path from 'node:path';
import { expect } from 'chai';
import { FakeMixpanel } from '../helpers/fake-mixpanel';
import { makeUserDir, removeUserDir, startRed, type RedProcess } from '../helpers/red-process';
import { waitFor } from '../helpers/node-red';

/**
 * A real node-red process killed with SIGKILL in the middle of sending, then started again on the same SQLite file:
 * every accepted change reaches Mixpanel, and no profile ever receives an older value after a newer one.
 */
describe('crash: SIGKILL mid-flush, then restart', function () {
  this.timeout(120000);
  const mp = new FakeMixpanel();
  let red: RedProcess | undefined;
  let userDir: string;

  before(() => mp.start());
  after(async () => {
    await red?.stop('SIGKILL');
    await mp.stop();
    removeUserDir(userDir);
  });

  it('delivers every pending update after the restart, never a stale value after a newer one', async () => {
    userDir = makeUserDir('crash');
    const flows = [
      { id: 'tab', type: 'tab' },
      { id: 'cfg', type: 'mixpanel-config', region: 'custom', apiHost: mp.url },
      { id: 'st', type: 'mixpanel-sync-store', backend: 'sqlite', path: path.join(userDir, 'state.db') },
      { id: 'in', type: 'http in', z: 'tab', url: '/aud', method: 'post', wires: [['out']] },
      { id: 'out', type: 'mixpanel-audience-out', z: 'tab', mixpanel: 'cfg', store: 'st', outputWhen: 'queued', batchSize: 40, concurrency: 2, flushMs: 5, wires: [['res']] },
      { id: 'res', type: 'http response', z: 'tab' },
    ];
    const creds = { cfg: { token: 'crash-token' } };
    mp.delayMs = 120; // a slow Mixpanel, so the kill lands with requests in flight and a backlog queued
    red = await startRed(userDir, flows, creds);

    const USERS = 100;
    const ROUNDS = 12;
    for (let round = 1; round <= ROUNDS; round++) {
      const body = Array.from({ length: USERS }, (_, u) => ({ user: { customer_id: `u${u}` }, audiences: [{ id: round, action: 'add' }] }));
      const res = await fetch(`${red.url}/aud`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      expect(res.status).to.equal(200); // answered once stored: from here on the change must not be lost
    }
    await waitFor(() => mp.requests.length >= 3, 10000, 'requests in flight');
    await red.stop('SIGKILL');
    const beforeRestart = mp.requests.length;

    mp.delayMs = 0;
    red = await startRed(userDir, flows, creds);
    const final = Array.from({ length: ROUNDS }, (_, i) => `'${i + 1}'`).join(',');
    await waitFor(() => [...Array(USERS).keys()].every((u) => mp.profiles.get(`u${u}`)?.SegmentMembership === final), 30000, 'every profile at its final state');
    expect(mp.requests.length).to.be.greaterThan(beforeRestart);

    // Order check: each profile's accepted values only ever grow (each round adds an audience).
    const seen = new Map<string, number>();
    for (const u of mp.acceptedUpdates) {
      const id = String(u.$distinct_id);
      const len = String((u.$set as Record<string, unknown>).SegmentMembership).length;
      expect(len, `${id} went back to an older SegmentMembership`).to.be.at.least(seen.get(id) ?? 0);
      seen.set(id, len);
    }
  });
});
