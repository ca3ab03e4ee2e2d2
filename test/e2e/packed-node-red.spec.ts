import path from 'node:path';
import { expect } from 'chai';
import { FakeMixpanel } from '../helpers/fake-mixpanel';
import { makeUserDir, packedFiles, removeUserDir, startRed, type RedProcess } from '../helpers/red-process';
import { waitFor } from '../helpers/node-red';

/** The packed package in a real `node-red` process: what a user installs is what runs. */
describe('end to end: the packed package in a real node-red process', function () {
  this.timeout(90000);
  const mp = new FakeMixpanel();
  const dirs: string[] = [];
  let red: RedProcess | undefined;

  before(() => mp.start());
  after(async () => {
    await red?.stop('SIGKILL');
    await mp.stop();
    for (const d of dirs) removeUserDir(d);
  });

  it('ships only what a user needs', () => {
    const files = packedFiles();
    expect(files).to.include.members(['package.json', 'README.md', 'LICENSE', 'dist/nodes/mixpanel-audience-out.js', 'dist/nodes/mixpanel-audience-out.html', 'dist/nodes/locales/en-US/mixpanel-audience-out.json', 'dist/nodes/icons/mixpanel-audience-out.svg', 'examples/mixpanel-audience-out.json']);
    expect(files.filter((f) => /^(src|test|bench|scripts|nodes)\//.test(f) || f.endsWith('.ts') || f.startsWith('.'))).to.deep.equal([]);
  });

  it('forwards an mParticle request arriving over HTTP and answers it, and the profile lands in Mixpanel', async () => {
    const userDir = makeUserDir('audience');
    dirs.push(userDir);
    red = await startRed(userDir, [
      { id: 'tab', type: 'tab' },
      { id: 'cfg', type: 'mixpanel-config', region: 'custom', apiHost: mp.url },
      { id: 'st', type: 'mixpanel-sync-store', backend: 'sqlite', path: path.join(userDir, 'state.db') },
      { id: 'in', type: 'http in', z: 'tab', url: '/mparticle', method: 'post', wires: [['out']] },
      { id: 'out', type: 'mixpanel-audience-out', z: 'tab', mixpanel: 'cfg', store: 'st', perAudienceAttribute: true, flushMs: 20, wires: [['res']] },
      { id: 'res', type: 'http response', z: 'tab' },
    ], { cfg: { token: '${E2E_TOKEN}' } }, { E2E_TOKEN: 'e2e-token' });

    const res = await fetch(`${red.url}/mparticle`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        type: 'audience_membership_change_request', id: 'e2e-1', firehose_version: '3.2.0', timestamp_ms: Date.now(),
        user_profiles: [{
          mpid: '-3512045978116385270',
          user_identities: [{ type: 'customer', encoding: 'raw', value: 'ABC123' }],
          audiences: [{ audience_id: 11036, audience_name: 'Aspiring Athenians', action: 'add' }, { audience_id: 11034, audience_name: 'Ibiza Dreamers', action: 'add' }],
        }],
      }),
    });
    expect(res.status).to.equal(200);
    expect(await res.json()).to.include({ type: 'audience_membership_change_response', id: 'e2e-1', suspend_subscription: false });
    await waitFor(() => mp.profiles.has('ABC123'), 10000, 'the profile update');
    expect(mp.profiles.get('ABC123')).to.deep.equal({
      SegmentMembership: "'11036','11034'", 'In Aspiring Athenians': true, 'In Ibiza Dreamers': true,
    });
    expect(mp.requests[0].updates[0].$token).to.equal('e2e-token'); // ${ENV} in the credential works
    expect(red.log.join('')).to.not.contain('e2e-token');
  });
});
