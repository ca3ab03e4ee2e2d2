import { randomUUID } from 'node:crypto';
import type { Issue } from '../errors';
import type { AudienceOutSettings } from '../schemas/settings';
import type { MembershipChangeRequest, SubscriptionRequest } from '../schemas/audience-input';
import type { AudienceStore, MembershipWrite, ProfileSet, QueuedVersion, UserMembership } from '../store/audience-store';
import type { IdentityStore } from '../store/identity-store';
import { completeFromIdentityStore } from './known-identities';
import { applyUserChange } from './membership';
import { parseAudienceInput, type UserChange } from './parse-input';
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
}

/**
 * Turns input messages into stored membership and queued profile updates: parse each message's shape, pick target
 * profiles, apply each user's change to their stored audience set, queue the resulting `$set`s. Sending is the
 * sender's job.
 *
 * Several messages go through in one store transaction (group commit): for one-user messages, the commit was most
 * of the cost. Each message still gets its own outcome, and a bad message never affects the others.
 */
export async function forwardAudienceMessages(deps: ForwarderDeps, payloads: unknown[]): Promise<ForwardOutcome[]> {
  const outcomes: ForwardOutcome[] = new Array(payloads.length);
  const changes: Array<{ index: number; source: 'mparticle' | 'plain'; request?: MembershipChangeRequest; users: UserChange[]; issues: Issue[] }> = [];
  for (let i = 0; i < payloads.length; i++) {
    const parsed = parseAudienceInput(payloads[i]);
    switch (parsed.kind) {
      case 'invalid':
        outcomes[i] = parsed;
        break;
      case 'keepalive':
        outcomes[i] = { kind: 'queued', source: 'keepalive', request: parsed.request, issues: [], queued: [], profileSets: [] };
        break;
      case 'subscription': {
        const { request } = parsed;
        const sets: ProfileSet[] = [];
        const queued = request.action === 'remove' && deps.settings.cleanupOnRemove
          ? await removeAudienceEverywhere(deps, request.audience_id, request.audience_name, sets)
          : [];
        outcomes[i] = { kind: 'queued', source: 'subscription', request, issues: [], queued, profileSets: sets };
        break;
      }
      case 'changes':
        changes.push({ index: i, source: parsed.source, request: parsed.request, users: parsed.users, issues: [...parsed.issues] });
    }
  }
  if (changes.length === 0) return outcomes;

  if (deps.settings.resolveIdentities && deps.identities) {
    await completeFromIdentityStore(deps.identities, changes.flatMap((c) => c.users));
  }
  const work: Array<{ msg: number; user: UserChange; key: string; targets: string[] }> = [];
  changes.forEach((c, msg) => {
    for (const user of c.users) {
      const targets = chooseTargets(user.identities, deps.settings.identityTargets, deps.settings.targetMode);
      const key = userKey(user.identities);
      if (targets.length === 0 || key === undefined) {
        c.issues.push({
          field: user.at,
          code: 'NO_IDENTITY',
          message: `has none of the identities chosen as targets (${deps.settings.identityTargets.join(', ')})`,
        });
        continue;
      }
      work.push({ msg, user, key, targets });
    }
  });

  const queuedBy: QueuedVersion[][] = changes.map(() => []);
  const setsBy: ProfileSet[][] = changes.map(() => []);
  if (work.length) {
    // Which message each queued profile set belongs to, in the order the store returns their versions. The store
    // may run `compute` again (optimistic Redis transactions), so this is rebuilt on every run.
    let owners: number[] = [];
    const keys = [...new Set(work.map((w) => w.key))];
    const versions = await deps.store.updateMemberships(deps.scope, keys, (current) => {
      // The same user may come twice (in one message or in several): apply in order on a working copy, write once.
      const state = new Map<string, UserMembership>(current);
      const writes = new Map<string, MembershipWrite & { owners: number[] }>();
      for (const list of setsBy) list.length = 0;
      for (const { msg, user, key, targets } of work) {
        const applied = applyUserChange(state.get(key), user, targets, deps.settings.perAudienceAttribute);
        state.set(key, applied.membership);
        const sets = targets.map((distinctId) => ({ distinctId, props: applied.props }));
        const w = writes.get(key);
        if (w) {
          w.membership = applied.membership;
          w.profileSets.push(...sets);
          w.owners.push(...sets.map(() => msg));
        } else writes.set(key, { userKey: key, membership: applied.membership, profileSets: sets, owners: sets.map(() => msg) });
        setsBy[msg].push(...sets);
      }
      owners = [...writes.values()].flatMap((w) => w.owners);
      return [...writes.values()].map(({ userKey: k, membership, profileSets }) => ({ userKey: k, membership, profileSets }));
    }, deps.now());
    versions.forEach((v, i) => queuedBy[owners[i]].push(v));
  }

  changes.forEach((c, msg) => {
    const queued = queuedBy[msg];
    // Nothing usable and something wrong: the message as a whole is invalid (one error, no output).
    outcomes[c.index] = setsBy[msg].length === 0 && c.issues.length > 0
      ? { kind: 'invalid', issues: c.issues }
      : { kind: 'queued', source: c.source, request: c.request, issues: c.issues, queued, profileSets: setsBy[msg] };
  });
  return outcomes;
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
