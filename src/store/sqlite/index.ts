import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { SyncError } from '../../errors';
import type { SyncStore } from '../types';
import { SqliteAudienceStore } from './audience';
import { SqliteCohortStore } from './cohorts';
import { SqliteIdentityStore } from './identities';

/**
 * The embedded default. WAL with synchronous=NORMAL: a committed transaction survives a killed process (only a power
 * loss can take the last few), and readers never block the writer.
 */
export function openSqliteStore(file: string): SyncStore {
  let db: Database.Database;
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 5000');
  } catch (err) {
    throw new SyncError('STORE_UNAVAILABLE', `store unavailable: cannot open SQLite file ${file}: ${(err as Error).message}`, { cause: err });
  }
  return {
    backend: 'sqlite',
    audience: new SqliteAudienceStore(db),
    cohorts: new SqliteCohortStore(db),
    identities: new SqliteIdentityStore(db),
    async ping() {
      if (!db.open) throw new SyncError('STORE_UNAVAILABLE', 'store unavailable: the SQLite file is closed');
    },
    async close() {
      if (db.open) db.close();
    },
  };
}
