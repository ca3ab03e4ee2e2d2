import type Database from 'better-sqlite3';
import type { CohortStore } from '../cohort-store';

/** Placeholder until the cohort work fills it in. */
export class SqliteCohortStore implements CohortStore {
  constructor(_db: Database.Database) {}
}
