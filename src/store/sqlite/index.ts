import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { SyncError } from '../../errors';
import type { SyncStore } from '../types';
import { SqliteAudienceStore } from './audience';
import { BackgroundCheckpointer } from './checkpointer';
import { SqliteCohortStore } from './cohorts';
import { IDENTITY_READS, SqliteIdentityStore, type IdentityReadOptions } from './identities';
import type { LogFoldOptions } from './log-fold';
import type { OutboxLocatorOptions } from './outbox-locator';
import { SqliteReadWorker } from './read-worker';

/** Thresholds of the in-memory parts; the defaults are the product's, tests shrink them. */
export type SqliteStoreOptions = LogFoldOptions & OutboxLocatorOptions & IdentityReadOptions;

/**
 * Holds `<file>-owner`, a tiny SQLite file locked exclusively for as long as this process has the store open: a second
 * Node-RED pointed at the same file gets SQLITE_BUSY here. The lock goes with the process, so a crash never leaves it
 * behind. (The store file itself cannot be locked exclusively: the checkpoint worker needs a connection of its own.)
 */
function takeOwnership(file: string): Database.Database {
  const owner = new Database(`${file}-owner`);
  try {
    owner.pragma('busy_timeout = 1000');
    owner.pragma('locking_mode = EXCLUSIVE');
    owner.exec('BEGIN EXCLUSIVE; COMMIT'); // in exclusive locking mode the lock stays after the commit
    return owner;
  } catch (err) {
    owner.close();
    throw err;
  }
}

/**
 * The embedded default. WAL with synchronous=NORMAL: a committed transaction survives a killed process (only a power
 * loss can take the last few).
 *
 * One process owns the file (`takeOwnership`), so a second Node-RED pointed at the same file is refused with a clear
 * message instead of double-sending (several instances share state through Redis). Owning the file is also what lets
 * the outbox keep its claims in memory.
 *
 * Checkpoints run in a worker thread (`BackgroundCheckpointer`), not in the writing call: their fsync used to stall
 * the event loop for as long as the disk took. Big identity resolves read on another (`SqliteReadWorker`).
 */
export function openSqliteStore(file: string, opts: SqliteStoreOptions = {}): SyncStore {
  let db: Database.Database | undefined;
  let owner: Database.Database | undefined;
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    owner = takeOwnership(file);
    db = new Database(file);
    db.pragma('busy_timeout = 1000');
    db.pragma('journal_mode = WAL');
    db.exec('BEGIN IMMEDIATE; COMMIT'); // an older version of this package holding the file exclusively shows here
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 5000');
    // The page cache is resident memory the process keeps. 4 MB was as fast as 8 and 16 MB (64 MB bought nothing
    // either) in audienceOut (500k users), the 1M-update burst, cohortIn (1M members) and identityResolve (200k
    // profiles): misses are served from the OS page cache. The default 2 MB made throughput fall as tables grew.
    // With scattered keys, 8–32 MB gained under 10 % in audienceOut: the cost is writing pages, not reading them.
    db.pragma('cache_size = -4096');
    db.pragma('wal_autocheckpoint = 0'); // the checkpointer's job
    db.pragma('journal_size_limit = 67108864'); // a WAL grown in a burst is cut back to 64 MB when it starts over
    db.pragma('temp_store = MEMORY');
  } catch (err) {
    db?.close();
    owner?.close();
    const busy = (err as { code?: string }).code === 'SQLITE_BUSY';
    const why = busy ? 'another process is using it (to share state between Node-RED instances, use the redis backend)' : (err as Error).message;
    throw new SyncError('STORE_UNAVAILABLE', `store unavailable: cannot open SQLite file ${file}: ${why}`, { cause: err });
  }
  const open = db;
  const lock = owner;
  const checkpointer = new BackgroundCheckpointer(open, file);
  const audience = new SqliteAudienceStore(open, opts);
  const cohorts = new SqliteCohortStore(open, opts);
  // Started by the first big resolve, if one ever comes (read-worker.ts).
  const reader = new SqliteReadWorker(file, IDENTITY_READS);
  const identities = new SqliteIdentityStore(open, opts, reader);
  return {
    backend: 'sqlite',
    audience,
    cohorts,
    identities,
    async ping() {
      if (!open.open) throw new SyncError('STORE_UNAVAILABLE', 'store unavailable: the SQLite file is closed');
    },
    async close() {
      // A file closed cleanly has empty logs (LogFold): everything is in the main tables, where an older version of
      // this package, or anything else reading the file, looks. A log left by a crash is read back at the next open.
      // If folding fails, the logs are still the durable copy.
      if (open.open) {
        try {
          audience.foldAll();
          cohorts.foldAll();
          identities.foldAll();
        } catch { /* left for the next open */ }
      }
      await reader.close();
      await checkpointer.close();
      if (open.open) open.close();
      if (lock.open) lock.close();
    },
  };
}
