import type { AudienceStore } from './audience-store';
import type { CohortStore } from './cohort-store';
import type { IdentityStore } from './identity-store';

export type StoreBackend = 'sqlite' | 'redis' | 'memory';

/**
 * Where the package keeps its state. Async and batch-shaped everywhere so a network store (Redis) fits the same
 * interface as the embedded ones; each domain lives in its own sub-store.
 */
export interface SyncStore {
  readonly backend: StoreBackend;
  readonly audience: AudienceStore;
  readonly cohorts: CohortStore;
  readonly identities: IdentityStore;
  /** Resolves when the store answers; rejects with a STORE_UNAVAILABLE SyncError otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
