import path from 'node:path';
import type { StoreSettings } from '../schemas/settings';
import { openMemoryStore } from './memory';
import { openSqliteStore } from './sqlite';
import type { SyncStore } from './types';

export const DEFAULT_SQLITE_FILE = 'mixpanel-sync.db';

interface Entry {
  store: SyncStore;
  refs: number;
}

/**
 * One open store per place (SQLite file, Redis URL + prefix, memory store node), shared by every node that names it
 * and closed when the last one lets go. Nodes are closed and re-created on every redeploy; sharing by place keeps a
 * second handle from ever opening the same SQLite file.
 */
const open = new Map<string, Entry>();

export interface StoreHandle {
  readonly store: SyncStore;
  release(): Promise<void>;
}

export function storeKey(settings: StoreSettings, userDir: string, ownerId: string): string {
  switch (settings.backend) {
    case 'memory':
      return `memory:${ownerId}`;
    case 'redis':
      return `redis:${settings.url}#${settings.keyPrefix}`;
    default:
      return `sqlite:${resolveSqlitePath(settings.path, userDir)}`;
  }
}

export function resolveSqlitePath(file: string, userDir: string): string {
  return path.resolve(userDir, file || DEFAULT_SQLITE_FILE);
}

/**
 * ioredis and the Redis scripts load only when a Redis store is opened: an install on the default SQLite store would
 * otherwise keep them on the heap for nothing (~1 MB, and under load V8 lets the heap grow to about four times
 * what is kept before it collects).
 */
function loadRedis(): typeof import('./redis') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('./redis') as typeof import('./redis');
}

export function acquireStore(settings: StoreSettings, opts: { userDir: string; ownerId: string; redisPassword?: string }): StoreHandle {
  const key = storeKey(settings, opts.userDir, opts.ownerId);
  let entry = open.get(key);
  if (!entry) {
    const store =
      settings.backend === 'memory' ? openMemoryStore()
      : settings.backend === 'redis' ? loadRedis().openRedisStore({ url: settings.url, keyPrefix: settings.keyPrefix, password: opts.redisPassword })
      : openSqliteStore(resolveSqlitePath(settings.path, opts.userDir));
    entry = { store, refs: 0 };
    open.set(key, entry);
  }
  entry.refs += 1;
  const held = entry;
  let released = false;
  return {
    store: held.store,
    async release() {
      if (released) return;
      released = true;
      held.refs -= 1;
      if (held.refs === 0 && open.get(key) === held) {
        open.delete(key);
        await held.store.close();
      }
    },
  };
}
