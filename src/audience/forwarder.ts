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
 * Turns one input message into stored membership and queued profile updates, atomically per message: parse the
 * shape, pick target profiles, apply each user's change to their stored audience set, queue the resulting `$set`s.
 * Sending is the sender's job.
 */
export async function forwardAudienceMessage(deps: ForwarderDeps, payload: unknown): Promise<ForwardOutcome> {
  const parsed = parseAudienceInput(payload);
  switch (parsed.kind) {
    case 'invalid':
      return parsed;
    case 'keepalive':
      return { kind: 'queued', source: 'keepalive', request: parsed.request, issues: [], queued: [], profileSets: [] };
    case 'subscription': {
      const { request } = parsed;
      const sets: ProfileSet[] = [];
      const queued = request.action === 'remove' && deps.settings.cleanupOnRemove
        ? await removeAudienceEverywhere(deps, request.audience_id, request.audience_name, sets)
        : [];
      return { kind: 'queued', source: 'subscription', request, issues: [], queued, profileSets: sets };
    }
    case 'changes':
      break;
  }

  const issues = [...parsed.issues];
  if (deps.settings.resolveIdentities && deps.identities) await completeFromIdentityStore(deps.identities, parsed.users);
  const work: Array<{ user: UserChange; key: string; targets: string[] }> = [];
  for (const user of parsed.users) {
    const targets = chooseTargets(user.identities, deps.settings.identityTargets, deps.settings.targetMode);
    const key = userKey(user.identities);
    if (targets.length === 0 || key === undefined) {
      issues.push({
        field: user.at,
        code: 'NO_IDENTITY',
        message: `has none of the identities chosen as targets (${deps.settings.identityTargets.join(', ')})`,
      });
      continue;
    }
    work.push({ user, key, targets });
  }
  if (work.length === 0) {
    if (issues.length) return { kind: 'invalid', issues };
    return { kind: 'queued', source: parsed.source, request: parsed.request, issues, queued: [], profileSets: [] };
  }

  const profileSets: ProfileSet[] = [];
  const keys = [...new Set(work.map((w) => w.key))];
  const queued = await deps.store.updateMemberships(deps.scope, keys, (current) => {
    // A message may carry the same user twice: apply in order on a working copy, write each user once.
    const state = new Map<string, UserMembership>(current);
    const writes = new Map<string, MembershipWrite>();
    profileSets.length = 0;
    for (const { user, key, targets } of work) {
      const applied = applyUserChange(state.get(key), user, targets, deps.settings.perAudienceAttribute);
      state.set(key, applied.membership);
      const sets = targets.map((distinctId) => ({ distinctId, props: applied.props }));
      const w = writes.get(key);
      if (w) {
        w.membership = applied.membership;
        w.profileSets.push(...sets);
      } else writes.set(key, { userKey: key, membership: applied.membership, profileSets: sets });
      profileSets.push(...sets);
    }
    return [...writes.values()];
  }, deps.now());
  return { kind: 'queued', source: parsed.source, request: parsed.request, issues, queued, profileSets };
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
