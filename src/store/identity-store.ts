import type { IdentityMap, IdentityMatch, IdentityProfile } from '../identity/types';

/**
 * Identity links for `identity-resolve` (and for the other nodes to resolve a user to a profile). One store holds one
 * identity graph (one mParticle workspace): use another store, or another Redis key prefix, for another workspace.
 *
 * Profiles are keyed by MPID (a decimal string) when one is known, otherwise by `anon:<uuid>`; the rules of linking
 * and merging are in `src/identity/plan.ts` and are the same for every backend. Identity maps must be normalised
 * already (`parseIdentityInput` / `normalizeIdentityValue`): the store compares exact strings.
 *
 * Every call is batch-shaped and atomic as a whole: one SQLite transaction, one Redis script (learn: one read script
 * and one compare-and-set script, retried when another instance changed the same links in between).
 *
 * Every profile returned (by learn or resolve) is a new object that belongs to the caller: never one the store keeps,
 * never shared between two results, so callers may hand it on without copying.
 */
export interface IdentityStore {
  /**
   * Links the identities of each observation into one profile (merging profiles the observation connects) and
   * returns the resulting profile per observation; undefined for an observation without identities.
   */
  learn(observations: IdentityMap[], now: number): Promise<Array<IdentityProfile | undefined>>;

  /**
   * Looks each lookup up, without changing anything: the profile of its highest-priority identity that is known
   * (`IDENTITY_PRIORITY`), or undefined.
   */
  resolve(lookups: IdentityMap[]): Promise<Array<IdentityMatch | undefined>>;

  /** Number of profiles (status and tests). */
  profileCount(): Promise<number>;
}
