import { randomUUID } from 'node:crypto';
import type { Issue } from '../errors';
import type { AudienceOutSettings } from '../schemas/settings';
import type { MembershipChangeRequest, SubscriptionRequest } from '../schemas/audience-input';
import type { AudienceStore, MembershipWrite, ProfileSet, QueuedVersion } from '../store/audience-store';
import type { IdentityStore } from '../store/identity-store';
import { completeFromIdentityStore } from './known-identities';
import { applyUserChange } from './membership';
import { readAudienceInput, type InputShape, type UserChange } from './parse-input';
import { chooseTargets, userKey } from './targets';

export type ForwardOutcome =
  | { kind: 'invalid'; issues: Issue[] }
  | {
    kind: 'queued';
    source: 'mparticle' | 'plain' | 'keepalive' | 'subscription';
    request?: MembershipChangeRequest | SubscriptionRequest;
    /** Users rejected (bad identity, none of the chosen targets): the rest went through. */
    issues: Issue[];
    queued: QueuedVersion[];
    /** The property sets this message produced, for dry runs and debugging. */
    profileSets: ProfileSet[];
  };

export interface ForwarderDeps {
  store: AudienceStore;
  scope: string;
  settings: Pick<AudienceOutSettings, 'perAudienceAttribute' | 'identityTargets' | 'targetMode' | 'cleanupOnRemove' | 'resolveIdentities'>;
  /** Needed only with `resolveIdentities`. */
  identities?: IdentityStore;
  now: () => number;
  /** Keep each outcome's `profileSets` (dry runs); without it they are left empty, so nothing holds them. */
  keepProfileSets?: boolean;
}

/**
 * Users per store transaction at most. Everything a slice parses, computes and writes stays alive until its
 * transaction ends: a whole 1000-user message at once (~6 MB of objects) outlived V8's young generation and was
 * promoted into the old one as garbage, ~950 bytes per update while a backlog queued. In slices of 250 it dies young
 * (~150 bytes per update promoted); throughput and CPU are unchanged or slightly better.
 */
export const SLICE_USERS = 250;

/** A message with users, while its slices go through. */
interface UsersMessage {
  index: number;
  shape: Extract<InputShape, { kind: 'users' }>;
  /** Issues found while parsing, in user order; then those of users with no target identity. */
  parseIssues: Issue[];
  targetIssues: Issue[];
  queued: QueuedVersion[];
  profileSets: ProfileSet[];
  sets: number;
}

/**
 * Turns input messages into stored membership and queued profile updates: parse each message's shape, pick target
 * profiles, apply each user's change to their stored audience set, queue the resulting `$set`s. Sending is the
 * sender's job.
 *
 * Users go to the store in slices of at most SLICE_USERS, each one transaction: several one-user messages share a
 * transaction (group commit: for them, the commit was most of the cost), and a large message takes several. Each
 * message still gets its own outcome, and a bad message never affects the others. If the store fails, every message
 * of the call gets the error, though slices written before the failure stay written: applying a change again is
 * harmless (membership is state, and the outbox keeps only the latest values), so the sender's retry is safe.
 */
export async function forwardAudienceMessages(deps: ForwarderDeps, payloads: unknown[]): Promise<ForwardOutcome[]> {
  const outcomes: ForwardOutcome[] = new Array(payloads.length);
  const messages: UsersMessage[] = [];
  for (let i = 0; i < payloads.length; i++) {
    const shape = readAudienceInput(payloads[i]);
    switch (shape.kind) {
      case 'invalid':
        outcomes[i] = shape;
        break;
      case 'keepalive':
        outcomes[i] = { kind: 'queued', source: 'keepalive', request: shape.request, issues: [], queued: [], profileSets: [] };
        break;
      case 'subscription': {
        const { request } = shape;
        const sets: ProfileSet[] = [];
        const queued = request.action === 'remove' && deps.settings.cleanupOnRemove
          ? await removeAudienceEverywhere(deps, request.audience_id, request.audience_name, sets)
          : [];
        outcomes[i] = { kind: 'queued', source: 'subscription', request, issues: [], queued, profileSets: sets };
        break;
      }
      case 'users':
        messages.push({ index: i, shape, parseIssues: [], targetIssues: [], queued: [], profileSets: [], sets: 0 });
    }
  }

  // Users are parsed as their slice comes up, so only one slice of parsed users exists at a time.
  let slice: SliceUser[] = [];
  for (const m of messages) {
    for (let k = 0; k < m.shape.count; k++) {
      const user = m.shape.parseUser(k, m.parseIssues);
      if (!user) continue;
      slice.push({ m, user });
      if (slice.length === SLICE_USERS) {
        await writeSlice(deps, slice);
        slice = [];
      }
    }
  }
  if (slice.length) await writeSlice(deps, slice);

  for (const m of messages) {
    const issues = m.targetIssues.length ? m.parseIssues.concat(m.targetIssues) : m.parseIssues;
    // Nothing usable and something wrong: the message as a whole is invalid (one error, no output).
    outcomes[m.index] = m.sets === 0 && issues.length > 0
      ? { kind: 'invalid', issues }
      : { kind: 'queued', source: m.shape.source, request: m.shape.request, issues, queued: m.queued, profileSets: m.profileSets };
  }
  return outcomes;
}

interface SliceUser {
  m: UsersMessage;
  user: UserChange;
}

/** One slice of users (from one or several messages, in order) in one store transaction. */
async function writeSlice(deps: ForwarderDeps, slice: SliceUser[]): Promise<void> {
  if (deps.settings.resolveIdentities && deps.identities) {
    await completeFromIdentityStore(deps.identities, slice.map((s) => s.user));
  }
  const work: Array<{ m: UsersMessage; user: UserChange; key: string; targets: string[] }> = [];
  const keys: string[] = [];
  const seen = new Set<string>();
  for (const { m, user } of slice) {
    const targets = chooseTargets(user.identities, deps.settings.identityTargets, deps.settings.targetMode);
    const key = userKey(user.identities);
    if (targets.length === 0 || key === undefined) {
      m.targetIssues.push({
        field: user.at,
        code: 'NO_IDENTITY',
        message: `has none of the identities chosen as targets (${deps.settings.identityTargets.join(', ')})`,
      });
      continue;
    }
    work.push({ m, user, key, targets });
    if (!seen.has(key)) {
      seen.add(key);
      keys.push(key);
    }
  }
  if (work.length === 0) return;

  // Which message each queued profile set belongs to, in the order the store returns their versions. The store
  // may run `compute` again (optimistic Redis transactions), so this is rebuilt on every run.
  const keepSets = deps.keepProfileSets !== false;
  let owners: UsersMessage[] = [];
  let madeSets: Array<{ m: UsersMessage; set: ProfileSet }> = [];
  const versions = await deps.store.updateMemberships(deps.scope, keys, (current) => {
    // The same user may come twice (in one message or in several): apply in order on a working copy, write once.
    const writes = new Map<string, MembershipWrite & { owners: UsersMessage[] }>();
    madeSets = [];
    for (const { m, user, key, targets } of work) {
      const w = writes.get(key);
      const applied = applyUserChange(w ? w.membership : current.get(key), user, targets, deps.settings.perAudienceAttribute);
      const userSets = targets.map((distinctId) => ({ distinctId, props: applied.props }));
      if (keepSets) for (const set of userSets) madeSets.push({ m, set });
      if (w) {
        w.membership = applied.membership;
        for (const set of userSets) {
          w.profileSets.push(set);
          w.owners.push(m);
        }
      } else writes.set(key, { userKey: key, membership: applied.membership, profileSets: userSets, owners: userSets.map(() => m) });
    }
    owners = [];
    const out: MembershipWrite[] = [];
    for (const w of writes.values()) {
      out.push({ userKey: w.userKey, membership: w.membership, profileSets: w.profileSets });
      for (const m of w.owners) owners.push(m);
    }
    return out;
  }, deps.now());
  versions.forEach((v, i) => {
    owners[i].queued.push(v);
    owners[i].sets += 1;
  });
  // In the order the users came, as before the store (versions come grouped by user).
  for (const { m, set } of madeSets) m.profileSets.push(set);
}

/**
 * About how many users a message carries, without parsing it: what a message costs the intake in memory and time
 * (group commit cuts groups by this).
 */
export function inputWeight(payload: unknown): number {
  if (Array.isArray(payload)) return Math.max(1, payload.length);
  const profiles = (payload as { user_profiles?: unknown } | null)?.user_profiles;
  return Array.isArray(profiles) ? Math.max(1, profiles.length) : 1;
}

/** One message on its own (see forwardAudienceMessages). */
export async function forwardAudienceMessage(deps: ForwarderDeps, payload: unknown): Promise<ForwardOutcome> {
  return (await forwardAudienceMessages(deps, [payload]))[0];
}

/**
 * Beyond the hosted integration: when an audience subscription is removed, take the audience out of every member's
 * SegmentMembership (and set `In <name>` false), so Mixpanel cohorts built on it empty out instead of going stale.
 */
async function removeAudienceEverywhere(deps: ForwarderDeps, audienceId: string, name: string | undefined, sets: ProfileSet[]): Promise<QueuedVersion[]> {
  const queued: QueuedVersion[] = [];
  let after: string | undefined;
  for (;;) {
    const keys = await deps.store.membersOfAudience(deps.scope, audienceId, after, 500);
    if (keys.length === 0) return queued;
    after = keys[keys.length - 1];
    let pageSets: ProfileSet[] = [];
    const page = await deps.store.updateMemberships(deps.scope, keys, (current) => {
      const writes: MembershipWrite[] = [];
      pageSets = []; // the store may run this again (optimistic Redis transactions): start clean each time
      for (const [key, m] of current) {
        const applied = applyUserChange(m, { changes: [{ id: audienceId, name, action: 'remove' }] }, [], deps.settings.perAudienceAttribute);
        const profileSets = m.targets.map((distinctId) => ({ distinctId, props: applied.props }));
        pageSets.push(...profileSets);
        writes.push({ userKey: key, membership: applied.membership, profileSets });
      }
      return writes;
    }, deps.now());
    queued.push(...page);
    sets.push(...pageSets);
  }
}

/** The Firehose reply for an mParticle request, ready for an `http response` node. */
export function mparticleResponse(request: MembershipChangeRequest | SubscriptionRequest, now: number, suspend: boolean) {
  const base = {
    id: request.id ?? randomUUID(),
    timestamp_ms: now,
    firehose_version: request.firehose_version ?? '3.2.0',
  };
  if (request.type === 'audience_subscription_request') return { type: 'audience_subscription_response', ...base };
  return { type: 'audience_membership_change_response', ...base, suspend_subscription: suspend };
}
