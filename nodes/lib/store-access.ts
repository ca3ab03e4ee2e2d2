import type { Node, NodeAPI } from 'node-red';
import { acquireStore, type StoreHandle } from '../../src/store/open';
import { StoreSettings } from '../../src/schemas/settings';
import type { SyncStoreConfigNode } from './config-types';

/**
 * The store a node uses: the `mixpanel-sync-store` config node it names in `store`, or, when that is empty, the
 * default embedded SQLite store `<userDir>/mixpanel-sync.db` shared by every node that names none.
 */
export function acquireNodeStore(RED: NodeAPI, node: Node, storeId: string | undefined): StoreHandle {
  const userDir = (RED.settings as unknown as { userDir?: string }).userDir ?? process.cwd();
  if (storeId) {
    const cfg = RED.nodes.getNode(storeId) as SyncStoreConfigNode | null;
    if (!cfg) throw new Error(RED._('mixpanel-sync-store.errors.missing'));
    return cfg.acquire();
  }
  return acquireStore(StoreSettings.parse({}), { userDir, ownerId: node.id });
}
