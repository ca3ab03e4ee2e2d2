import { SyncError } from '../../errors';
import type { CohortMemberRef, CohortStore, DiffKind, DiffPageResult, MembersPageResult } from '../cohort-store';
import type { RedisConnection } from './connection';

const notYet = () => Promise.reject(new SyncError('STORE_UNAVAILABLE', 'store unavailable: cohort sync is not available on the redis backend yet; use sqlite'));

/** Placeholder until the Redis cohort store lands: every call says so instead of failing obscurely. */
export class RedisCohortStore implements CohortStore {
  constructor(_conn: RedisConnection, _prefix: string) {}
  applyDiffPage(_k: string, _kind: DiffKind, _s: string | undefined, _p: number, _m: CohortMemberRef[], _now: number): Promise<DiffPageResult> { return notYet(); }
  stageMembersPage(_k: string, _s: string, _p: number, _t: number, _m: CohortMemberRef[], _now: number): Promise<MembersPageResult> { return notYet(); }
  expire(_before: number): Promise<number> { return notYet(); }
  memberCount(_k: string): Promise<number> { return notYet(); }
  members(_k: string, _a: string | undefined, _l: number): Promise<CohortMemberRef[]> { return notYet(); }
}
