import type { NodeAPI, NodeDef } from 'node-red';
import { StoreSettings } from '../src/schemas/settings';
import { acquireStore, type StoreHandle } from '../src/store/open';
import type { SyncStoreConfigNode } from './lib/config-types';
import { onClose, parseSettings } from './lib/node-kit';

/** Config node: where state lives. It holds one handle itself so the store outlives redeploys of the nodes using it. */
export = function (RED: NodeAPI) {
  function SyncStoreNode(this: SyncStoreConfigNode, def: NodeDef & Partial<StoreSettings>) {
    RED.nodes.createNode(this, def);
    const settings = parseSettings(StoreSettings, def);
    this.settings = settings;
    const userDir = (RED.settings as unknown as { userDir?: string }).userDir ?? process.cwd();
    const open = () => acquireStore(settings, { userDir, ownerId: this.id, redisPassword: this.credentials?.password || undefined });
    let own: StoreHandle | undefined;
    try {
      own = open();
    } catch (err) {
      this.error(err);
    }
    if (settings.backend === 'memory') this.warn(RED._('mixpanel-sync-store.warn.memory'));
    this.acquire = () => open();
    onClose(this, async () => {
      await own?.release();
    });
  }
  RED.nodes.registerType('mixpanel-sync-store', SyncStoreNode as never, { credentials: { password: { type: 'password' } } });
};
