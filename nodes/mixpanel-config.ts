import type { NodeAPI, NodeDef } from 'node-red';
import { MixpanelConfigSettings } from '../src/schemas/settings';
import { resolveApiHost } from '../src/mixpanel/hosts';
import { RatePacer } from '../src/audience/pacer';
import type { MixpanelConfigNode } from './lib/config-types';
import { parseSettings } from './lib/node-kit';

/** Config node: one Mixpanel project (token + region). */
export = function (RED: NodeAPI) {
  function MixpanelConfig(this: MixpanelConfigNode, def: NodeDef & Partial<MixpanelConfigSettings>) {
    RED.nodes.createNode(this, def);
    this.settings = parseSettings(MixpanelConfigSettings, def);
    this.apiHost = resolveApiHost(this.settings.region, this.settings.apiHost);
    const creds = this.credentials;
    this.token = () => (creds?.token ?? '').trim();
    // Mixpanel's limit is per project: every node sending to this project takes turns on one pacer.
    this.pacer = new RatePacer(this.settings.rateLimit);
  }
  RED.nodes.registerType('mixpanel-config', MixpanelConfig as never, { credentials: { token: { type: 'password' } } });
};
