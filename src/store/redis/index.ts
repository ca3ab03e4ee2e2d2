import { SyncError } from '../../errors';
import type { SyncStore } from '../types';

export interface RedisStoreOptions {
  url: string;
  keyPrefix: string;
  password?: string;
}

/** Placeholder until the Redis work lands. */
export function openRedisStore(_opts: RedisStoreOptions): SyncStore {
  throw new SyncError('STORE_UNAVAILABLE', 'store unavailable: the redis backend is not built yet');
}
