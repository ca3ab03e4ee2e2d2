import type { Node } from 'node-red';
import type { MixpanelConfigSettings, StoreSettings } from '../../src/schemas/settings';
import type { StoreHandle } from '../../src/store/open';
import type { RatePacer } from '../../src/audience/pacer';

/** What the config nodes offer the nodes that name them. */
export interface MixpanelConfigNode extends Node<{ token?: string }> {
  settings: MixpanelConfigSettings;
  apiHost: string;
  /** Empty when missing; never logged, never put on a message or in a status. */
  token(): string;
  /** Paces every request to this project under its rate limit (shared by all nodes using this config). */
  pacer: RatePacer;
}

export interface SyncStoreConfigNode extends Node<{ password?: string }> {
  settings: StoreSettings;
  acquire(): StoreHandle;
}
