import type { SyncStore } from '../types';
import { RedisAudienceStore } from './audience';
import { AUDIENCE_SCRIPTS } from './audience-scripts';
import { RedisCohortStore } from './cohorts';
import { RedisConnection, type RedisStoreOptions } from './connection';
import { IDENTITY_SCRIPTS, RedisIdentityStore } from './identities';

export type { RedisStoreOptions } from './connection';

/**
 * The shared backend: several Node-RED instances pointing at one Redis (same URL and key prefix) share audience
 * membership, the outbox and the identity graph. Every state change is one Lua script (atomic), reads of a batch
 * are one round trip. Redis Cluster is not supported (scripts build keys from the prefix); use a single Redis or
 * Sentinel/replicas.
 */
export function openRedisStore(opts: RedisStoreOptions): SyncStore {
  const conn = new RedisConnection(opts, { ...AUDIENCE_SCRIPTS, ...IDENTITY_SCRIPTS });
  const prefix = opts.keyPrefix;
  return {
    backend: 'redis',
    audience: new RedisAudienceStore(conn, prefix),
    cohorts: new RedisCohortStore(conn, prefix),
    identities: new RedisIdentityStore(conn, prefix),
    async ping() {
      await conn.run((c) => c.ping());
    },
    close: () => conn.close(),
  };
}
