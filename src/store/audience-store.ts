/**
 * The audience side of the store: each user's current audience set, and the outbox of profile updates waiting for
 * Mixpanel. Everything is keyed by `scope` (one `mixpanel-audience-out` node = one scope), because two nodes may
 * forward to two different Mixpanel projects.
 *
 * The outbox holds, per Mixpanel profile, the *latest desired* values of the properties changed since the last
 * acknowledgement (merged, last write wins) and a version that every change bumps. The sender sends that state
 * and clears it on acknowledgement only if the version is still the one it sent, so changes coalesce, survive
 * restarts, take no memory, and a stale value can never be sent after a newer one.
 */
export interface AudienceRef {
  id: string;
  name: string;
}

export interface UserMembership {
  /** Audiences the user is in, in the order they were joined (SegmentMembership keeps this order). */
  audiences: AudienceRef[];
  /** Every Mixpanel distinct ID this user's membership has been written to (used to clean up on removal). */
  targets: string[];
}

export type ProfileValue = string | boolean;
export type ProfileProps = Record<string, ProfileValue>;

export interface ProfileSet {
  distinctId: string;
  props: ProfileProps;
}

export interface MembershipWrite {
  userKey: string;
  membership: UserMembership;
  profileSets: ProfileSet[];
}

/** Receives the stored membership of the requested users (absent = never seen) and returns what to write. */
export type MembershipCompute = (current: Map<string, UserMembership>) => MembershipWrite[];

export interface QueuedVersion {
  distinctId: string;
  version: number;
}

export interface OutboxItem {
  distinctId: string;
  props: ProfileProps;
  /**
   * The same props as the JSON text the store keeps, when it keeps them as JSON (SQLite, Redis): the sender writes it
   * into the request as it is, instead of parsing it here and encoding it again there.
   */
  propsJson?: string;
  version: number;
  /** How many accepted updates are merged into this item (for the accepted = acked + dead + pending identity). */
  count: number;
  attempts: number;
  /** When the oldest update still merged in here was accepted (epoch ms): the retry window runs from it. */
  queuedAt: number;
}

export interface OutboxStats {
  accepted: number;
  acked: number;
  dead: number;
  /** Updates accepted but not yet acked or dead, counted from the outbox rows themselves. */
  pending: number;
  /** Distinct profiles waiting to be sent. */
  profiles: number;
}

export interface DeadItem {
  item: OutboxItem;
  reason: string;
}

export interface AudienceStore {
  /**
   * Atomically reads the membership of `userKeys`, runs `compute` on it, stores the memberships it returns and merges
   * its profile sets into the outbox (each merge counts one accepted update). Returns the outbox version of every
   * profile written, in the order of the profile sets.
   */
  updateMemberships(scope: string, userKeys: string[], compute: MembershipCompute, now: number): Promise<QueuedVersion[]>;

  /** Keys of users currently in an audience, sorted, after `afterKey`, at most `limit`. */
  membersOfAudience(scope: string, audienceId: string, afterKey: string | undefined, limit: number): Promise<string[]>;

  /**
   * Claims up to `limit` profiles that are due (`dueAt <= now`), oldest first, and leases them until `now + leaseMs`
   * so another sender (or this one after a crash) only takes them again after the lease.
   */
  claimDue(scope: string, limit: number, now: number, leaseMs: number): Promise<OutboxItem[]>;

  /**
   * Called when a sender starts: claims leased by a sender that no longer runs (a crashed or closed process) become
   * due now instead of waiting out their lease. Embedded backends (one process per file) release every lease; a
   * backend shared by several processes must not take live leases from another instance and may rely on expiry.
   */
  recoverLeases(scope: string, now: number): Promise<void>;

  /** Acknowledged by Mixpanel: removes each item whose version is unchanged; otherwise keeps the newer state due now. */
  ack(scope: string, items: OutboxItem[], now: number): Promise<void>;

  /** Not delivered yet: due again at `dueAt`, one more attempt counted. */
  retryLater(scope: string, items: OutboxItem[], dueAt: number): Promise<void>;

  /** Definitively rejected: moved to the dead-letter table with the reason (a newer version stays pending). */
  bury(scope: string, dead: DeadItem[], now: number): Promise<void>;

  /** The earliest `dueAt` in the outbox, or undefined when it is empty. */
  nextDueAt(scope: string): Promise<number | undefined>;

  /**
   * Counters and what the outbox holds. With `quick`, a store may take `pending` from its counters (accepted − acked
   * − dead, kept in the same transactions as the rows) instead of counting the rows, and leave `profiles` at −1: what
   * a status display needs, in constant time however large the backlog (counting a 1M-row SQLite outbox takes
   * ~150 ms of the event loop).
   */
  stats(scope: string, opts?: { quick?: boolean }): Promise<OutboxStats>;

  /** Dead-lettered updates, newest first (for inspection and replay). */
  deadLetters(scope: string, limit: number): Promise<Array<{ distinctId: string; props: ProfileProps; reason: string; at: number }>>;
}
