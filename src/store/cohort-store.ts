/**
 * Cohort membership and `members`-export staging for `mixpanel-cohort-in`.
 *
 * Every method is one atomic unit of work (one SQLite transaction, one Redis MULTI/Lua script): a webhook page is
 * either applied completely or not at all, so a crash or a failing store never leaves half a page behind, and
 * Mixpanel's retry (we answer 503) replays it cleanly. Calls are page-shaped (≤ a few thousand members), never
 * per member.
 *
 * Keys:
 * - `cohortKey`: `"<mixpanel_project_id>/<mixpanel_cohort_id>"`, built by the protocol core. Never the cohort name
 *   (it is editable in Mixpanel's UI).
 * - a member is keyed by its `distinctId` (Mixpanel's `mixpanel_distinct_id`) inside its cohort.
 * - a page is keyed by (`cohortKey`, `sessionId`, `kind`, `page`); `kind` separates `members`, `add_members` and
 *   `remove_members` pages that share a session id (whether Mixpanel counts them together is not documented).
 *
 * Generations (how a paginated full export replaces the previous membership without holding it in memory):
 * each cohort has a counter `gen`. The first page of a new `members` session takes `gen + 1` as the session's
 * generation. Every member seen on a page of that session gets `seenGen = max(seenGen, sessionGen)`. When the
 * last missing page arrives, every member with `seenGen < sessionGen` was not in the export: it is removed and
 * returned. Pages may arrive in any order; an older session finishing after a newer one removes nothing.
 */
export interface CohortMemberRef {
  /** Mixpanel's `mixpanel_distinct_id`; the member's key in the cohort. */
  distinctId: string;
  /** The validated MPID (decimal string), when the member carried `$mparticle_user_id`. */
  mpid?: string;
  email?: string;
}

export type DiffKind = 'add_members' | 'remove_members';

export interface DiffPageResult {
  /** The page (same cohort, session, kind and page number) was applied before: nothing was changed now. */
  duplicate: boolean;
}

export interface MembersPageResult {
  /** The page was staged before: nothing was changed now, `added` and `removed` are empty. */
  duplicate: boolean;
  /** Members of this page that were not in the cohort before (inserted now). */
  added: CohortMemberRef[];
  /** Distinct pages of the session staged so far, including this one. */
  received: number;
  /** The session's page count, as recorded from its first page. */
  totalPages: number;
  /** This page was the last missing one: the export is complete and `removed` holds the members it dropped. */
  complete: boolean;
  /** Members of the previous membership that are absent from the completed export (already deleted). */
  removed: CohortMemberRef[];
}

export interface CohortStore {
  /**
   * Applies one `add_members` / `remove_members` page. Unless the page key was recorded before (then only
   * `{duplicate: true}` is returned and nothing changes), in one atomic step: records the page key (with `now`, for
   * expiry); for `add_members` upserts every member (inserted or its mpid/email refreshed, `seenGen` raised to the
   * cohort's current `gen` so a running export does not sweep it); for `remove_members` deletes every member
   * (absent ones are ignored). `sessionId` undefined means the page cannot be recognised again: it is applied and
   * no key is recorded.
   */
  applyDiffPage(cohortKey: string, kind: DiffKind, sessionId: string | undefined, page: number,
    members: CohortMemberRef[], now: number): Promise<DiffPageResult>;

  /**
   * Stages one page of a `members` export. Unless the page key was recorded before (then `duplicate: true`, empty
   * lists, and the session's current counts), in one atomic step: creates the session on its first page (generation
   * `++gen`, `totalPages` and `now` recorded); records the page; upserts its members with
   * `seenGen = max(seenGen, sessionGen)` and returns those that were absent as `added`; when the session now has
   * `totalPages` distinct pages, marks it complete and — unless a newer session of the cohort completed already —
   * deletes and returns the members with `seenGen < sessionGen` as `removed`. A page of a session that is already
   * complete is a duplicate. Duplicate members within one page count once.
   */
  stageMembersPage(cohortKey: string, sessionId: string, page: number, totalPages: number,
    members: CohortMemberRef[], now: number): Promise<MembersPageResult>;

  /**
   * Forgets sessions and page keys recorded before `before` (epoch ms), complete or not, so the store does not grow
   * forever; membership itself is kept. Members staged by an incomplete session stay members (add-only fallback).
   * Returns how many sessions were dropped.
   */
  expire(before: number): Promise<number>;

  /** Current member count of a cohort (for status and tests). */
  memberCount(cohortKey: string): Promise<number>;

  /** Current members, sorted by distinct ID, after `afterDistinctId`, at most `limit` (inspection and tests). */
  members(cohortKey: string, afterDistinctId: string | undefined, limit: number): Promise<CohortMemberRef[]>;
}
