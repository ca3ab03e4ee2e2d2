import type { SyncStore } from '../types';
import { MemoryAudienceStore } from './audience';
import { MemoryCohortStore } from './cohorts';
import { MemoryIdentityStore } from './identities';

/** For tests and demos: everything is lost when Node-RED restarts or the store node is redeployed. */
export function openMemoryStore(): SyncStore {
  return {
    backend: 'memory',
    audience: new MemoryAudienceStore(),
    cohorts: new MemoryCohortStore(),
    identities: new MemoryIdentityStore(),
    async ping() {},
    async close() {},
  };
}
