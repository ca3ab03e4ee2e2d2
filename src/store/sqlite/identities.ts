import type Database from 'better-sqlite3';
import type { IdentityStore } from '../identity-store';

/** Placeholder until the identity work fills it in. */
export class SqliteIdentityStore implements IdentityStore {
  constructor(_db: Database.Database) {}
}
