import fs from 'node:fs';
import path from 'node:path';
import Ajv from 'ajv';
import { expect } from 'chai';
import YAML from 'yaml';
import { FakeMixpanel } from '../helpers/fake-mixpanel';
import { helper, nextMessage, nodeModules } from '../helpers/node-red';

/**
 * The requests the node really sends, checked against Mixpanel's own OpenAPI description of `/engage` (the
 * `profile-set` operation), which lives beside the repository in shared/mixpanel/ and is not copied into it.
 */
const SPEC = process.env.MIXPANEL_OPENAPI ?? path.resolve(__dirname, '../../../shared/mixpanel/ingestion.openapi.yaml');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

describe("requests validate against Mixpanel's OpenAPI description of /engage", function () {
  const mp = new FakeMixpanel();
  before(async function () {
    if (!fs.existsSync(SPEC)) this.skip(); // reported as pending, never as passing
    await mp.start();
  });
  after(async () => {
    await mp.stop();
    await helper.unload();
  });

  it('every update and every query parameter matches the profile-set operation', async () => {
    const spec = YAML.parse(fs.readFileSync(SPEC, 'utf8'));
    const op = spec.paths['/engage#profile-set'].post;
    const ajv = new Ajv({ strict: false, allErrors: true });
    const validateBody = ajv.compile(op.requestBody.content['application/json'].schema);
    const params: Record<string, ReturnType<typeof ajv.compile>> = {};
    for (const p of op.parameters) params[p.name] = ajv.compile(p.schema);

    await helper.load(nodeModules('mixpanel-config', 'mixpanel-sync-store', 'mixpanel-audience-out'), [
      { id: 'tab', type: 'tab' },
      { id: 'cfg', type: 'mixpanel-config', region: 'custom', apiHost: mp.url },
      { id: 'st', type: 'mixpanel-sync-store', backend: 'memory' },
      { id: 'out', type: 'mixpanel-audience-out', z: 'tab', mixpanel: 'cfg', store: 'st', perAudienceAttribute: true, flushMs: 10, wires: [['h']] },
      { id: 'h', type: 'helper', z: 'tab' },
    ], { cfg: { token: 'tok' } });
    helper.getNode('out').receive({
      payload: [
        { user: { customer_id: 'a', ios_idfv: 'v' }, audiences: [{ id: 1, name: 'One', action: 'add' }] },
        { user: { android_uuid: 'b' }, audiences: [{ id: 2, name: 'Two', action: 'remove' }] },
      ],
    });
    await nextMessage('h');
    expect(mp.requests).to.have.length.greaterThan(0);
    for (const r of mp.requests) {
      const ok = validateBody(JSON.parse(r.body));
      expect(ok, JSON.stringify(validateBody.errors)).to.equal(true);
      expect(r.contentType).to.equal('application/json');
      for (const [name, value] of r.query) {
        expect(params, `query parameter ${name} is not in the spec`).to.have.property(name);
        expect(params[name](Number(value)), `${name}=${value}`).to.equal(true);
      }
      const updates: Any[] = JSON.parse(r.body);
      expect(updates.length).to.be.at.most(2000);
    }
  });
});
