import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { expect } from 'chai';
import type { z } from 'zod';
import { AudienceOutSettings, MixpanelConfigSettings, StoreSettings } from '../../src/schemas/settings';

/**
 * The zod schemas are the one source of the settings; the editor's `defaults` must agree with them, or a node
 * dragged from the palette would be configured differently from what the runtime assumes for a missing value.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

function editorDefinition(type: string): Any {
  const html = fs.readFileSync(path.join(__dirname, '..', '..', 'nodes', `${type}.html`), 'utf8');
  const scripts = [...html.matchAll(/<script type="text\/javascript">([\s\S]*?)<\/script>/g)].map((m) => m[1]);
  const defs: Record<string, Any> = {};
  const jq: Any = () => ({ length: 0, val: () => undefined, on: () => jq(), trigger: () => jq(), toggle: () => jq() });
  const RED = {
    nodes: { registerType: (t: string, d: Any) => { defs[t] = d; } },
    validators: { number: () => () => true, regex: () => () => true, typedInput: () => () => true },
    _: (k: string) => k,
    settings: {},
  };
  for (const code of scripts) vm.runInNewContext(code, { RED, $: jq, jQuery: jq, window: {}, console });
  return defs[type];
}

function editorDefaults(type: string): Record<string, unknown> {
  const def = editorDefinition(type);
  return Object.fromEntries(Object.entries(def.defaults as Record<string, { value: unknown }>).map(([k, v]) => [k, v.value]));
}

function check(type: string, schema: z.ZodTypeAny, ignore: string[] = []) {
  const fromEditor = editorDefaults(type);
  const fromSchema = schema.parse({}) as Record<string, unknown>;
  for (const [key, value] of Object.entries(fromSchema)) {
    if (ignore.includes(key)) continue;
    expect(fromEditor, `${type}: the editor has no default for ${key}`).to.have.property(key);
    expect(fromSchema[key], `${type}.${key}`).to.deep.equal(schema.parse({ [key]: fromEditor[key] })[key]);
    expect(value).to.deep.equal(schema.parse({ [key]: fromEditor[key] })[key]);
  }
}

describe('editor defaults agree with the zod settings schemas', () => {
  it('mixpanel-audience-out', () => check('mixpanel-audience-out', AudienceOutSettings));
  it('mixpanel-config', () => check('mixpanel-config', MixpanelConfigSettings));
  it('mixpanel-sync-store', () => check('mixpanel-sync-store', StoreSettings));
});
