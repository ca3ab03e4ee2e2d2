import Redis from 'ioredis';
import { SyncError } from '../../errors';

export interface RedisStoreOptions {
  url: string;
  keyPrefix: string;
  password?: string;
}

/** How long a call waits for a (re)connecting Redis before it gives up; also the per-command timeout. */
export const REDIS_TIMEOUT_MS = 5000;

export function storeUnavailable(err: unknown): SyncError {
  if (err instanceof SyncError) return err;
  const reason = err instanceof Error ? err.message : String(err);
  return new SyncError('STORE_UNAVAILABLE', `store unavailable: redis: ${reason}`, { cause: err });
}

/** Lua scripts by name; ioredis sends them with EVALSHA and loads them again after a Redis restart (NOSCRIPT). */
export type Scripts = Record<string, { keys: number; lua: string }>;

type ScriptFn = (...args: Array<string | number>) => Promise<unknown>;

/**
 * One ioredis connection, set up so that a Redis that is down or slow makes calls fail fast with
 * STORE_UNAVAILABLE instead of queueing forever: no offline queue, one retry per request, a command timeout. The
 * client reconnects by itself (capped backoff); a call made while it reconnects waits up to REDIS_TIMEOUT_MS for it.
 */
export class RedisConnection {
  readonly client: Redis;
  private lastError: Error | undefined;
  private closed = false;

  constructor(opts: RedisStoreOptions, scripts: Scripts) {
    if (!/^rediss?:\/\//i.test(opts.url)) {
      throw new SyncError('INVALID_SETTINGS', `invalid settings: url: must start with redis:// or rediss:// (got "${opts.url.slice(0, 40)}")`);
    }
    this.client = new Redis(opts.url, {
      ...(opts.password ? { password: opts.password } : {}),
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: REDIS_TIMEOUT_MS,
      connectTimeout: REDIS_TIMEOUT_MS,
      retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 3000),
    });
    // Without a listener ioredis prints every connection error; the error is reported by the failing call instead.
    this.client.on('error', (err: Error) => { this.lastError = err; });
    for (const [name, s] of Object.entries(scripts)) this.client.defineCommand(name, { numberOfKeys: s.keys, lua: s.lua });
  }

  private ready(): Promise<void> {
    const c = this.client;
    if (c.status === 'ready') return Promise.resolve();
    if (this.closed || c.status === 'end') return Promise.reject(new SyncError('CLOSED', 'store unavailable: the redis store is closed'));
    // Lost a connection that worked: fail now with the reason (the client keeps reconnecting in the background)
    // rather than holding every message for the full timeout while Redis is down.
    if (c.status === 'reconnecting' && this.lastError) return Promise.reject(new Error(`not connected (${this.lastError.message})`));
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        c.off('ready', onReady);
        c.off('error', onError);
        if (err) reject(err);
        else resolve();
      };
      const onReady = () => done();
      // A refused or failed connection attempt answers now; only a slow one waits for the timeout.
      const onError = (err: Error) => done(new Error(`not connected (${err.message})`));
      const timer = setTimeout(() => done(new Error(`not connected within ${REDIS_TIMEOUT_MS} ms${this.lastError ? ` (${this.lastError.message})` : ''}`)), REDIS_TIMEOUT_MS);
      c.on('ready', onReady);
      c.on('error', onError);
    });
  }

  /** Runs `fn` on a connected client; any failure becomes a STORE_UNAVAILABLE SyncError. */
  async run<T>(fn: (c: Redis) => Promise<T>): Promise<T> {
    try {
      await this.ready();
      return await fn(this.client);
    } catch (err) {
      throw storeUnavailable(err);
    }
  }

  /** Calls a script defined in the constructor. */
  script(c: Redis, name: string, ...args: Array<string | number>): Promise<unknown> {
    return (c as unknown as Record<string, ScriptFn>)[name](...args);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Optimistic writes retry this often before the call gives up (only under heavy contention on the same keys). */
export const MAX_CAS_ATTEMPTS = 50;

export function backoffMs(attempt: number): number {
  return Math.random() * Math.min(2 + attempt * 2, 50);
}
