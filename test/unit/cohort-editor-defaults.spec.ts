import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { expect } from 'chai';
import { CohortInSettings } from '../../src/cohort/settings';

/** The editor's defaults for mixpanel-cohort-in must equal what the runtime assumes for a missing value. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

describe('cohort-in editor defaults agree with the zod settings schema', () => {
  it('every setting has the same default in the editor and the schema', () => {
    const html = fs.readFileSync(path.join(__dirname, '..', '..', 'nodes', 'mixpanel-cohort-in.html'), 'utf8');
    const defs: Record<string, Any> = {};
    const RED = { nodes: { registerType: (t: string, d: Any) => { defs[t] = d; } }, validators: {}, _: (k: string) => k, settings: {} };
    for (const m of html.matchAll(/<script type="text\/javascript">([\s\S]*?)<\/script>/g)) vm.runInNewContext(m[1], { RED, $: () => ({}) });
    const def = defs['mixpanel-cohort-in'];
    expect(def).to.include({ category: 'Mixpanel', color: '#B3A1FF', inputs: 1, outputs: 2 });
    expect(Object.keys(def.credentials)).to.deep.equal(['username', 'password', 'token']);
    const fromSchema = CohortInSettings.parse({}) as Record<string, unknown>;
    for (const [key, value] of Object.entries(fromSchema)) {
      expect(def.defaults, `no editor default for ${key}`).to.have.property(key);
      expect((CohortInSettings.parse({ [key]: def.defaults[key].value }) as Record<string, unknown>)[key], key).to.deep.equal(value);
      if (def.defaults[key].validate) expect(def.defaults[key].validate(def.defaults[key].value), `${key} validates`).to.equal(true);
    }
    expect(() => CohortInSettings.parse({ path: 'no-slash' })).to.throw(/must start with/);
  });
});
